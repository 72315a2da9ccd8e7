#!/usr/bin/env bash
# Scale-out benchmark (not a test): two release instances on one PostgreSQL
# database and one Redis prefix, same secret, measured in the same run:
#   (a) aggregate throughput of GET /api/v1/auth/test, one wrk per instance at
#       once, against one instance alone (ratio printed);
#   (b) requests admitted against a free-plan team (burst 10 per minute) when
#       200 requests alternate over both instances (one instance admits 10);
#   (c) cross-instance revocation delay: a key verified (cached) on B, revoked
#       on A; B is polled until it answers 401; median and max over 20 tries,
#       in ms from the DELETE's completion.
# Needs PostgreSQL (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1/postgres),
# Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/0), curl, jq, psql,
# python3 (the revocation poll) and wrk (installed if missing). Cleans up
# (instances, database, its Redis keys) on exit.
#
#   bench/scale.sh            # DURATION=10s CONNECTIONS=32 TRIES=20 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}" CONNECTIONS="${CONNECTIONS:-32}" PORT="${PORT:-18091}" TRIES="${TRIES:-20}"
PG="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1/postgres}"
REDIS="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet
BIN=target/release/latchkey WORK=$(mktemp -d)
DB="latchkey_scale_$$"
PREFIX="latchkey-scale-$$-$RANDOM:"
source bench/lib.sh

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" 2>/dev/null | xargs -r redis-cli -u "$REDIS" del >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="${PG%/*}/$DB" LATCHKEY_SECRET="scale-bench-$(head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9)-0123456789" \
       REDIS_URL="$REDIS" LATCHKEY_REDIS_PREFIX="$PREFIX" LATCHKEY_LOG=warn
export LATCHKEY_DATA_DIR="$WORK/cli"
"$BIN" migrate >/dev/null
echo "bench password 123" | "$BIN" user create --email bench@example.test --team Bench >/dev/null
echo "free password 1234" | "$BIN" user create --email free@example.test --team Free >/dev/null
"$BIN" team set-plan --team Bench --plan unlimited >/dev/null
"$BIN" team set-plan --team Free --plan free >/dev/null

# start_instance NAME PORT: prints nothing; sets URL_<NAME>.
start_instance() {
  local name=$1 port=$2
  mkdir -p "$WORK/$name"
  LATCHKEY_DATA_DIR="$WORK/$name" LATCHKEY_BIND="127.0.0.1:$port" "$BIN" >"$WORK/$name/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "instance $name did not start:"; cat "$WORK/$name/server.log"; exit 1
}
A="http://127.0.0.1:$PORT" B="http://127.0.0.1:$((PORT + 1))"
start_instance a "$PORT"
start_instance b "$((PORT + 1))"

# session_key BASE EMAIL PASSWORD SCOPES_JSON: signs in on BASE, creates a key, prints it.
session_key() {
  local base=$1 email=$2 password=$3 scopes=$4 jar csrf
  jar=$(mktemp -p "$WORK")
  csrf=$(curl -s -c "$jar" "$base/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf_token=$csrf" --data-urlencode "email=$email" \
       --data-urlencode "password=$password" "$base/login"
  csrf=$(curl -s -b "$jar" -c "$jar" "$base/settings/team" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -H "X-CSRF-Token: $csrf" -H 'content-type: application/json' \
       -d "{\"name\":\"bench\",\"scopes\":$scopes}" "$base/api/v1/api-keys" | jq -r '.data.key // empty'
}
ADMIN=$(session_key "$A" bench@example.test "bench password 123" '["api_keys:read","api_keys:write","templates:read"]')
FREE=$(session_key "$A" free@example.test "free password 1234" '["templates:read"]')
[ -n "$ADMIN" ] && [ -n "$FREE" ] || { echo "could not create the keys"; exit 1; }
LOAD=$(curl -s -H "X-API-Key: $ADMIN" -H 'content-type: application/json' \
       -d '{"name":"load","scopes":["templates:read"]}' "$A/api/v1/api-keys" | jq -r '.data.key // empty')
[ -n "$LOAD" ] || { echo "could not create the load key"; exit 1; }

echo "cores: $(nproc)  connections per wrk: $CONNECTIONS  duration: $DURATION  tries: $TRIES"

# (a) throughput: A alone, then A and B at once (one wrk each).
read -r one_rps one_p50 one_p99 one_bad < <(measure -H "X-API-Key: $LOAD" "$A/api/v1/auth/test")
# The database's load while both serve (the capacity model: it follows the
# number of instances — feed reads, flushes — not the request rate).
stats() { psql "$PG" -tAc "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched FROM pg_stat_database WHERE datname = '$DB'" | tr '|' ' '; }
read -r tx0 rows0 < <(stats)
t0=$(date +%s.%N)
measure -H "X-API-Key: $LOAD" "$A/api/v1/auth/test" >"$WORK/wrk-a" &
wa=$!
measure -H "X-API-Key: $LOAD" "$B/api/v1/auth/test" >"$WORK/wrk-b" &
wb=$!
wait "$wa" "$wb"
read -r tx1 rows1 < <(stats)
t1=$(date +%s.%N)
db_tx=$(awk -v a="$tx0" -v b="$tx1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", (b - a) / (e - s) }')
db_rows=$(awk -v a="$rows0" -v b="$rows1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
read -r a_rps a_p50 a_p99 a_bad <"$WORK/wrk-a"
read -r b_rps b_p50 b_p99 b_bad <"$WORK/wrk-b"
both_rps=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", a + b }')
ratio=$(awk -v t="$both_rps" -v o="$one_rps" 'BEGIN { printf "%.2f", t / o }')

# (b) the free plan's burst over both instances: 200 requests, alternated.
admitted_a=0 admitted_b=0 refused=0 other=0
for i in $(seq 200); do
  if ((i % 2)); then base=$A; else base=$B; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $FREE" "$base/api/v1/auth/test")
  case "$code" in
    200) if [ "$base" = "$A" ]; then admitted_a=$((admitted_a + 1)); else admitted_b=$((admitted_b + 1)); fi ;;
    429) refused=$((refused + 1)) ;;
    *) other=$((other + 1)) ;;
  esac
done
admitted=$((admitted_a + admitted_b))

# (c) revocation on A seen by B (which has the key cached): delay in ms.
read -r rev_median rev_max rev_timeouts < <(python3 - "$A" "$B" "$ADMIN" "$TRIES" <<'PY'
import http.client, json, sys, time, urllib.parse
a, b, admin, tries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def conn(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)
ca, cb = conn(a), conn(b)
def call(c, method, path, key, body=None):
    headers = {"X-API-Key": key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, r.read()
delays, timeouts = [], 0
for i in range(tries):
    status, body = call(ca, "POST", "/api/v1/api-keys", admin, json.dumps({"name": f"revoke-{i}", "scopes": ["templates:read"]}))
    assert status == 201, (status, body)
    data = json.loads(body)["data"]
    status, _ = call(cb, "GET", "/api/v1/auth/test", data["key"])
    assert status == 200, status
    status, body = call(ca, "DELETE", "/api/v1/api-keys/" + data["id"], admin)
    assert status == 200, (status, body)
    done = time.monotonic()
    while True:
        status, _ = call(cb, "GET", "/api/v1/auth/test", data["key"])
        now = time.monotonic()
        if status == 401:
            delays.append((now - done) * 1000)
            break
        if now - done > 10:
            timeouts += 1
            break
delays.sort()
n = len(delays)
median = (delays[(n - 1) // 2] + delays[n // 2]) / 2 if n else float("nan")
print(f"{median:.1f} {max(delays) if n else float('nan'):.1f} {timeouts}")
PY
)

echo
printf '%-44s %12s %9s %9s %8s\n' measure value "p50 ms" "p99 ms" non-2xx
printf '%-44s %12s %9s %9s %8s\n' "(a) auth/test req/s, A alone" "$one_rps" "$one_p50" "$one_p99" "$one_bad"
printf '%-44s %12s %9s %9s %8s\n' "(a) auth/test req/s, A while B runs" "$a_rps" "$a_p50" "$a_p99" "$a_bad"
printf '%-44s %12s %9s %9s %8s\n' "(a) auth/test req/s, B while A runs" "$b_rps" "$b_p50" "$b_p99" "$b_bad"
printf '%-44s %12s\n' "(a) aggregate req/s, A + B" "$both_rps"
printf '%-44s %12s\n' "(a) aggregate / one instance" "$ratio"
printf '%-44s %12s\n' "(a) database transactions/s during it" "$db_tx"
printf '%-44s %12s\n' "(a) database rows read/s during it" "$db_rows"
printf '%-44s %12s\n' "(a) requests per database transaction" "$(awk -v r="$both_rps" -v t="$db_tx" 'BEGIN { printf "%.0f", (t > 0 ? r / t : 0) }')"
printf '%-44s %12s\n' "(b) admitted of 200 (free plan: 10/minute)" "$admitted (A $admitted_a, B $admitted_b; 429: $refused, other: $other)"
printf '%-44s %12s\n' "(b) admitted / plan burst" "$(awk -v n="$admitted" 'BEGIN { printf "%.1f", n / 10 }')"
printf '%-44s %12s\n' "(c) revocation seen on B, median ms" "$rev_median"
printf '%-44s %12s\n' "(c) revocation seen on B, max ms" "$rev_max"
printf '%-44s %12s\n' "(c) tries not seen within 10 s" "$rev_timeouts of $TRIES"
