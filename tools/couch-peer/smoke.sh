#!/usr/bin/env bash
# Smoke test for couch-peer: starts a private server (in-memory, or leveldb
# with --leveldb) on a free port and checks the fixes listed in README.md.
# Usage: tools/couch-peer/smoke.sh [--leveldb]
# Needs node, curl and an installed node_modules (npm ci --ignore-scripts).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  [ -n "$PID" ] && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

STORE="--in-memory"
[ "${1:-}" = "--leveldb" ] && STORE="$WORK/data"

node "$HERE/couch-peer.js" 0 $STORE >"$WORK/out.log" 2>"$WORK/err.log" &
PID=$!
URL=""
for _ in $(seq 1 100); do
  URL="$(sed -n 's/^couch-peer listening on \(http:.*\)$/\1/p' "$WORK/out.log")"
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { echo "server did not start"; cat "$WORK/err.log"; exit 1; }

FAILS=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; echo "       got: $2"; FAILS=$((FAILS + 1)); }
expect() { # name, expected substring, actual
  case "$3" in *"$2"*) ok "$1" ;; *) bad "$1" "$3" ;; esac
}
J=(-H 'Content-Type: application/json')
# body and status on one line: `{"ok":true} 201`
req() { curl -s -w ' %{http_code}' "$@" | tr -d '\n'; }
# wait until FILE contains TEXT (bounded), like a test waiting on a signal
wait_for() {
  for _ in $(seq 1 100); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

expect "GET / says couchdb Welcome" '"couchdb":"Welcome"' "$(curl -s "$URL/")"
expect "GET /_up" '{"status":"ok","seeds":{}}' "$(curl -s "$URL/_up")"

# --- database names kept verbatim
curl -s -XPUT "$URL/numbers%2F%2B1415" >/dev/null
curl -s -XPUT "$URL/numbers%2B1415" >/dev/null
expect "PUT a/b then ab: both created" '{"ok":true}' "$(curl -s -XPUT "$URL/a%2Fb"; curl -s -XPUT "$URL/ab")"
curl -s -XPUT "$URL/account%2Fab%2Fcd%2Fef0123456789abcdef0123456789" >/dev/null
ALL="$(curl -s "$URL/_all_dbs")"
expect "_all_dbs lists numbers/+1415 unencoded" '"numbers/+1415"' "$ALL"
expect "_all_dbs lists numbers+1415 separately" '"numbers+1415"' "$ALL"
expect "_all_dbs lists account/ab/cd/ef..." '"account/ab/cd/ef0123456789abcdef0123456789"' "$ALL"
expect "_all_dbs lists a/b and ab" '"a/b","ab"' "$ALL"
expect "db_name kept" '"db_name":"numbers/+1415"' "$(curl -s "$URL/numbers%2F%2B1415")"
INFO="$(curl -s "$URL/numbers%2F%2B1415")"
for f in '"update_seq":"0"' '"purge_seq":"0"' '"doc_del_count":0' '"sizes":{' '"cluster":{' '"props":{}' '"disk_format_version":' '"compact_running":false'; do
  expect "GET /db has $f" "$f" "$INFO"
done
expect "illegal name -> 400" '{"error":"illegal_database_name","reason":"Name: '"'"'Bad_Name'"'"'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."}' "$(req -XPUT "$URL/Bad_Name")"
expect "DELETE missing db -> 404" '{"error":"not_found","reason":"Database does not exist."} 404' "$(req -XDELETE "$URL/nope")"
expect "PUT existing db -> 412" ' 412' "$(req -XPUT "$URL/ab")"

DB="$URL/numbers%2F%2B1415"
curl -s -XPUT "$DB/d1" "${J[@]}" -d '{"type":"carrier","n":1}' >/dev/null
curl -s -XPUT "$DB/d2" "${J[@]}" -d '{"type":"number","n":2}' >/dev/null
curl -s -XPUT "$DB/_design/f" "${J[@]}" -d '{"filters":{"carriers":"function(doc){return doc.type===\"carrier\";}"}}' >/dev/null
expect "doc in slash db readable" '"type":"carrier"' "$(curl -s "$DB/d1")"
expect "a/b does not see numbers/+1415 docs" '"doc_count":0' "$(curl -s "$URL/a%2Fb")"

# --- continuous feed with Accept-Encoding: gzip delivers a change promptly
curl -sN -D "$WORK/h1" -H 'Accept-Encoding: gzip' "$DB/_changes?feed=continuous&since=now&heartbeat=500" >"$WORK/feed1" &
FEED1=$!
wait_for "$WORK/h1" "200 OK" || bad "continuous: headers sent at once" "$(cat "$WORK/h1")"
curl -s -XPUT "$DB/live1" "${J[@]}" -d '{"type":"carrier"}' >/dev/null
if wait_for "$WORK/feed1" '"id":"live1"'; then ok "continuous feed (gzip asked) delivers a live change"; else bad "continuous live change" "$(cat "$WORK/feed1")"; fi
if grep -qi '^content-encoding' "$WORK/h1"; then bad "no Content-Encoding on _changes" "$(cat "$WORK/h1")"; else ok "no Content-Encoding on _changes"; fi
kill $FEED1 2>/dev/null; wait $FEED1 2>/dev/null

# --- timeout closes a continuous feed with last_seq
OUT="$(curl -s -m 20 "$DB/_changes?feed=continuous&since=now&timeout=300")"
expect "continuous timeout ends with last_seq line" '{"last_seq":4,"pending":0}' "$OUT"
OUT="$(curl -s -m 20 "$DB/_changes?feed=continuous&timeout=0")"
expect "continuous timeout=0 returns backlog + last_seq" '{"last_seq":4,"pending":0}' "$OUT"
expect "continuous limit honoured" '{"last_seq":2,"pending":2}' "$(curl -s -m 20 "$DB/_changes?feed=continuous&limit=2")"
expect "longpoll timeout closes" '"last_seq":4,"pending":0}' "$(curl -s -m 20 "$DB/_changes?feed=longpoll&since=now&timeout=300")"
expect "eventsource content type" 'text/event-stream' "$(curl -s -m 20 -D - -o /dev/null "$DB/_changes?feed=eventsource&timeout=0")"

# --- filters
SEL="$(curl -s -XPOST "$DB/_changes?filter=_selector" "${J[@]}" -d '{"selector":{"type":"carrier"}}')"
expect "_selector (POST) matches d1" '"id":"d1"' "$SEL"
case "$SEL" in *'"id":"d2"'*) bad "_selector excludes d2" "$SEL" ;; *) ok "_selector excludes d2" ;; esac
expect "_selector (GET) works" '"id":"d2"' "$(curl -s "$DB/_changes?filter=_selector&selector=%7B%22type%22%3A%22number%22%7D")"
curl -sN -D "$WORK/h2" "$DB/_changes?feed=continuous&since=now&filter=_selector&timeout=10000" -XPOST "${J[@]}" -d '{"selector":{"type":"carrier"}}' >"$WORK/feed2" &
FEED2=$!
# since=now is fixed before the headers go out, so writes after them are seen
wait_for "$WORK/h2" "200 OK" || bad "_selector feed headers" "$(cat "$WORK/h2")"
curl -s -XPUT "$DB/live2" "${J[@]}" -d '{"type":"number"}' >/dev/null
curl -s -XPUT "$DB/live3" "${J[@]}" -d '{"type":"carrier"}' >/dev/null
if wait_for "$WORK/feed2" '"id":"live3"'; then
  if grep -q '"id":"live2"' "$WORK/feed2"; then bad "live _selector feed filters" "$(cat "$WORK/feed2")"; else ok "live _selector feed filters"; fi
