#!/usr/bin/env bash
# Load benchmark (not a test): throughput and p50/p99 latency of
# GET /api/v1/auth/test with a valid key against GET /healthz, in the same run,
# on SQLite and (when BENCH_POSTGRES_URL is set or PostgreSQL answers on
# 127.0.0.1) on PostgreSQL. Release build, wrk on loopback.
#
#   bench/api_keys.sh            # DURATION=10s CONNECTIONS=32 by default
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18090}"
PG_URL="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1/postgres}"

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet
BIN=target/release/latchkey
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Prints "req/s p50_ms p99_ms" for a wrk run.
measure() {
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${non2xx:-0}"
}

to_ms() {  # wrk prints 512.00us, 1.20ms or 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n*=1000; printf "%.3f", n }'
}

run_backend() {
  local label=$1 url=$2
  local data="$WORK/$label"
  mkdir -p "$data"
  export LATCHKEY_DATA_DIR="$data" DATABASE_URL="$url" LATCHKEY_BIND="127.0.0.1:$PORT" \
         LATCHKEY_DEFAULT_PLAN=unlimited LATCHKEY_LOG=warn
  echo "bench password 123" | "$BIN" user create --email bench@example.test --team Bench >/dev/null
  "$BIN" >"$data/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

  local jar="$data/jar" base="http://127.0.0.1:$PORT"
  local csrf
  csrf=$(curl -s -c "$jar" "$base/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf_token=$csrf&email=bench%40example.test&password=bench+password+123" "$base/login"
  csrf=$(curl -s -b "$jar" -c "$jar" "$base/settings/team" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  local key
  key=$(curl -s -b "$jar" -H "X-CSRF-Token: $csrf" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["templates:read"]}' "$base/api/v1/api-keys" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || { echo "could not create a key on $label"; kill "$pid"; return 1; }

  read -r h_rps h_p50 h_p99 h_bad < <(measure "$base/healthz")
  read -r a_rps a_p50 a_p99 a_bad < <(measure -H "X-API-Key: $key" "$base/api/v1/auth/test")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-10s %-22s %10s %9s %9s %8s\n' "$label" "/healthz" "$h_rps" "$h_p50" "$h_p99" "$h_bad"
  printf '%-10s %-22s %10s %9s %9s %8s\n' "$label" "/api/v1/auth/test" "$a_rps" "$a_p50" "$a_p99" "$a_bad"
  awk -v a="$a_rps" -v h="$h_rps" -v l="$label" 'BEGIN { printf "%-10s authenticated / healthz throughput ratio: %.2f\n", l, a/h }'
  unset DATABASE_URL
}

echo "cores: $(nproc)  connections: $CONNECTIONS  duration: $DURATION"
printf '%-10s %-22s %10s %9s %9s %8s\n' backend endpoint "req/s" "p50 ms" "p99 ms" non-2xx
run_backend sqlite "sqlite://$WORK/sqlite/latchkey.db"
if psql "$PG_URL" -c 'select 1' >/dev/null 2>&1; then
  db="latchkey_bench_$$"
  psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
  run_backend postgres "${PG_URL%/*}/$db"
  psql "$PG_URL" -qc "DROP DATABASE $db" >/dev/null || true
else
  echo "postgres: skipped (no server at $PG_URL)"
fi
