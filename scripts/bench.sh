#!/usr/bin/env bash
# kanki's benchmarks beside the peer named by the foundation issue, in one run:
#   1. kanki bench: parse, snapshot (build, memory, lookups, load), RPZ export, import;
#   2. Unbound loading the same 1,000,000-name RPZ zone that kanki exported:
#      time until it enforces the policy, and its memory.
# Usage: scripts/bench.sh [ROWS]   (default 1000000). Figures go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
need=()
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release --quiet -p kanki
kanki="$CARGO_TARGET_DIR/release/kanki"
work=$(mktemp -d)
trap 'kill $(cat "$work/unbound.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

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
