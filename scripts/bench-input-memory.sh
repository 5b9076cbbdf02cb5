#!/usr/bin/env bash
# Peak memory of reading hostile and large inputs: a 1 GiB zip bomb, a 2 GiB
# file of one line, a feed of a million distinct URLs and a report of millions
# of distinct rows, through `kanki import` (feeds) and `kanki ingest`
# (reports), each its own process, its peak RSS (getrusage's ru_maxrss) printed beside the
# bound: 64 MiB plus a small multiple of the largest record kept (1 MiB).
#
#   scripts/bench-input-memory.sh            # 1 GiB bomb, 2 GiB line
#   SIZE_MB=64 scripts/bench-input-memory.sh # a quick check at a small size
#   DISTINCT_MB=512                          # size of the report of distinct rows (default)
#
# The inputs are made on the fly in a temporary directory (about SIZE_MB*2 of
# disk for the long line) and removed at the end. With the default
# [input] limits the bomb is refused early (its expansion); the measured runs
# lift the limits so that the whole input is read, which is the worst case.
set -euo pipefail

cd "$(dirname "$0")/.."
size_mb="${SIZE_MB:-1024}"
# Distinct rows of a Shadowserver report, for the caches of keys.
distinct_mb="${DISTINCT_MB:-512}"
kanki="${KANKI:-}"
if [ -z "$kanki" ]; then
    cargo build --release -p kanki --no-default-features
    kanki="${CARGO_TARGET_DIR:-target}/release/kanki"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" "$size_mb" "$distinct_mb" <<'PY'
import sys, zipfile
work, size = sys.argv[1], int(sys.argv[2]) << 20

def bomb(path, header, line):
    # One entry of `line` repeated to `size` bytes: deflate at level 9
    # shrinks it about a thousand times.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("report.csv", "w", force_zip64=True) as f:
            f.write(header)
            block = line * ((1 << 20) // len(line))
            written = len(header)
            while written < size:
                f.write(block)
                written += len(block)

bomb(f"{work}/bomb-plain.zip", b"", b"bomb.example\n")
bomb(f"{work}/2024-05-01-event4_sinkhole-bomb.zip",
     b'"timestamp","protocol","src_ip","src_port","infection"\n',
     b'"2024-05-01 10:00:00","tcp","192.0.2.7","51234","mirai"\n')
# Distinct rows (every record its own key, so the caches of keys that tell
# replays fill): an address and a port per row, over the hours of one day in
# order, as a report lists them.
distinct = int(sys.argv[3]) << 20
with zipfile.ZipFile(f"{work}/2024-05-01-event4_sinkhole-distinct.zip", "w",
                     zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    with z.open("report.csv", "w", force_zip64=True) as f:
        f.write(b'"timestamp","protocol","src_ip","src_port","infection"\n')
        written, i = 0, 0
        while written < distinct:
            hour = min(23, written * 24 // distinct)
            rows = "".join(
                f'"2024-05-01 {hour:02d}:{(i + k) // 1000 % 60:02d}:00","tcp",'
                f'"10.{(i + k) >> 16 & 255}.{(i + k) >> 8 & 255}.{(i + k) & 255}",'
                f'"{1024 + (i + k) // 16_777_216}","mirai"\n'
                for k in range(10_000)).encode()
            f.write(rows)
            written += len(rows)
            i += 10_000
# A large valid feed: a million distinct URLs in URLhaus's CSV (165 MB), for
# the import's chunks and its map of what the source lists.
with open(f"{work}/urlhaus-1m.csv", "w") as f:
    f.write("# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n")
    for i in range(1_000_000):
        f.write(f'"{i}","2024-11-20 10:11:05","http://host{i}.dist-{i % 9973}.example/app/{i * 7919 % 1000003}.bin",'
                f'"online","","malware_download","elf,Mozi","https://urlhaus.abuse.ch/url/{i}/","r"\n')
# One line of twice the size, no line end until the last byte.
for name, header in (("line-plain.txt", b""),
                     ("2024-05-01-event4_sinkhole-line.csv", b'"timestamp","src_ip"\n')):
    with open(f"{work}/{name}", "wb") as f:
        f.write(header)
        block = b"a" * (1 << 20)
        for _ in range(2 * size >> 20):
            f.write(block)
        f.write(b"\n")
PY

cat > "$work/kanki.toml" <<TOML
data_dir = "$work/data"
[input]
max_bytes = 18446744073709551615
max_entry_bytes = 18446744073709551615
max_expansion = 0
TOML
cat > "$work/defaults.toml" <<TOML
data_dir = "$work/data-defaults"
TOML

peak() {
    # Runs a command; prints its exit status, its peak RSS and its first
    # line of error output.
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
secs = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
err = p.stderr.decode(errors="replace").strip().splitlines()
print(f"  exit {p.returncode}, peak RSS {rss:.1f} MiB, {secs:.1f} s" + (f": {err[-1][:160]}" if err else ""))
PY
}

echo "inputs: ${size_mb} MiB zip bombs, $((2 * size_mb)) MiB single lines; bound: 64 MiB + a few MiB (records of at most 1 MiB)"
echo "import, zip bomb (plain list, one name repeated), limits lifted:"
peak "$kanki" --config "$work/kanki.toml" import -f plain "$work/bomb-plain.zip"
echo "import, zip bomb, default limits (refused by its expansion):"
peak "$kanki" --config "$work/defaults.toml" import -f plain "$work/bomb-plain.zip"
echo "import, one line:"
peak "$kanki" --config "$work/kanki.toml" import -f plain "$work/line-plain.txt"
echo "import, 1,000,000 distinct URLs (URLhaus CSV), into an empty store:"
peak "$kanki" --config "$work/kanki.toml" import -f urlhaus "$work/urlhaus-1m.csv"
echo "import, the same again (nothing changes):"
peak "$kanki" --config "$work/kanki.toml" import -f urlhaus "$work/urlhaus-1m.csv"
echo "ingest, zip bomb (Shadowserver sinkhole rows), limits lifted:"
peak "$kanki" --config "$work/kanki.toml" ingest -f shadowserver "$work/2024-05-01-event4_sinkhole-bomb.zip"
echo "ingest, ${distinct_mb} MiB of distinct Shadowserver sinkhole rows (every key new), zipped:"
peak "$kanki" --config "$work/kanki.toml" ingest -f shadowserver "$work/2024-05-01-event4_sinkhole-distinct.zip"
echo "ingest, the same again (every record a replay):"
peak "$kanki" --config "$work/kanki.toml" ingest -f shadowserver "$work/2024-05-01-event4_sinkhole-distinct.zip"
echo "ingest, one line after a header:"
peak "$kanki" --config "$work/kanki.toml" ingest -f shadowserver "$work/2024-05-01-event4_sinkhole-line.csv"
