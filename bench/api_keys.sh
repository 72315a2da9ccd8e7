#!/usr/bin/env bash
# Load benchmark (not a test): throughput and p50/p99 latency of
# GET /api/v1/auth/test with a valid key against GET /healthz, in the same run,
# on SQLite and on PostgreSQL (when it answers). Release build, wrk on loopback.
#
#   bench/api_keys.sh            # DURATION=10s CONNECTIONS=32 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}" CONNECTIONS="${CONNECTIONS:-32}" PORT="${PORT:-18090}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet
BIN=target/release/latchkey WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source bench/lib.sh

run() {
  local label=$1
  start_portal "$@"
  local key
  key=$(curl -s -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["templates:read"]}' "$BASE/api/v1/api-keys" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || { echo "could not create a key on $label"; stop_portal; return 1; }
  read -r h_rps h_p50 h_p99 h_bad < <(measure "$BASE/healthz")
  read -r a_rps a_p50 a_p99 a_bad < <(measure -H "X-API-Key: $key" "$BASE/api/v1/auth/test")
  stop_portal
  row "$label" "/healthz" "$h_rps" "$h_p50" "$h_p99" "$h_bad"
  row "$label" "/api/v1/auth/test" "$a_rps" "$a_p50" "$a_p99" "$a_bad"
  awk -v a="$a_rps" -v h="$h_rps" -v l="$label" 'BEGIN { printf "%-10s authenticated / healthz throughput ratio: %.2f\n", l, a/h }'
}

echo "cores: $(nproc)  connections: $CONNECTIONS  duration: $DURATION"
row backend endpoint "req/s" "p50 ms" "p99 ms" non-2xx
for_each_backend run
