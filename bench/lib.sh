# Shared by the load benchmarks: wrk runs and a portal started on a backend.
# Expects DURATION, CONNECTIONS, PORT, BIN, WORK.

# Prints "req/s p50_ms p99_ms non2xx" for a wrk run.
measure() {
  local out rps p50 p99 non2xx
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${non2xx:-0}"
}

to_ms() {  # wrk prints 512.00us, 1.20ms or 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n*=1000; printf "%.3f", n }'
}

row() { printf '%-10s %-26s %10s %9s %9s %8s\n' "$@"; }

# portal_data LABEL DATABASE_URL: a fresh data dir, the environment of a
# portal on it, and an owner bench@example.test (team Bench); sets DATA.
portal_data() {
  local label=$1 url=$2
  DATA="$WORK/$label"
  mkdir -p "$DATA"
  export LATCHKEY_DATA_DIR="$DATA" DATABASE_URL="$url" LATCHKEY_BIND="127.0.0.1:$PORT" \
         LATCHKEY_DEFAULT_PLAN=unlimited LATCHKEY_LOG=warn
  echo "bench password 123" | "$BIN" user create --email bench@example.test --team Bench >/dev/null
}

# portal_up: starts the server on $DATA and waits for it; sets PID, BASE.
portal_up() {
  "$BIN" >"$DATA/server.log" 2>&1 &
  PID=$!
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
}

# start_portal LABEL DATABASE_URL: a fresh data dir, an owner bench@example.test
# signed in with the cookie jar $JAR; sets PID, BASE, CSRF.
start_portal() {
  portal_data "$@"
  portal_up
  JAR="$DATA/jar"
  CSRF=$(curl -s -c "$JAR" "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$JAR" -c "$JAR" -o /dev/null -d "csrf_token=$CSRF&email=bench%40example.test&password=bench+password+123" "$BASE/login"
  CSRF=$(curl -s -b "$JAR" -c "$JAR" "$BASE/settings/team" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
}

stop_portal() {
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
  unset DATABASE_URL
}

# for_each_backend FUNCTION: runs it on SQLite, then PostgreSQL if reachable.
for_each_backend() {
  "$1" sqlite "sqlite://$WORK/sqlite/latchkey.db"
  local pg="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1/postgres}"
  if psql "$pg" -c 'select 1' >/dev/null 2>&1; then
    local db="latchkey_bench_$$_$RANDOM"
    psql "$pg" -qc "CREATE DATABASE $db" >/dev/null
    "$1" postgres "${pg%/*}/$db"
    psql "$pg" -qc "DROP DATABASE $db" >/dev/null || true
  else
    echo "postgres: skipped (no server at $pg)"
  fi
}
