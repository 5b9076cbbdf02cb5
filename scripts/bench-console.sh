#!/usr/bin/env bash
# The console's speed on a large store: builds the store once (kanki bench
# console-store: cases, events, indicators, audit records), starts kanki
# serve on it, and drives every route of scripts/console-routes.txt
# REPEATS times (after one warm-up request), printing per route the p50
# and p95 server time (curl's time from request sent to first byte, on
# loopback) and the response size, beside the route's bound.
#
# Usage: scripts/bench-console.sh WORK_DIR [REPEATS]   (default 50)
#   CASES=1000000 EVENTS=10000000 INDICATORS=1000000 AUDIT=1000000 (defaults)
#   ROUTES=file   another list of routes (the same format)
# WORK_DIR keeps the store between runs (building it is the slow part).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:?usage: scripts/bench-console.sh WORK_DIR [REPEATS]}"
repeats="${2:-50}"
cases="${CASES:-1000000}"
routes="${ROUTES:-scripts/console-routes.txt}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
command -v curl >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl
}
if [ -z "${KANKI:-}" ]; then
  cargo build --release --quiet -p kanki --no-default-features
  KANKI="$CARGO_TARGET_DIR/release/kanki"
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ ! -e "$work/data/kanki.sqlite3" ]; then
  echo "== building the store: $cases cases, ${EVENTS:-10000000} events, ${INDICATORS:-1000000} indicators, ${AUDIT:-1000000} audit records"
  "$KANKI" bench console-store --work-dir "$work" --cases "$cases" \
    --events "${EVENTS:-10000000}" --indicators "${INDICATORS:-1000000}" --audit "${AUDIT:-1000000}"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/kanki.toml" <<TOML
data_dir = "$work/data"
[api]
listen = "127.0.0.1:$port"
[log]
level = "warn"
TOML
k() { "$KANKI" --config "$work/kanki.toml" "$@"; }
k operators list | grep -q '^bench-console' ||
  k operators add bench-console --kind machine \
    --roles viewer,analyst,attribution-officer,list-curator,notices-officer,auditor,administrator >/dev/null
token=$(k tokens create --operator bench-console --name "bench-$(date +%s)" --expires-in 1d 2>/dev/null)
# kanki itself in the background, not a subshell running it: the trap's
# SIGINT must reach serve.
"$KANKI" --config "$work/kanki.toml" serve 2>"$work/serve.log" &
serve=$!
trap 'kill -INT $serve 2>/dev/null; wait $serve 2>/dev/null || true' EXIT
api="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -fs "$api/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
case_id=$((cases / 2 > 0 ? cases / 2 : 1))
subscriber=$(printf 'S%08d' $((case_id - 1)))
since=$(date -u -d '-30 days' +%Y-%m-%dT00:00:00Z)
until=$(date -u -d '-29 days' +%Y-%m-%dT00:00:00Z)
echo "== $repeats requests per route after one warm-up; case {case}=$case_id, subscriber {subscriber}=$subscriber; $(nproc) cores"
printf '%-40s %9s %9s %9s %10s %s\n' route "p50 ms" "p95 ms" "bound" "bytes" status
fail=0
while IFS=$'\t' read -r bound name path; do
  case "$bound" in '#'* | '') continue ;; esac
  path="${path//\{case\}/$case_id}"
  path="${path//\{subscriber\}/$subscriber}"
  path="${path//\{since\}/$since}"
  path="${path//\{until\}/$until}"
  url="$api$path"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")
  times=$(for _ in $(seq 1 "$repeats"); do
    curl -s -o /dev/null -H "Authorization: Bearer $token" \
      -w '%{time_pretransfer} %{time_starttransfer} %{size_download}\n' "$url"
  done)
  read -r p50 p95 bytes < <(echo "$times" | awk '{ printf "%.3f %d\n", ($2 - $1) * 1000, $3 }' |
    sort -n | awk '{ t[NR] = $1; if ($2 > b) b = $2 } END {
      i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
      i95 = int(NR * 0.95 + 0.5); if (i95 < 1) i95 = 1; if (i95 > NR) i95 = NR
      print t[i50], t[i95], b }')
  verdict=ok
  if [ "$code" != 200 ]; then verdict="HTTP $code"; fail=1
  elif awk -v p="$p95" -v b="$bound" 'BEGIN { exit !(p > b) }'; then verdict="over the bound"; fi
  printf '%-40s %9s %9s %9s %10s %s\n' "$name" "$p50" "$p95" "$bound" "$bytes" "$verdict"
done <"$routes"
exit $fail
