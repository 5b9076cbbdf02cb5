#!/usr/bin/env bash
# kanki's benchmarks beside the peer named by the foundation issue, in one run:
#   1. kanki bench: parse, snapshot (build, memory, lookups, load), RPZ export, import,
#      the crawler against its lab with 20 ms latency and a 10 MB YARA scan (bench crawl);
#   2. Unbound loading the same 1,000,000-name RPZ zone that kanki exported:
#      time until it enforces the policy, and its memory;
#   3. BIND 9 as a secondary of kanki serve's RPZ primary on the imported list:
#      the AXFR as BIND times it, then an IXFR of 1,000 added names.
# Usage: scripts/bench.sh [ROWS]   (default 1000000). Figures go to docs/benchmarks.md by hand.
#        ONLY_RPZ=1 scripts/bench.sh   only the RPZ primary with BIND (3.)
#        REMOVAL=1 scripts/bench.sh    also the removal loop beside IntelMQ (4.)
#        ONLY_REMOVAL=1 scripts/bench.sh   only that; REMOVAL_WORK=DIR keeps its
#                                          10M-session directory between runs;
#                                          SEED=N picks the same day as another run
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
need=()
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || need+=(bind9)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ -n "${ONLY_REMOVAL:-}" ]; then
  cargo build --release --quiet -p kanki --no-default-features # no YARA in the removal loop
else
  cargo build --release --quiet -p kanki
fi
kanki="$CARGO_TARGET_DIR/release/kanki"
work=$(mktemp -d)
trap 'kill $(cat "$work/unbound.pid" 2>/dev/null) 2>/dev/null || true; kill $(cat "$work/named.pid" 2>/dev/null) 2>/dev/null || true; kill $(cat "$work/serve.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

if [ -z "${ONLY_REMOVAL:-}" ]; then
if [ -z "${ONLY_RPZ:-}" ]; then
echo "== kanki bench ($rows rows) on $(nproc) cores"
"$kanki" bench all --rows "$rows" --work-dir "$work/kanki"

echo "== kanki serve restart with the imported list"
probe=$(awk '$2 == "CNAME" && $1 !~ /^\*/ && $1 !~ /rpz-ip$/ {print $1; exit}' "$work/kanki/export.rpz")
api_port=$(( 20000 + RANDOM % 20000 ))
printf 'data_dir = "%s"\n[api]\nlisten = "127.0.0.1:%s"\n' "$work/kanki/data" "$api_port" > "$work/serve.toml"
start=$(date +%s.%N)
"$kanki" --config "$work/serve.toml" serve > "$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$api_port/api/v1/lookup?name=$probe" 2>/dev/null | grep -q '"listed"'; then
    break
  fi
  sleep 0.01
done
end=$(date +%s.%N)
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
printf '%-44s %14.2f %-12s (target < 1 s)\n' "kanki serve: start until a lookup answers" "$(echo "$end - $start" | bc)" "s"

echo "== Unbound $(/usr/sbin/unbound -V | head -1 | awk '{print $2}') loading the same list as RPZ"
# The 1,000,000-name zone of kanki's export benchmark.
zone="$work/kanki/list.rpz"
records=$(grep -c ' CNAME ' "$zone" || true)
names=$(grep ' CNAME ' "$zone" | grep -vc '^\*' || true)
port=$(( 20000 + RANDOM % 20000 ))
probe=$(awk '$2 == "CNAME" && $1 !~ /^\*/ && $1 !~ /rpz-ip$/ {print $1; exit}' "$zone")
cat > "$work/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $port
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  module-config: "respip iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: yes
rpz:
  name: "rpz.kanki"
  zonefile: "$zone"
CONF
start=$(date +%s.%N)
/usr/sbin/unbound -c "$work/unbound.conf" > "$work/unbound.log" 2>&1 &
echo $! > "$work/unbound.pid"
for _ in $(seq 1 1200); do
  if dig +time=1 +tries=1 -p "$port" @127.0.0.1 "$probe" A 2>/dev/null | grep -q 'status: NXDOMAIN'; then
    break
  fi
  sleep 0.05
done
end=$(date +%s.%N)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/unbound.pid")/status")
printf '%-44s %14.2f %-12s\n' "unbound: load 1M-name RPZ until enforcing" "$(echo "$end - $start" | bc)" "s"
printf '%-44s %14.2f %-12s\n' "unbound: RSS after load" "$(echo "$rss_kb / 1024" | bc -l)" "MiB"
printf '%-44s %14.2f %-12s\n' "unbound: RSS bytes per RPZ record ($records)" "$(echo "$rss_kb * 1024 / $records" | bc -l)" "bytes"
printf '%-44s %14.2f %-12s\n' "unbound: RSS bytes per listed name ($names)" "$(echo "$rss_kb * 1024 / $names" | bc -l)" "bytes"
kill "$(cat "$work/unbound.pid")" 2>/dev/null || true
else
"$kanki" bench export --rows "$rows" --work-dir "$work/kanki" > /dev/null
fi