else bad "live _selector feed delivers" "$(cat "$WORK/feed2")"; fi
kill $FEED2 2>/dev/null; wait $FEED2 2>/dev/null
expect "_design filter" '"id":"_design/f"' "$(curl -s "$DB/_changes?filter=_design")"
expect "_doc_ids filter (POST)" '"results":[{"id":"d2"' "$(curl -s -XPOST "$DB/_changes?filter=_doc_ids" "${J[@]}" -d '{"doc_ids":["d2"]}')"
expect "ddoc/name filter" '"id":"d1"' "$(curl -s "$DB/_changes?filter=f/carriers")"

# --- bad filters answer and do not crash the server
expect "missing ddoc filter -> 404" '{"error":"not_found","reason":"missing"} 404' "$(req "$DB/_changes?filter=nof/x")"
expect "missing filter fn -> 404" 'missing json key: x' "$(curl -s "$DB/_changes?filter=f/x")"
curl -s -XPUT "$DB/_design/broken" "${J[@]}" -d '{"filters":{"syntax":"function(doc){ return ( }"}}' >/dev/null
expect "filter with a syntax error -> 400 compilation_error" '"error":"compilation_error"' "$(req -m 10 "$DB/_changes?filter=broken/syntax")"
expect "malformed filter -> 400" ' 400' "$(req "$DB/_changes?filter=_bogus")"
expect "_selector without selector -> 400" ' 400' "$(req -XPOST "$DB/_changes?filter=_selector" "${J[@]}" -d '{}')"
expect "server alive after bad filters" '{"status":"ok","seeds":{}}' "$(curl -s "$URL/_up")"
kill -0 "$PID" 2>/dev/null && ok "process still running" || bad "process still running" "dead"

# --- _find bookmark
F1="$(curl -s -XPOST "$DB/_find" "${J[@]}" -d '{"selector":{"n":{"$gt":0}},"limit":1}')"
expect "_find returns a bookmark" '"bookmark":"' "$F1"
BM="$(printf '%s' "$F1" | sed -n 's/.*"bookmark":"\([^"]*\)".*/\1/p')"
expect "_find bookmark pages on" '"_id":"d2"' "$(curl -s -XPOST "$DB/_find" "${J[@]}" -d '{"selector":{"n":{"$gt":0}},"limit":1,"bookmark":"'"$BM"'"}')"

# --- deleting the db ends its open feeds
curl -s -XPUT "$URL/doomed" >/dev/null
curl -sN -D "$WORK/h3" "$URL/doomed/_changes?feed=continuous&heartbeat=200" >"$WORK/feed3" &
FEED3=$!
wait_for "$WORK/h3" "200 OK" || bad "doomed feed headers" "$(cat "$WORK/h3")"
curl -s -XDELETE "$URL/doomed" >/dev/null
if wait_for "$WORK/feed3" 'Database does not exist'; then ok "deleting a db ends its continuous feed"; else bad "feed ends on db delete" "$(cat "$WORK/feed3")"; fi
wait $FEED3 2>/dev/null

# --- abandoned feeds do not leak: open 50, drop them, writes still fast
DROPPED=()
for i in $(seq 1 50); do curl -s -m 0.3 "$DB/_changes?feed=continuous&include_docs=true&heartbeat=1000" >/dev/null & DROPPED+=($!); done
for p in "${DROPPED[@]}"; do wait "$p" 2>/dev/null; done
expect "writes after 50 abandoned feeds" '"ok":true' "$(curl -s -XPUT "$DB/after" "${J[@]}" -d '{}')"

echo
if [ "$FAILS" -eq 0 ]; then echo "smoke: all checks passed ($STORE)"; else echo "smoke: $FAILS check(s) FAILED"; echo "--- server stderr"; cat "$WORK/err.log"; exit 1; fi
