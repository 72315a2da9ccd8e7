#!/usr/bin/env bash
# Pages at scale (a benchmark, not a test): one team with 10,000 API keys and
# 100,000 audit events, seeded through the service layer (bench/seed.rs), on
# SQLite and on PostgreSQL (a fresh database latchkey_bench_pages_<pid>,
# dropped after). Each page — the key list (every status tab, the next page,
# a page far back), a key's page, the audit log (unfiltered, by each filter,
# the next page), support's search (by key prefix, whole key, email, team
# name) and support's key page — is requested N times, one request at a time
# after one warm-up, on the release build. The times are server time: the
# latency_ms of the server's request log (LATCHKEY_LOG=info), from the
# request's arrival in the middleware stack to its response; median and max.
# Then the plan of each page's queries on each database (EXPLAIN QUERY PLAN on
# SQLite as it is, without ANALYZE, as the server runs it; EXPLAIN on
# PostgreSQL after ANALYZE, as autovacuum leaves a table this size).
#
#   bench/pages.sh              # N=20 KEYS=10000 EVENTS=100000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-20}" KEYS="${KEYS:-10000}" EVENTS="${EVENTS:-100000}" PORT="${PORT:-18097}"
cargo build --release --quiet
cargo bench --bench seed --quiet --no-run
BIN=target/release/latchkey WORK=$(mktemp -d)
PG="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1/postgres}" PG_DB="latchkey_bench_pages_$$"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source bench/lib.sh

# sign_in EMAIL PASSWORD JAR
sign_in() {
  local csrf
  csrf=$(curl -s -c "$3" "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$3" -c "$3" -o /dev/null --data-urlencode "csrf_token=$csrf" --data-urlencode "email=$1" \
       --data-urlencode "password=$2" "$BASE/login"
}

# serve LABEL DATABASE_URL: an owner (team Bench) and a support person, the
# team seeded, the server started and both signed in (jars $OWNER, $STAFF);
# sets PID, BASE, DATA and the seeded names (SEED_*).
serve() {
  local label=$1 url=$2
  portal_data "$label" "$url"
  echo "support password 123" | "$BIN" user create --email support@example.test --support >/dev/null
  cargo bench --bench seed --quiet -- "$url" --keys "$KEYS" --events "$EVENTS" >"$DATA/seed.txt"
  while IFS='=' read -r k v; do printf -v "SEED_$k" '%s' "$v"; done <"$DATA/seed.txt"
  echo "$label: seeded $SEED_team_keys keys and $SEED_team_events audit events in ${SEED_seconds}s" >&2
  LATCHKEY_LOG=info portal_up
  OWNER="$DATA/owner.jar" STAFF="$DATA/staff.jar"
  sign_in bench@example.test "bench password 123" "$OWNER"
  sign_in support@example.test "support password 123" "$STAFF"
}

# page NAME JAR PATH: one warm-up, then N requests; prints the median and max
# latency_ms the server logged for them, and the rows the page showed.
page() {
  local name=$1 jar=$2 path=$3 code lines
  code=$(curl -s -o "$DATA/page.html" -w '%{http_code}' -b "$jar" "$BASE$path")
  [ "$code" = 200 ] || { echo "$BACKEND $name: HTTP $code for $path" >&2; return 1; }
  local shown  # support's results found, or the rows of the page's table
  case $path in
    /support\?*) shown=$(grep -oE 'href="/support/(keys|teams|users)/' "$DATA/page.html" | wc -l || true) ;;
    *) shown=$(($(grep -o '<tr' "$DATA/page.html" | wc -l || true) - 1)) ;;
  esac
  lines=$(wc -l <"$DATA/server.log")
  for _ in $(seq "$N"); do curl -s -o /dev/null -b "$jar" "$BASE$path"; done
  sleep 0.1
  tail -n +"$((lines + 1))" "$DATA/server.log" | sed 's/\x1b\[[0-9;]*m//g' |
    sed -n 's/.*latency_ms="\{0,1\}\([0-9.]*\).*/\1/p' | sort -n |
    awk -v b="$BACKEND" -v p="$name" -v rows="$((shown > 0 ? shown : 0))" '{ v[NR] = $1 }
      END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%-9s %-36s %8.2f %8.2f %6d\n", b, p, m, v[NR], rows }'
}

next_cursor() { grep -o 'cursor=[0-9A-Za-z._]*' "$DATA/page.html" | head -1 | cut -d= -f2; }

pages() {
  local keys=/settings/developer/api-keys audit=/settings/team/audit c
  local from30 to180 week_from week_to
  from30=$(date -u -d '30 days ago' +%F) to180=$(date -u -d '180 days ago' +%F)
  week_from=$(date -u -d '207 days ago' +%F) week_to=$(date -u -d '200 days ago' +%F)
  page "keys: first page" "$OWNER" "$keys"
  c=$(next_cursor)
  page "keys: next page" "$OWNER" "$keys?status=all&cursor=$c"
  page "keys: page after 1,000 keys" "$OWNER" "$keys?status=all&cursor=$SEED_deep_cursor"
  for s in active expiring_soon expired revoked; do page "keys: $s" "$OWNER" "$keys?status=$s"; done
  page "key page" "$OWNER" "$keys/$SEED_key_id"
  page "audit: unfiltered" "$OWNER" "$audit"
  c=$(next_cursor)
  page "audit: next page" "$OWNER" "$audit?cursor=$c"
  page "audit: actor (frequent)" "$OWNER" "$audit?actor=dev1"
  page "audit: actor (rare)" "$OWNER" "$audit?actor=latchkey+support"
  page "audit: actor (no match)" "$OWNER" "$audit?actor=nobody"
  page "audit: action (frequent)" "$OWNER" "$audit?action=login.succeeded"
  page "audit: action (rare)" "$OWNER" "$audit?action=api_key.revoked_by_support"
  page "audit: action prefix (frequent)" "$OWNER" "$audit?action=api_key."
  page "audit: action prefix (rare)" "$OWNER" "$audit?action=member."
  page "audit: from 30 days ago" "$OWNER" "$audit?from=$from30"
  page "audit: to 180 days ago" "$OWNER" "$audit?to=$to180"
  page "audit: one week, 200 days ago" "$OWNER" "$audit?from=$week_from&to=$week_to"
  page "support: key prefix" "$STAFF" "/support?q=$SEED_key_prefix"
  page "support: whole key" "$STAFF" "/support?q=$SEED_key_secret"
  page "support: email" "$STAFF" "/support?q=dev1%40bench"
  page "support: team name" "$STAFF" "/support?q=customer+012"
  page "support: key page" "$STAFF" "/support/keys/$SEED_key_id"
}

