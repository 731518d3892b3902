#!/usr/bin/env bash
# Web console benchmark (issue #19): MODELS (1000) models of VERSIONS (100) versions each,
# p50/p95 of the models page and a model page against /healthz in the same run, and a page's
# weight (HTML + CSS + JS). Uses the debug build in target/debug (state the profile with the
# numbers); SQLite embedded store by default, PostgreSQL with DATABASE_URL=postgres://...
# Results go in docs/performance.md (## Web console) with the command and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/model-ledger
[ -x "$bin" ] || cargo build --bins --features fault-injection
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
db_args=()
if [ -n "${DATABASE_URL:-}" ]; then db_args=(--database-url "$DATABASE_URL" --dev-auth); fi
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --policies policies \
    "${db_args[@]}" > "$work/serve.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
    sleep 0.2
done
HOST=127.0.0.1 PORT=$port \
ADMIN=$("$bin" token --data-dir "$work/data" --sub bench-admin --group ml-admins --ttl 4h | tail -1) \
    python3 scripts/bench-console.py
