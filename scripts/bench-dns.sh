#!/usr/bin/env bash
# The DNS front beside Unbound, in one run, with dnsperf (issue 4):
#
#   * a 1,000,000-name list: imported into kanki; exported as an RPZ zone
#     that Unbound loads;
#   * one upstream for both: an Unbound authoritative for a private root
#     zone (nothing leaves the machine), answering *.pass.example;
#   * kanki serve's DNS front, with 127.0.0.1 a consenting subscriber, and
#     Unbound ("the peer") with the RPZ zone, forwarding to that upstream;
#   * workloads, the same query files for both: policy hits (every query
#     listed) and pass-through with a warm cache; then 60 s at 80 % of
#     kanki's peak, counting lost queries.
#
# Usage: scripts/bench-dns.sh [NAMES] [SECONDS]   (defaults 1000000, 15)
# Figures go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
names="${1:-1000000}"
secs="${2:-15}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
need=()
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v bc >/dev/null 2>&1 || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release --quiet -p kanki
kanki="$CARGO_TARGET_DIR/release/kanki"
unbound=$(command -v unbound || echo /usr/sbin/unbound)
work=$(mktemp -d)
cleanup() {
  for p in upstream.pid peer.pid serve.pid; do
    [ -f "$work/$p" ] && kill "$(cat "$work/$p")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
port() { echo $(( 20000 + RANDOM % 20000 )); }
up_port=$(port); peer_port=$(port); dns_port=$(port); api_port=$(port)

echo "== the list: $names names"
"$kanki" bench export --rows "$names" --work-dir "$work/x" > /dev/null
zone="$work/x/list.rpz"
grep ' CNAME ' "$zone" | awk '$1 !~ /^\*/ && $1 !~ /rpz-ip$/ {print $1}' > "$work/names.txt"
wc -l < "$work/names.txt"

echo "== upstream: Unbound authoritative for a private root"
cat > "$work/root.zone" <<ZONE
\$TTL 3600
. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60
. IN NS localhost.
localhost. A 127.0.0.1
*.pass.example. A 10.0.0.9
ZONE
cat > "$work/upstream.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $up_port
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/upstream.pid"
  access-control: 127.0.0.0/8 allow
  num-threads: 1
auth-zone:
  name: "."
  zonefile: "$work/root.zone"
  for-upstream: yes
  for-downstream: yes
CONF
"$unbound" -d -c "$work/upstream.conf" > "$work/upstream.log" 2>&1 &
echo $! > "$work/upstream.pid"

echo "== the peer: Unbound with the RPZ zone, forwarding to the upstream"
cat > "$work/peer.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $peer_port
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/peer.pid"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "respip iterator"
  num-threads: 2
  msg-cache-size: 64m
  rrset-cache-size: 128m
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$up_port
rpz:
  name: "rpz.kanki"
  zonefile: "$zone"
CONF
"$unbound" -d -c "$work/peer.conf" > "$work/peer.log" 2>&1 &
echo $! > "$work/peer.pid"

echo "== kanki serve's DNS front"
mkdir -p "$work/kanki"
cat > "$work/kanki.toml" <<CONF
data_dir = "$work/kanki/data"
[api]
listen = "127.0.0.1:$api_port"
[dns]
listen = ["127.0.0.1:$dns_port"]
upstreams = ["127.0.0.1:$up_port"]
clients = ["127.0.0.0/8"]
# dnsperf sends everything from 127.0.0.1, one /24; the peer has no
# per-client limit either.
rate_limit = 0
CONF
k() { "$kanki" --config "$work/kanki.toml" "$@"; }
printf 'id,email,language,consent\nS1,s1@example.jp,ja,yes\n' > "$work/subs.csv"
printf 'subscriber,prefix,from,to\nS1,127.0.0.1/32,2020-01-01T00:00:00Z,\n' > "$work/static.csv"
k subscribers import "$work/subs.csv" > /dev/null
k bindings import --format static "$work/static.csv" > /dev/null
k import --format plain "$work/names.txt" > /dev/null
"$kanki" --config "$work/kanki.toml" serve > "$work/serve.log" 2>&1 &
echo $! > "$work/serve.pid"

probe=$(head -1 "$work/names.txt")
for _ in $(seq 1 600); do
  a=$(dig +short +time=1 +tries=1 -p "$dns_port" @127.0.0.1 "$probe" A 2>/dev/null || true)
  b=$(dig +time=1 +tries=1 -p "$peer_port" @127.0.0.1 "$probe" A 2>/dev/null | grep -c 'status: NXDOMAIN\|rpz' || true)
  [ "$a" = "127.0.0.1" ] && [ "$b" -gt 0 ] && break
  sleep 0.2
done
echo "kanki answers $probe with: $(dig +short -p "$dns_port" @127.0.0.1 "$probe" A)"
echo "Unbound answers $probe with: $(dig -p "$peer_port" @127.0.0.1 "$probe" A | grep -o 'status: [A-Z]*')"

shuf -n 200000 "$work/names.txt" | awk '{print $1, "A"}' > "$work/hits.txt"
seq 1 20000 | awk '{print "p" $1 ".pass.example A"}' > "$work/pass.txt"

# dnsperf: QPS, average latency, lost.
perf() { # name port file [extra args]
  local name=$1 p=$2 f=$3; shift 3
  local out qps lost avg
  out=$(dnsperf -s 127.0.0.1 -p "$p" -d "$f" -l "$secs" -c 8 -q 500 "$@" 2>&1)
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  avg=$(echo "$out" | awk '/Average Latency/ {print $4}')
  printf '%-34s %12s qps  avg latency %9s s  lost %s\n' "$name" "$qps" "$avg" "$lost"
  echo "$qps" > "$work/last.qps"
}
# p99 latency at a fixed 20,000 qps for 5 s: dnsperf -v prints each
# answer's latency as its last field (dnsperf 2.10 has no histogram).
p99() { # name port file
  dnsperf -s 127.0.0.1 -p "$2" -d "$3" -l 5 -c 8 -Q 20000 -v 2>/dev/null |
    awk '/^> / {print $NF}' | sort -g |
    awk -v name="$1" '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%-34s p99 %s s (%d answers at 20k qps)\n", name, v[i], NR}'
}

echo "== policy hits (every query listed; 127.0.0.1 consents), ${secs}s each"
perf "kanki policy hits" "$dns_port" "$work/hits.txt"; kq=$(cat "$work/last.qps")
perf "Unbound policy hits" "$peer_port" "$work/hits.txt"; uq=$(cat "$work/last.qps")
echo "ratio kanki/Unbound: $(echo "scale=2; $kq / $uq" | bc)"
p99 "kanki policy hits" "$dns_port" "$work/hits.txt"
p99 "Unbound policy hits" "$peer_port" "$work/hits.txt"

echo "== pass-through, warm cache"
dnsperf -s 127.0.0.1 -p "$dns_port" -d "$work/pass.txt" -n 1 -q 200 > /dev/null 2>&1 || true
dnsperf -s 127.0.0.1 -p "$peer_port" -d "$work/pass.txt" -n 1 -q 200 > /dev/null 2>&1 || true
perf "kanki pass-through" "$dns_port" "$work/pass.txt"; kp=$(cat "$work/last.qps")
perf "Unbound pass-through" "$peer_port" "$work/pass.txt"; up=$(cat "$work/last.qps")
echo "ratio kanki/Unbound: $(echo "scale=2; $kp / $up" | bc)"
p99 "kanki pass-through" "$dns_port" "$work/pass.txt"
p99 "Unbound pass-through" "$peer_port" "$work/pass.txt"

echo "== memory with the list loaded"
printf '%-34s %10s KiB\n' "kanki serve RSS" "$(awk '/VmRSS/ {print $2}' /proc/"$(cat "$work/serve.pid")"/status)"
printf '%-34s %10s KiB\n' "Unbound (peer) RSS" "$(awk '/VmRSS/ {print $2}' /proc/"$(cat "$work/peer.pid")"/status)"

echo "== 60 s at 80 % of kanki's policy-hit peak"
rate=$(echo "$kq * 0.8 / 1" | bc)
secs=60 perf "kanki at $rate qps" "$dns_port" "$work/hits.txt" -Q "$rate"
