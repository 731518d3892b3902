#!/usr/bin/env bash
# Commit → JetStream latency of the outbox relay (examples/publish_latency.rs): a server on a
# fresh PostgreSQL database (or SQLite with BACKEND=sqlite) publishing to its own nats-server,
# then N sequential writes. Usage: bash scripts/bench-publish.sh [writes] [profile: dev|release]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${1:-2000}
PROFILE=${2:-dev}
BACKEND=${BACKEND:-postgres}
PG_ADMIN=${MODEL_LEDGER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
if [ "$PROFILE" = release ]; then
    cargo build --release --bins --examples >/dev/null; DIR=target/release
else
    cargo build --bins --examples >/dev/null; DIR=target/debug
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
if [ "$BACKEND" = sqlite ]; then
    DB="sqlite://$WORK/bench.db"
else
    NAME="ml_pubbench_$$"
    psql "$PG_ADMIN" -qc "CREATE DATABASE $NAME" >/dev/null
    DB="${PG_ADMIN%/*}/$NAME"
fi
RUST_LOG=warn $DIR/model-ledger serve --database-url "$DB" --data-dir "$WORK/data" --dev-auth \
    --policies policies --listen 127.0.0.1:18471 --nats-url "nats://127.0.0.1:$NATS_PORT" \
    >"$WORK/server.log" 2>&1 &
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18471/healthz >/dev/null && break; sleep 0.2; done
TOKEN=$($DIR/model-ledger token --data-dir "$WORK/data" --sub bench --group ml-admins --ttl 2h)
$DIR/examples/publish_latency --url http://127.0.0.1:18471 --token "$TOKEN" \
    --nats-url "nats://127.0.0.1:$NATS_PORT" --writes "$WRITES"
if [ "$BACKEND" != sqlite ]; then
    kill $(jobs -p) 2>/dev/null || true; sleep 1
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" >/dev/null || true
fi
