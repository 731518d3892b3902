#!/usr/bin/env bash
# HTTP benchmarks of a release build: resolve, get version, create version and stage
# transitions, with N concurrent clients, against PostgreSQL and against SQLite, on this machine
# (server, database and load generator share its cores). Results go to stdout; docs/performance.md
# records a run. Usage: bash scripts/bench.sh [seconds] [clients]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CLIENTS=${2:-32}
cargo build --release --bins --examples >/dev/null
BIN=target/release/model-ledger
BENCH=target/release/examples/bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Benchmarks measure the storage and HTTP path; a permit-all policy still runs Cedar per request.
mkdir -p "$WORK/policies"
cp policies/model_ledger.cedarschema "$WORK/policies/"
printf '@id("bench-allow-all")\npermit(principal, action, resource);\n' > "$WORK/policies/allow_all.cedar"

run_backend() {
    local label=$1 url=$2 port=$3
    local data="$WORK/data-$label"
    mkdir -p "$data"
    RUST_LOG=warn $BIN serve --database-url "$url" --data-dir "$data" --dev-auth --policies "$WORK/policies" \
        --listen "127.0.0.1:$port" --db-max-connections 32 >"$WORK/$label.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
    local token
    token=$($BIN token --data-dir "$data" --sub bench --group ml-admins --ttl 2h)
    $BENCH --url "http://127.0.0.1:$port" --token "$token" --scenario setup --models 64 >/dev/null
    # Transitions run twice: on the setup's models (3 versions each), and again after
    # create-version has grown every model to a few hundred versions.
    for scenario in resolve get-version transition create-version transition; do
        echo "[$label] $($BENCH --url "http://127.0.0.1:$port" --token "$token" --scenario "$scenario" --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" --models 64)"
    done
    echo "[$label] versions in model 0 after the run: $(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/models/bench-0" | grep -o "\"last_version\":[0-9]*")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

DB="ml_bench_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB" >/dev/null
run_backend postgres "postgres://postgres@127.0.0.1:5432/$DB" 18181
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $DB WITH (FORCE)" >/dev/null
run_backend sqlite "sqlite://$WORK/bench.db" 18182
