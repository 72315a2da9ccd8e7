#!/usr/bin/env bash
# Load benchmark (not a test): memory and latency while sign-ins flood the
# portal (argon2id, 19 MiB a hash). Release build, SQLite, loopback; every
# scenario on a fresh portal so that its peak RSS (VmHWM) is its own.
#
#   idle         RSS after start (and the bench owner's one sign-in)
#   burst 1      200 wrong sign-ins at once from one address
#   burst 200    200 wrong sign-ins at once from 200 addresses (X-Forwarded-For)
#   steady       RATE wrong sign-ins a second (each from a new address) for
#                STEADY seconds, while wrk -c32 measures GET /api/v1/auth/test
#                with a valid key; the same wrk run alone first, for reference
#
# "answers" counts the HTTP statuses of the sign-ins (401: refused after the
# hash; 429: address throttle; 503: the hashing queue was full). "RSS after"
# is read AFTER_SECS after the last answer.
#
#   bench/login_flood.sh            # RATE=50 STEADY=10 CONNECTIONS=32 by default
#   BENCH_BIN=/tmp/old bench/login_flood.sh   # another build, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-50}" STEADY="${STEADY:-10}" CONNECTIONS="${CONNECTIONS:-32}" PORT="${PORT:-18093}"
AFTER_SECS="${AFTER_SECS:-5}" DURATION="${STEADY}s"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
[ -n "${BENCH_BIN:-}" ] || cargo build --release --quiet
BIN="${BENCH_BIN:-target/release/latchkey}" WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source bench/lib.sh
# The load generator's forwarded addresses are believed from loopback only.
export LATCHKEY_TRUSTED_PROXIES=127.0.0.1

mb() {  # mb FIELD: the portal's VmRSS or VmHWM in MB
  awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"
}

line() { printf '%-12s %-34s %9s %10s %9s %9s\n' "$@"; }

idle() {
  start_portal idle "sqlite://$WORK/idle/latchkey.db"
  sleep "$AFTER_SECS"
  line idle - - - "$(mb VmHWM)" "$(mb VmRSS)"
  stop_portal
}

burst() {  # burst ADDRESSES
  start_portal "burst$1" "sqlite://$WORK/burst$1/latchkey.db"
  local out
  out=$(python3 bench/logins.py "$PORT" burst 200 "$1")
  sleep "$AFTER_SECS"
  line "burst $1" "$(sed 's/^answers=\([^ ]*\).*/\1/' <<<"$out")" \
    "$(sed 's/.*p99_ms=\([0-9]*\).*/\1/' <<<"$out")" - "$(mb VmHWM)" "$(mb VmRSS)"
  stop_portal
}

steady() {
  start_portal steady "sqlite://$WORK/steady/latchkey.db"
  local key out alone loaded
  key=$(curl -s -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["templates:read"]}' "$BASE/api/v1/api-keys" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || { echo "could not create a key"; stop_portal; return 1; }
  read -r a_rps _ a_p99 _ < <(measure -H "X-API-Key: $key" "$BASE/api/v1/auth/test")
  line "auth alone" "$a_rps req/s" - "$a_p99" "$(mb VmHWM)" "$(mb VmRSS)"
  python3 bench/logins.py "$PORT" rate "$RATE" "$STEADY" >"$WORK/logins.out" &
  local gen=$!
  read -r l_rps _ l_p99 _ < <(measure -H "X-API-Key: $key" "$BASE/api/v1/auth/test")
  wait "$gen"
  out=$(cat "$WORK/logins.out")
  local hwm
  hwm=$(mb VmHWM)
  sleep "$AFTER_SECS"
  line "steady $RATE/s" "$(sed 's/^answers=\([^ ]*\).*/\1/' <<<"$out")" \
    "$(sed 's/.*p99_ms=\([0-9]*\).*/\1/' <<<"$out")" "$l_p99" "$hwm" "$(mb VmRSS)"
  line "" "auth/test under it: $l_rps req/s" "" "" "" ""
  stop_portal
}

echo "cores: $(nproc)  wrk connections: $CONNECTIONS  steady: $RATE sign-ins/s for ${STEADY}s  RSS after: ${AFTER_SECS}s"
line scenario "answers (status:count)" "login p99" "auth p99" "peak MB" "after MB"
idle
burst 1
burst 200
steady
