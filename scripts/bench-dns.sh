#!/usr/bin/env bash
# The DNS front beside Unbound, in one run, with dnsperf:
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
# Beside each QPS figure, the work per answered query, which load on the
# machine does not spoil as it does QPS: instructions (perf stat on the
# server's process) where the CPU's counters can be read, else CPU time
# (user + system, from /proc).
#
# DNS_BENCH_MODE=callgrind measures only the work per query, exactly: both
# servers run under valgrind's callgrind, each workload is a fixed number
# of queries (QUERIES, default 20,000) sent at a low rate, and the
# instructions the server ran meanwhile (all its threads, user space) are
# less those of an idle spell as long just after (timers, refreshers),
# divided by the queries answered. Counting instructions, it gives the
# same figures on a busy machine as on an idle one; use a smaller list
# (100,000 names), as Unbound loads its zone slowly under valgrind.
#
# CALLGRIND_OUT=DIR keeps callgrind's dumps there, for callgrind_annotate
# (where the instructions go).
#
# KANKI_BIN=PATH runs that kanki binary instead of building one (to
# compare builds in the same way).
#
# Usage: scripts/bench-dns.sh [NAMES] [SECONDS]   (defaults 1000000, 15)
#        DNS_BENCH_MODE=callgrind scripts/bench-dns.sh 100000
# Figures go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
names="${1:-1000000}"
secs="${2:-15}"
mode="${DNS_BENCH_MODE:-qps}"
queries="${QUERIES:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
need=()
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v bc >/dev/null 2>&1 || need+=(bc)
if [ "$mode" = callgrind ]; then
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
else
  command -v perf >/dev/null 2>&1 || need+=(linux-perf)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ -n "${KANKI_BIN:-}" ]; then
  kanki="$KANKI_BIN"
else
  cargo build --release --quiet -p kanki
  kanki="$CARGO_TARGET_DIR/release/kanki"
