#!/usr/bin/env bash
# Load benchmark (not a test): OAuth token issuance (client_credentials), and
# introspection of an access token and of an API key, against GET /healthz
# and GET /api/v1/auth/test (the same key) in the same run, on SQLite and on
# PostgreSQL (when it answers). Release build, wrk on loopback.
#
#   bench/oauth.sh               # DURATION=10s CONNECTIONS=32 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}" CONNECTIONS="${CONNECTIONS:-32}" PORT="${PORT:-18091}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet
BIN=target/release/latchkey WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
source bench/lib.sh

post_script() {  # post_script FILE AUTH_HEADER BODY
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = "$3"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "$2"
LUA
}

run() {
  local label=$1
  start_portal "$@"
  local page id secret gateway token
  page=$(curl -s -b "$JAR" -d "csrf_token=$CSRF&name=Bench&redirect_uris=https%3A%2F%2Fbench.example%2Fcb&client_type=confidential&scopes=templates%3Aread" \
         "$BASE/settings/developer/oauth-apps")
  id=$(sed -n 's/.*<code id="client-id">\([^<]*\)<.*/\1/p' <<<"$page" | head -1)
  secret=$(sed -n 's/.*<code id="secret">\([^<]*\)<.*/\1/p' <<<"$page" | head -1)
  gateway=$("$BIN" service-key create --name bench --scopes introspect 2>/dev/null)
  token=$(curl -s -u "$id:$secret" -d grant_type=client_credentials "$BASE/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { echo "could not get a token on $label"; stop_portal; return 1; }
  key=$(curl -s -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'content-type: application/json' \
        -d '{"name":"bench","scopes":["templates:read"]}' "$BASE/api/v1/api-keys" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$key" ] || { echo "could not create a key on $label"; stop_portal; return 1; }
  post_script "$WORK/token.lua" "Basic $(printf '%s:%s' "$id" "$secret" | base64 -w0)" "grant_type=client_credentials"
  post_script "$WORK/introspect.lua" "Bearer $gateway" "token=$token"
  post_script "$WORK/introspect_key.lua" "Bearer $gateway" "token=$key"
  read -r h_rps h_p50 h_p99 h_bad < <(measure "$BASE/healthz")
  read -r a_rps a_p50 a_p99 a_bad < <(measure -H "X-API-Key: $key" "$BASE/api/v1/auth/test")
  read -r i_rps i_p50 i_p99 i_bad < <(measure -s "$WORK/introspect.lua" "$BASE/oauth/introspect")
  read -r k_rps k_p50 k_p99 k_bad < <(measure -s "$WORK/introspect_key.lua" "$BASE/oauth/introspect")
  read -r t_rps t_p50 t_p99 t_bad < <(measure -s "$WORK/token.lua" "$BASE/oauth/token")
  stop_portal
  row "$label" "/healthz" "$h_rps" "$h_p50" "$h_p99" "$h_bad"
  row "$label" "/api/v1/auth/test" "$a_rps" "$a_p50" "$a_p99" "$a_bad"
  row "$label" "/oauth/introspect (token)" "$i_rps" "$i_p50" "$i_p99" "$i_bad"
  row "$label" "/oauth/introspect (key)" "$k_rps" "$k_p50" "$k_p99" "$k_bad"
  row "$label" "/oauth/token (client_cred)" "$t_rps" "$t_p50" "$t_p99" "$t_bad"
  awk -v t="$t_rps" -v i="$i_rps" -v k="$k_rps" -v a="$a_rps" -v h="$h_rps" -v l="$label" \
    'BEGIN { printf "%-10s introspection / auth/test: token %.2f, key %.2f; token issuance / healthz %.3f\n", l, i/a, k/a, t/h }'
}

echo "cores: $(nproc)  connections: $CONNECTIONS  duration: $DURATION"
row backend endpoint "req/s" "p50 ms" "p99 ms" non-2xx
for_each_backend run