# The queries behind those pages, as the models write them (SELECT * for the
# column list), with this run's values.
queries() {
  local now cur_at cur_id from30 to180
  now=$(date +%s) cur_at=${SEED_deep_cursor%%.*} cur_id=${SEED_deep_cursor#*.}
  from30=$((now - 30 * 86400)) to180=$((now - 180 * 86400))
  local k="SELECT * FROM api_keys WHERE team_id = '$SEED_team_id'"
  local order="ORDER BY created_at DESC, id DESC LIMIT 26"
  local a="SELECT * FROM audit_events WHERE team_id = '$SEED_team_id'" newest="ORDER BY created_at DESC, id DESC"
  cat <<EOF
keys: first page|$k $order
keys: page after 1,000 keys|$k AND created_at <= $cur_at AND (created_at < $cur_at OR id < '$cur_id') $order
keys: active|$k AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $now) $order
keys: expiring_soon|$k AND revoked_at IS NULL AND expires_at > $now AND expires_at <= $((now + 604800)) $order
keys: expired|$k AND revoked_at IS NULL AND expires_at <= $now $order
keys: revoked|$k AND revoked_at IS NOT NULL $order
keys: the members' emails|SELECT * FROM memberships INNER JOIN users ON users.id = memberships.user_id WHERE memberships.team_id = '$SEED_team_id' ORDER BY memberships.created_at
key page: the key|SELECT * FROM api_keys WHERE id = '$SEED_key_id'
key page: its history|SELECT * FROM audit_events WHERE object_type = 'api_key' AND object_id = '$SEED_key_id' ORDER BY id DESC LIMIT 100
key page: its usage|SELECT day, count FROM api_key_usage WHERE key_id = '$SEED_key_id' AND day >= $((now / 86400 - 29))
audit: unfiltered|$a $newest LIMIT 51
audit: actor, next label|SELECT actor_label FROM audit_events WHERE team_id = '$SEED_team_id' AND actor_label > 'dev1@bench.test' ORDER BY actor_label LIMIT 1
audit: actor, per label|$a AND actor_label = 'dev1@bench.test' $newest LIMIT 51
audit: action|$a AND action = 'api_key.revoked_by_support' $newest LIMIT 51
audit: action prefix, per action|$a AND action = 'member.invited' $newest LIMIT 51
audit: from|$a AND created_at >= $from30 $newest LIMIT 51
audit: to|$a AND created_at <= $to180 $newest LIMIT 51
audit: next page|$a AND created_at <= $to180 AND (created_at < $to180 OR id < 1000) $newest LIMIT 51
support: whole key|SELECT * FROM api_keys WHERE key_hash = 'x'
support: key prefix|SELECT * FROM api_keys WHERE key_prefix = 'abcdefgh'
support: team name|SELECT * FROM teams WHERE lower(name) LIKE '%customer 012%' ESCAPE '\\' ORDER BY name LIMIT 20
support: email|SELECT * FROM users WHERE email LIKE '%dev1@bench%' ESCAPE '\\' ORDER BY email LIMIT 20
EOF
}

# plans LABEL: each query's plan on one line.
plans() {
  local name sql plan
  while IFS='|' read -r name sql; do
    if [ "$1" = sqlite ]; then
      plan=$(sqlite3 "$DATA/latchkey.db" "EXPLAIN QUERY PLAN $sql" | sed -n '2,$s/^[|` -]*//p' | paste -sd ';' | sed 's/;/; /g')
    else
      plan=$(psql "$DB_URL" -Atc "EXPLAIN (COSTS OFF) $sql" | grep -v '^ *\(Filter\|Index Cond\|Sort Key\|Presorted Key\|Recheck Cond\|Hash Cond\|Join Filter\)' |
             sed 's/^ *\(-> *\)\{0,1\}//' | paste -sd '>' | sed 's/>/ > /g')
    fi
    printf '%-9s %-32s %s\n' "$1" "$name" "$plan"
  done < <(queries)
}

run() {
  BACKEND=$1 DB_URL=$2
  serve "$@"
  [ "$BACKEND" = postgres ] && psql "$DB_URL" -qc ANALYZE
  printf '%-9s %-36s %8s %8s %6s\n' backend page "med ms" "max ms" rows
  pages
  stop_portal
  echo
  plans "$BACKEND"
  echo
}

echo "cores: $(nproc)  requests per page: $N (after one warm-up)  keys: $KEYS  audit events: $EVENTS"
run sqlite "sqlite://$WORK/sqlite/latchkey.db"
if psql "$PG" -c 'select 1' >/dev/null 2>&1; then
  psql "$PG" -qc "CREATE DATABASE $PG_DB" >/dev/null
  run postgres "${PG%/*}/$PG_DB"
else
  echo "postgres: skipped (no server at $PG)"
fi