echo "== BIND $(/usr/sbin/named -v | awk '{print $2}') as a secondary of kanki's RPZ primary (the imported list)"
rpz_port=$(( 20000 + RANDOM % 20000 ))
bind_port=$(( 20000 + RANDOM % 20000 ))
api_port=$(( 20000 + RANDOM % 20000 ))
# A store holding the 1,000,000 names of the export benchmark (the URLhaus
# import above lists fewer distinct hosts), as RPZ into a fresh data directory.
printf 'data_dir = "%s"\n' "$work/rpzdata" > "$work/import.toml"
"$kanki" --config "$work/import.toml" import --format rpz --source bench "$work/kanki/list.rpz" > /dev/null
cat > "$work/rpz.toml" <<CONF
data_dir = "$work/rpzdata"
[log]
format = "json"
[api]
listen = "127.0.0.1:$api_port"
[policy]
refresh_every = "200ms"
[rpz]
listen = "127.0.0.1:$rpz_port"
notify_interval = "1s"
[[rpz.zones]]
name = "bench.rpz.kanki"
notify = ["127.0.0.1:$bind_port"]
CONF
"$kanki" --config "$work/rpz.toml" serve > "$work/rpz-serve.log" 2>&1 &
echo $! > "$work/serve.pid"
for _ in $(seq 1 1200); do
  grep -q "RPZ zone updated" "$work/rpz-serve.log" && break
  sleep 0.1
done
entries=$(grep -o '"entries":[0-9]*' "$work/rpz-serve.log" | head -1 | cut -d: -f2)
mkdir -p "$work/bind"
cat > "$work/bind/named.conf" <<CONF
options {
  directory "$work/bind"; listen-on port $bind_port { 127.0.0.1; }; listen-on-v6 { none; };
  pid-file "$work/named.pid"; recursion no; notify no; allow-notify { 127.0.0.1; };
  session-keyfile "$work/bind/session.key"; dnssec-validation no;
};
controls { };
logging { category xfer-in { default_stderr; }; };
zone "bench.rpz.kanki" { type secondary; primaries { 127.0.0.1 port $rpz_port; }; file "bench.db"; masterfile-format raw; };
CONF
start=$(date +%s.%N)
/usr/sbin/named -g -n 2 -c "$work/bind/named.conf" > "$work/named.log" 2>&1 &
for _ in $(seq 1 1200); do
  grep -q "Transfer completed" "$work/named.log" && break
  sleep 0.05
done
end=$(date +%s.%N)
line=$(grep "Transfer completed" "$work/named.log" | head -1)
printf '%-44s %14s %-12s\n' "zone entries (names, wildcards, IP triggers)" "$entries" "entries"
printf '%-44s %14s %-12s (target <= 3 s)\n' "BIND: AXFR transfer time (its own figure)" "$(echo "$line" | grep -o '[0-9.]* secs' | awk '{print $1}')" "s"
printf '%-44s %14.2f %-12s\n' "BIND: start until AXFR completed" "$(echo "$end - $start" | bc)" "s"
echo "   $(echo "$line" | sed 's/.*Transfer completed: //')"
printf '%-44s %14.2f %-12s\n' "kanki serve RSS with the zone" "$(awk '/VmRSS/ {print $2/1024}' "/proc/$(cat "$work/serve.pid")/status")" "MiB"
seq 1 1000 | sed 's/^/bench-ixfr-/; s/$/.example/' > "$work/ixfr.txt"
"$kanki" --config "$work/rpz.toml" import --format plain --source bench-ixfr "$work/ixfr.txt" > /dev/null
for _ in $(seq 1 600); do
  [ "$(grep -c "Transfer completed" "$work/named.log")" -ge 2 ] && break
  sleep 0.05
done
line=$(grep "Transfer completed" "$work/named.log" | sed -n 2p)
printf '%-44s %14s %-12s (target <= 50 ms)\n' "BIND: IXFR of 1,000 added names (its figure)" "$(echo "$line" | grep -o '[0-9.]* secs' | awk '{print $1 * 1000}')" "ms"
echo "   $(echo "$line" | sed 's/.*Transfer completed: //')"
grep '"IXFR' "$work/rpz-serve.log" | tail -1 | sed 's/^/   kanki: /'

fi

if [ -n "${REMOVAL:-}${ONLY_REMOVAL:-}" ]; then
echo "== the removal loop: ingest with attribution against ${SESSIONS:-10000000} sessions, IntelMQ's parser on the same file"
# REMOVAL=1 scripts/bench.sh: kanki bench ingest (directory written once into
# $work, then a 1,000,000-row sinkhole CSV attributed and stored), the same CSV
# through IntelMQ's Shadowserver parser (pip install intelmq), and 100,000
# notices rendered.
# IntelMQ in a virtual environment of its own (Debian's Python refuses pip
# installs outside one).
venv="${KANKI_INTELMQ_VENV:-$HOME/.cache/kanki/venv-intelmq}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import intelmq" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q intelmq
fi
removal_work="${REMOVAL_WORK:-$work}"
mkdir -p "$removal_work"
csv="$work/2026-11-01-event4_sinkhole-bench.csv"
"$kanki" bench ingest --sessions "${SESSIONS:-10000000}" --rows "$rows" --work-dir "$removal_work" --csv-out "$csv" ${SEED:+--seed "$SEED"} | tee "$work/ingest.txt"
"$venv/bin/python" scripts/intelmq_shadowserver.py "$csv" | tee "$work/intelmq.txt"
k=$(awk '/^ingest sinkhole csv/ {print $(NF-4)}' "$work/ingest.txt")
i=$(awk '{print $(NF-6)}' "$work/intelmq.txt")
printf '%-44s %14.2f %-12s\n' "kanki ingest / intelmq parse (events/s)" "$(echo "$k / $i" | bc -l)" "x"
"$kanki" bench notices --notices 100000
fi
