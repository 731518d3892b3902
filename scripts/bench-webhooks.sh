#!/usr/bin/env bash
# Webhook delivery benchmark: commit -> first delivery attempt latency with healthy receivers,
# many subscriptions under a sustained event rate (backlog over time), and the effect of one
# receiver that hangs on the others. One `model-ledger serve` on a fresh PostgreSQL database
# (dropped at the end), a Python (standard library) receiver and load generator on the same
# machine. docs/performance.md records a run.
#   bash scripts/bench-webhooks.sh [profile=debug] [scale=100:2:60]
# `scale` is SUBSCRIPTIONS:EVENTS_PER_SECOND:SECONDS for the sustained-load scenario.
# SCENARIOS="latency scale hang" (the default) picks which run; RECEIVER=rust uses
# examples/webhook_receiver.rs (built in the same profile) instead of the Python receiver;
# BUILD=0 skips the build; SERVER_ARGS adds flags to `serve` (e.g. "--webhook-concurrency 256").
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-debug}
SCALE=${2:-100:2:60}
PG_ADMIN=${MODEL_LEDGER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
# One cargo invocation: building the example separately would resolve other dependency
# features and rebuild half the tree. BUILD=0 runs what is already built.
build=(cargo build --bins)
[ "$PROFILE" = release ] && build+=(--release)
[ "${RECEIVER:-python}" = rust ] && build+=(--example webhook_receiver)
if [ "${BUILD:-1}" != 0 ]; then "${build[@]}" >/dev/null; fi
if [ "${RECEIVER:-python}" = rust ]; then
    export WEBHOOK_RECEIVER_BIN="$PWD/target/$PROFILE/examples/webhook_receiver"
fi
BIN=target/$PROFILE/model-ledger
WORK=$(mktemp -d)
DB="ml_bench_webhooks_$$"
PG_BASE=${PG_ADMIN%/*}
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The benchmark measures delivery, not authorization: a permit-all policy (Cedar still runs).
mkdir -p "$WORK/policies"
cp policies/model_ledger.cedarschema "$WORK/policies/"
printf '@id("bench-allow-all")\npermit(principal, action, resource);\n' > "$WORK/policies/allow_all.cedar"

for scenario in ${SCENARIOS:-latency scale hang}; do
    [ "$scenario" = scale ] && scenario="scale:$SCALE"
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
    rm -rf "$WORK/data"; mkdir -p "$WORK/data"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    RUST_LOG=warn $BIN serve --database-url "$PG_BASE/$DB" --data-dir "$WORK/data" --dev-auth \
        --policies "$WORK/policies" --listen "127.0.0.1:$port" --webhook-allow-private-ips \
        --webhook-timeout 2s ${SERVER_ARGS:-} >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    token=$($BIN token --data-dir "$WORK/data" --sub bench --group ml-admins --ttl 2h)
    echo "== $scenario ($PROFILE build) load before: $(uptime)"
    python3 scripts/bench_webhooks.py "http://127.0.0.1:$port" "$token" "$PG_BASE/$DB" "$scenario"
    echo "   load after: $(uptime)"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
done
