#!/usr/bin/env python3
"""IntelMQ's Shadowserver parser on a Shadowserver CSV, timed, for the
comparison in docs/benchmarks.md (scripts/bench.sh runs it on the file that
`kanki bench ingest --csv-out` writes).

    python3 scripts/intelmq_shadowserver.py FILE [SCHEMA]

FILE's name must carry its report type (e.g. 2026-11-01-event4_sinkhole.csv);
SCHEMA defaults to the schemas kanki ships (crates/events/schemas/). IntelMQ
runs in library mode (BotLibSettings): the parser bot alone, no pipeline.
Prints one line: parsed events per second (parsing only; IntelMQ attributes
nothing and stores nothing here).
"""
import base64
import os
import sys
import time

from intelmq.bots.parsers.shadowserver import _config as config
from intelmq.bots.parsers.shadowserver.parser import ShadowserverParserBot
from intelmq.lib.bot import BotLibSettings

here = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1]
schema = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    here, "..", "crates", "events", "schemas", "shadowserver-intelmq.json")
# The parser reads its schema from a state directory; point it at ours.
state = getattr(config, "__config")
state.schema_file = state.schema_active = os.path.abspath(schema)

raw = open(path, "rb").read()
rows = raw.count(b"\n") - 1
bot = ShadowserverParserBot("shadowserver-parser", settings=BotLibSettings | {"logging_level": "ERROR"})
start = time.time()
out = bot.process_message({
    "__type": "Report",
    "feed.name": "Shadowserver",
    "raw": base64.b64encode(raw).decode(),
    "extra.file_name": os.path.basename(path),
})
secs = time.time() - start
events = len(out["output"])
print(f"{'intelmq shadowserver parser (' + str(rows) + ' rows)':<44} {events / secs:>14.2f} events/s     ({events} events in {secs:.1f} s)")