fi
# Under callgrind each server runs inside valgrind (its pid is valgrind's,
# which is the server's own process), collecting from the start and
# zeroed before each workload.
run() { # started with &: exec keeps $! the server's pid
  if [ "$mode" = callgrind ]; then
    exec valgrind --tool=callgrind --callgrind-out-file="$cg_out/callgrind.%p" "$@"
  else
    exec "$@"
  fi
}
unbound=$(command -v unbound || echo /usr/sbin/unbound)
work=$(mktemp -d)
cleanup() {
  for p in upstream.pid peer.pid serve.pid; do
    [ -f "$work/$p" ] && kill "$(cat "$work/$p")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cg_out="${CALLGRIND_OUT:-$work}"
mkdir -p "$cg_out"
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
run "$unbound" -d -c "$work/peer.conf" > "$work/peer.log" 2>&1 &
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
run "$kanki" --config "$work/kanki.toml" serve > "$work/serve.log" 2>&1 &
echo $! > "$work/serve.pid"

probe=$(head -1 "$work/names.txt")
# Up to 2 minutes (20 under valgrind) until both answer.
for _ in $(seq 1 6000); do
  a=$(dig +short +time=1 +tries=1 -p "$dns_port" @127.0.0.1 "$probe" A 2>/dev/null || true)
  b=$(dig +time=1 +tries=1 -p "$peer_port" @127.0.0.1 "$probe" A 2>/dev/null | grep -c 'status: NXDOMAIN\|rpz' || true)
  [ "$a" = "127.0.0.1" ] && [ "$b" -gt 0 ] && break
  sleep 0.2
done
echo "kanki answers $probe with: $(dig +short -p "$dns_port" @127.0.0.1 "$probe" A)"
echo "Unbound answers $probe with: $(dig -p "$peer_port" @127.0.0.1 "$probe" A | grep -o 'status: [A-Z]*')"

shuf -n 200000 "$work/names.txt" | awk '{print $1, "A"}' > "$work/hits.txt"
seq 1 20000 | awk '{print "p" $1 ".pass.example A"}' > "$work/pass.txt"

kanki_pid=$(cat "$work/serve.pid"); peer_pid=$(cat "$work/peer.pid")

# The work a process does meanwhile: `work_begin PID`, then `work_end PID`
# prints what it did since. Instructions where the CPU's counters can be
# read (perf stat), else CPU time in microseconds (user + system).
if perf stat -e instructions -x, true 2>&1 | grep -q '^[0-9]*,,instructions'; then
  work_unit=instructions
else
  work_unit="µs CPU"
fi
cpu_micros() { # pid
  awk -v hz="$(getconf CLK_TCK)" '{printf "%d\n", ($14 + $15) * 1000000 / hz}' /proc/"$1"/stat
}
work_begin() { # pid
  if [ "$work_unit" = instructions ]; then
    command perf stat -e instructions -x, -p "$1" -o "$work/perf.$1" &
    echo $! > "$work/perfstat.pid"
    sleep 0.2
  else
    cpu_micros "$1" > "$work/cpu.$1"
  fi
}
work_end() { # pid
  if [ "$work_unit" = instructions ]; then
    kill -INT "$(cat "$work/perfstat.pid")"
    wait "$(cat "$work/perfstat.pid")" 2>/dev/null || true
    awk -F, '$3 == "instructions" {print $1}' "$work/perf.$1"
  else
    echo $(( $(cpu_micros "$1") - $(cat "$work/cpu.$1") ))
  fi
}

# dnsperf: QPS, average latency, lost; and the server's work per answered
# query.
load() { # name port pid file [extra args]
  local name=$1 p=$2 pid=$3 f=$4; shift 4
  local out qps lost avg done spent
  work_begin "$pid"
  out=$(dnsperf -s 127.0.0.1 -p "$p" -d "$f" -l "$secs" -c 8 -q 500 "$@" 2>&1)
  spent=$(work_end "$pid")
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  avg=$(echo "$out" | awk '/Average Latency/ {print $4}')
  done=$(echo "$out" | awk '/Queries completed/ {print $3}')
  printf '%-34s %12s qps  avg latency %9s s  lost %s\n' "$name" "$qps" "$avg" "$lost"
  printf '%-34s %12s %s per answered query\n' "" "$(echo "scale=2; $spent / $done" | bc)" "$work_unit"
  echo "$qps" > "$work/last.qps"
}

if [ "$mode" = callgrind ]; then
  head -n "$queries" "$work/hits.txt" > "$work/hits.n"
  head -n "$queries" "$work/pass.txt" > "$work/pass.n"
  # One pass through a file at a rate valgrind keeps up with.
  once() { # port file
    dnsperf -s 127.0.0.1 -p "$1" -d "$2" -n 1 -c 8 -q 100 -t 10 -Q "${CALLGRIND_QPS:-2000}" 2>&1
  }
  # Instructions the server ran (all threads, user space) over one pass
  # through the file, less what it runs idle over as long (its timers and
  # refreshers, counted just after), per query answered.
  counted() { # pid: instructions since the last zeroing
    callgrind_control -d "$1" > /dev/null
    awk '/^(summary|totals):/ {print $2; exit}' "$(ls -t "$cg_out"/callgrind."$1".* | head -1)"
  }
  # Of which in kanki's Front::step (the query read, the client checks,
  # the decision, the answer written or taken from the cache): the part of
  # the front's own code, which varies less from run to run than the
  # runtime's waking and parking around it.
  in_step() { # pid (after counted, before the next dump)
    callgrind_annotate --inclusive=yes "$(ls -t "$cg_out"/callgrind."$1".* | head -1)" 2>/dev/null |
      awk '/Front::step \[/ {gsub(",", "", $1); print $1; exit}'
  }
  instructions() { # name port pid file
    local out done spent idle step t0 t1
    callgrind_control -z "$3" > /dev/null
    t0=$(date +%s.%N)
    out=$(once "$2" "$4")
    t1=$(date +%s.%N)
    spent=$(counted "$3")
    step=$(in_step "$3")
    callgrind_control -z "$3" > /dev/null
    sleep "$(echo "$t1 - $t0" | bc)"
    idle=$(counted "$3")
    done=$(echo "$out" | awk '/Queries completed/ {print $3}')
    printf '%-34s %10s instructions per answered query (%s answered, %s lost; idle %s per query)\n' \
      "$1" "$(( (spent - idle) / done ))" "$done" \
      "$(echo "$out" | awk '/Queries lost/ {print $3}')" "$(( idle / done ))"
    [ -n "$step" ] && printf '%-34s %10s of them in Front::step\n' "" "$(( step / done ))"
    echo $(( (spent - idle) / done )) > "$work/last.ipq"
  }
  echo "== work per answered query under callgrind, $queries queries each"
  instructions "kanki policy hits" "$dns_port" "$kanki_pid" "$work/hits.n"; ki=$(cat "$work/last.ipq")
  instructions "Unbound policy hits" "$peer_port" "$peer_pid" "$work/hits.n"; ui=$(cat "$work/last.ipq")
  echo "Unbound/kanki (higher: kanki does less): $(echo "scale=2; $ui / $ki" | bc)"
  once "$dns_port" "$work/pass.n" > /dev/null
  once "$peer_port" "$work/pass.n" > /dev/null
  instructions "kanki pass-through, warm cache" "$dns_port" "$kanki_pid" "$work/pass.n"; ki=$(cat "$work/last.ipq")
  instructions "Unbound pass-through, warm cache" "$peer_port" "$peer_pid" "$work/pass.n"; ui=$(cat "$work/last.ipq")
  echo "Unbound/kanki (higher: kanki does less): $(echo "scale=2; $ui / $ki" | bc)"
  exit 0
fi

# p99 latency at a fixed 20,000 qps for 5 s: dnsperf -v prints each
# answer's latency as its last field (dnsperf 2.10 has no histogram).
p99() { # name port file
  dnsperf -s 127.0.0.1 -p "$2" -d "$3" -l 5 -c 8 -Q 20000 -v 2>/dev/null |
    awk '/^> / {print $NF}' | sort -g |
    awk -v name="$1" '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%-34s p99 %s s (%d answers at 20k qps)\n", name, v[i], NR}'
}

echo "== policy hits (every query listed; 127.0.0.1 consents), ${secs}s each"
load "kanki policy hits" "$dns_port" "$kanki_pid" "$work/hits.txt"; kq=$(cat "$work/last.qps")
load "Unbound policy hits" "$peer_port" "$peer_pid" "$work/hits.txt"; uq=$(cat "$work/last.qps")
echo "ratio kanki/Unbound: $(echo "scale=2; $kq / $uq" | bc)"
p99 "kanki policy hits" "$dns_port" "$work/hits.txt"
p99 "Unbound policy hits" "$peer_port" "$work/hits.txt"

echo "== pass-through, warm cache"
dnsperf -s 127.0.0.1 -p "$dns_port" -d "$work/pass.txt" -n 1 -q 200 > /dev/null 2>&1 || true
dnsperf -s 127.0.0.1 -p "$peer_port" -d "$work/pass.txt" -n 1 -q 200 > /dev/null 2>&1 || true
load "kanki pass-through" "$dns_port" "$kanki_pid" "$work/pass.txt"; kp=$(cat "$work/last.qps")
load "Unbound pass-through" "$peer_port" "$peer_pid" "$work/pass.txt"; up=$(cat "$work/last.qps")
echo "ratio kanki/Unbound: $(echo "scale=2; $kp / $up" | bc)"
p99 "kanki pass-through" "$dns_port" "$work/pass.txt"
p99 "Unbound pass-through" "$peer_port" "$work/pass.txt"

echo "== memory with the list loaded"
printf '%-34s %10s KiB\n' "kanki serve RSS" "$(awk '/VmRSS/ {print $2}' /proc/"$kanki_pid"/status)"
printf '%-34s %10s KiB\n' "Unbound (peer) RSS" "$(awk '/VmRSS/ {print $2}' /proc/"$peer_pid"/status)"

echo "== 60 s at 80 % of kanki's policy-hit peak"
rate=$(echo "$kq * 0.8 / 1" | bc)
secs=60 load "kanki at $rate qps" "$dns_port" "$kanki_pid" "$work/hits.txt" -Q "$rate"
