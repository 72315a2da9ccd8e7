#!/usr/bin/env bash
# Instruction counts per request (not a test): runs the release binary under
# `valgrind --tool=callgrind` twice per endpoint — M and then N requests, one
# after the other over one keep-alive connection — and prints
# (Ir(N) − Ir(M)) / (N − M) per endpoint and its ratio to GET /healthz.
# Start-up, shutdown and the first (cache-filling) request cancel out in the
# difference. Instruction counts do not depend on the machine's load.
#
#   bench/instructions.sh              # M=100 N=600 by default, SQLite
#   KEEP=dir bench/instructions.sh     # keeps the callgrind files (callgrind_annotate)
#   BIN=/path/to/latchkey bench/instructions.sh   # measures that binary
#   ONLY='auth_test$' bench/instructions.sh       # /healthz and the endpoints whose label matches
#   BASELINE=7fb57c8 bench/instructions.sh        # that commit's release build, measured in the same
#                                                 # run, beside this one: Ir/request of each and the ratio
#
# Background work runs on timers, so its instructions grow with the run's
# wall time: the change feed is read once a second here instead of every
# 250 ms and usage is flushed once an hour (LATCHKEY_FEED_POLL_MS,
# LATCHKEY_USAGE_FLUSH_SECONDS), which keeps that share under 1 %.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BASELINE:-}" ] && [ -z "${_MEASURING:-}" ]; then
  # The baseline is built from a detached worktree into its own target
  # directory (kept between runs), then both builds are measured here.
  here=$(pwd) base_src=$(mktemp -d) this_rev="$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  trap 'git -C "$here" worktree remove --force "$base_src/src" 2>/dev/null || true; rm -rf "$base_src"' EXIT
  git worktree add --detach -q "$base_src/src" "$BASELINE"
  (cd "$base_src/src" && CARGO_TARGET_DIR="$here/target/baseline" cargo build --release --quiet)
  cp target/baseline/release/latchkey "$base_src/latchkey-baseline"
  [ -n "${BIN:-}" ] || { cargo build --release --quiet; BIN=target/release/latchkey; }
  BIN="$base_src/latchkey-baseline" _MEASURING=1 "$0" | tee "$base_src/baseline.txt"
  BIN="$BIN" _MEASURING=1 "$0" | tee "$base_src/current.txt"
  echo
  printf '%-36s %14s %14s %8s\n' endpoint "baseline Ir" "this Ir" "this/base"
  # Rows are "<endpoint> <Ir> <ratio>"; the endpoint is the text before the last two fields.
  awk 'NR == FNR { if (NF > 2 && $(NF-1) ~ /^[0-9]+$/) { k = $0; sub(/ +[0-9]+ +[0-9.]+$/, "", k); base[k] = $(NF-1) } next }
       NF > 2 && $(NF-1) ~ /^[0-9]+$/ { k = $0; sub(/ +[0-9]+ +[0-9.]+$/, "", k)
         if (k in base) printf "%-36s %14d %14d %8.3f\n", k, base[k], $(NF-1), $(NF-1) / base[k] }' \
      "$base_src/baseline.txt" "$base_src/current.txt"
  echo "baseline $BASELINE, this $this_rev"
  exit 0
fi
M="${M:-100}" N="${N:-600}" PORT="${PORT:-18092}"
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
# BIN=path measures another build (say, the previous commit's) instead.
[ -n "${BIN:-}" ] || { cargo build --release --quiet; BIN=target/release/latchkey; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
CONNECTIONS=1 DURATION=1s
source bench/lib.sh

# The credentials, made by the server running normally.
start_portal sqlite "sqlite://$WORK/sqlite/latchkey.db"
KEY=$(curl -s -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'content-type: application/json' \
      -d '{"name":"bench","scopes":["templates:read"]}' "$BASE/api/v1/api-keys" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
page=$(curl -s -b "$JAR" -d "csrf_token=$CSRF&name=Bench&redirect_uris=https%3A%2F%2Fbench.example%2Fcb&client_type=confidential&scopes=templates%3Aread" \
       "$BASE/settings/developer/oauth-apps")
CLIENT_ID=$(sed -n 's/.*<code id="client-id">\([^<]*\)<.*/\1/p' <<<"$page" | head -1)
CLIENT_SECRET=$(sed -n 's/.*<code id="secret">\([^<]*\)<.*/\1/p' <<<"$page" | head -1)
TOKEN=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "$BASE/oauth/token" \
        | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
stop_portal
GATEWAY=$(DATABASE_URL="sqlite://$WORK/sqlite/latchkey.db" "$BIN" service-key create --name bench --scopes introspect 2>/dev/null)
[ -n "$KEY" ] && [ -n "$TOKEN" ] && [ -n "$GATEWAY" ] || { echo "could not make the credentials"; exit 1; }
BASIC=$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)

export DATABASE_URL="sqlite://$WORK/sqlite/latchkey.db" LATCHKEY_USAGE_FLUSH_SECONDS=3600

# ir COUNT REQUEST...: total instructions of a server run that answered COUNT requests.
ir() {
  local count=$1; shift
  local out="$WORK/callgrind.$count.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" >"$WORK/valgrind.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  # Let start-up settle (the connection pool opens its connections on its own thread).
  sleep 3
  python3 bench/requests.py "$PORT" "$count" "$@" || { kill "$pid"; exit 1; }
  kill -TERM "$pid"; wait "$pid" || true
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out" "$KEEP/$LABEL.$count.callgrind"
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

per_request() {  # per_request LABEL REQUEST...
  LABEL=$1; shift
  local a b
  a=$(ir "$M" "$@"); b=$(ir "$N" "$@")
  echo $(( (b - a) / (N - M) ))
}

printf '%-36s %14s %8s\n' endpoint "Ir/request" ratio
h=$(per_request healthz GET /healthz 200)
printf '%-36s %14s %8s\n' "GET /healthz" "$h" "1.00"
report() {  # report NAME LABEL REQUEST...
  local name=$1; shift
  [[ "$1" =~ ${ONLY:-.} ]] || return 0
  local n; n=$(per_request "$@")
  printf '%-36s %14s %8s\n' "$name" "$n" "$(awk -v n="$n" -v h="$h" 'BEGIN { printf "%.2f", n/h }')"
}
# Key requests carry a user agent, as real clients do (usage records it).
UA="User-Agent:bench/1.0 (instructions.sh)"
report "GET /api/v1/auth/test (API key)" auth_test GET /api/v1/auth/test 200 "X-API-Key:$KEY" "$UA"
report "GET /auth/verify (API key)" verify GET /auth/verify 200 "X-API-Key:$KEY" "$UA"
report "GET /auth/verify?scope= (API key)" verify_scope GET "/auth/verify?scope=templates:read" 200 "X-API-Key:$KEY" "$UA"
report "POST /oauth/introspect (API key)" introspect_key POST /oauth/introspect 200 \
  "Authorization:Bearer $GATEWAY" --body "token=$KEY"
report "POST /oauth/introspect (access token)" introspect_token POST /oauth/introspect 200 \
  "Authorization:Bearer $GATEWAY" --body "token=$TOKEN"
report "GET /api/v1/auth/test (access token)" auth_test_token GET /api/v1/auth/test 200 "Authorization:Bearer $TOKEN"
report "POST /oauth/token (client_credentials)" token POST /oauth/token 200 \
  "Authorization:Basic $BASIC" --body "grant_type=client_credentials"
echo "M=$M N=$N requests per run; callgrind; release build; SQLite"
