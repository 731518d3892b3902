#!/usr/bin/env bash
# HTTP benchmarks of the MLflow wire paths (/api/2.0/mlflow) next to the native API and /healthz
# (this machine's HTTP ceiling, measured in the same run), with N concurrent clients, against
# PostgreSQL (a fresh database, dropped at the end) and against SQLite, on this machine (server,
# database and load generator share its cores). 100 models with 10 versions each are set up
# through the MLflow API (newest in Production, the one before in Staging, alias `champion`);
# every request picks a random model. Reads first, then the writes. Results go to stdout;
# docs/performance.md records a run. Usage: bash scripts/bench-mlflow.sh [seconds=10] [clients=32]
# (BUILD=0 runs the release build already there)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CLIENTS=${2:-32}
MODELS=100
VERSIONS=10
PG_ADMIN=${MODEL_LEDGER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
READS="healthz resolve get-version get-model mlflow-alias mlflow-get-version mlflow-get-model
    mlflow-latest-versions mlflow-search"
WRITES="mlflow-transition mlflow-create-version"
if [ "${BUILD:-1}" != 0 ]; then cargo build --release --bins --examples >/dev/null; fi
BIN=target/release/model-ledger
BENCH=target/release/examples/bench
WORK=$(mktemp -d)
DB="ml_bench_mlflow_$$"
DB_CREATED=
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -n "$DB_CREATED" ]; then
        psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Benchmarks measure the storage and HTTP path; a permit-all policy still runs Cedar per request.
mkdir -p "$WORK/policies"
cp policies/model_ledger.cedarschema "$WORK/policies/"
printf '@id("bench-allow-all")\npermit(principal, action, resource);\n' > "$WORK/policies/allow_all.cedar"

run_backend() {
    local label=$1 url=$2 port=$3
    local data="$WORK/data-$label"
    mkdir -p "$data"
    echo "[$label] load before: $(uptime)"
    RUST_LOG=warn $BIN serve --database-url "$url" --data-dir "$data" --dev-auth --policies "$WORK/policies" \
        --listen "127.0.0.1:$port" --db-max-connections 32 >"$WORK/$label.log" 2>&1 &
    local pid=$!
    local up=
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && { up=1; break; }
        sleep 0.2
    done
    if [ -z "$up" ]; then
        echo "[$label] server did not start:" >&2; cat "$WORK/$label.log" >&2; return 1
    fi
    local token
    token=$($BIN token --data-dir "$data" --sub bench --group ml-admins --ttl 2h)
    local common=(--url "http://127.0.0.1:$port" --token "$token" --models "$MODELS" --versions "$VERSIONS")
    echo "[$label] $($BENCH "${common[@]}" --scenario setup-mlflow)"
    for scenario in $READS $WRITES; do
        # A scenario that fails outright is reported and the run goes on.
        echo "[$label] $($BENCH "${common[@]}" --scenario "$scenario" --clients "$CLIENTS" \
            --seconds "$SECONDS_PER_RUN" 2> >(sed "s/^/[$label] /" >&2) || echo "scenario=$scenario FAILED")"
    done
    echo "[$label] versions in model 0 after the run: $(curl -sf -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$port/api/v1/models/bench-0" | grep -o '"last_version":[0-9]*')"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "[$label] load after: $(uptime)"
}

echo "bench-mlflow: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $CLIENTS clients, ${SECONDS_PER_RUN}s per scenario, git $(git rev-parse --short HEAD)"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1
run_backend postgres "${PG_ADMIN%/*}/$DB" 18281
kill $(jobs -p) 2>/dev/null || true
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
DB_CREATED=
run_backend sqlite "sqlite://$WORK/bench.db" 18282
