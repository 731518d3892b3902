#!/usr/bin/env bash
# The tracking pass-through against real peers:
#   tests/mlflow_tracking/run.sh
# Creates (or reuses) target/mlflow-server-venv with the full `mlflow` package (server and
# client), scikit-learn and pytest; builds model-ledger; starts a real `mlflow server` (SQLite
# backend, proxied artifacts) on a free port as the upstream and model-ledger with
# --mlflow-upstream pointing at it; runs the pytest suite with MLFLOW_TRACKING_URI set to
# model-ledger only; then stops the MLflow server and runs the upstream-down tests. Tears
# everything down and exits non-zero if anything failed.
#
# Policies: the shipped policies, unchanged (copied to a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../.."

mlflow_version="3.17.2"
venv="target/mlflow-server-venv"

if ! "$venv/bin/python" -c "import mlflow, sklearn, pytest, sys; sys.exit(mlflow.__version__ != '${mlflow_version}')" 2>/dev/null; then
    echo "==> installing mlflow==${mlflow_version}, scikit-learn and pytest into ${venv}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow==${mlflow_version}" scikit-learn pytest
fi

cargo build --bins --quiet
bin="target/debug/model-ledger"

work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mlflow_port="$(free_port)"
ledger_port="$(free_port)"
mlflow_url="http://127.0.0.1:${mlflow_port}"
url="http://127.0.0.1:${ledger_port}"
mlflow_pid=""
ledger_pid=""
stop() {
    # $1: pid variable's value. The MLflow server runs workers in its own process group.
    if [ -n "$1" ]; then
        kill -- "-$1" 2>/dev/null || kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop "$ledger_pid"
    stop "$mlflow_pid"
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url pid log name
    for _ in $(seq 1 600); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        if ! kill -0 "$2" 2>/dev/null; then
            cat "$3" >&2
            echo "$4 did not start" >&2
            return 1
        fi
        sleep 0.1
    done
    cat "$3" >&2
    echo "$4 did not answer in time" >&2
    return 1
}

mkdir -p "$work/artifacts" "$work/policies"
start_mlflow() {
    echo "==> starting mlflow server ${mlflow_version} on ${mlflow_url}"
    set -m
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true "$venv/bin/mlflow" server \
        --backend-store-uri "sqlite:///${work}/mlflow.db" \
        --default-artifact-root "mlflow-artifacts:/" --artifacts-destination "${work}/artifacts" \
        --host 127.0.0.1 --port "$mlflow_port" --workers 1 >>"$work/mlflow.log" 2>&1 &
    mlflow_pid=$!
    set +m
    wait_for "$mlflow_url/health" "$mlflow_pid" "$work/mlflow.log" "mlflow server"
}
start_mlflow

# The shipped policies, unchanged: run-based versions are pinned (issue #16), so they can be
# verified and meet production-requires-verified-artifact like uploaded ones.
cp policies/model_ledger.cedarschema policies/*.cedar "$work/policies/"
"$bin" policy validate --policies "$work/policies" --data-dir "$work/ledger" >/dev/null

start_ledger() {
    "$bin" serve --data-dir "$work/ledger" --database-url "sqlite://${work}/ledger.db" \
        --policies "$work/policies" --dev-auth --listen "127.0.0.1:${ledger_port}" \
        --mlflow-upstream "$mlflow_url" --mlflow-upstream-timeout 30s \
        --mlflow-upstream-connect-timeout 2s >>"$work/ledger.log" 2>&1 &
    ledger_pid=$!
    wait_for "$url/healthz" "$ledger_pid" "$work/ledger.log" "model-ledger"
}
echo "==> starting model-ledger on ${url} (upstream ${mlflow_url})"
start_ledger

token() { "$bin" token --data-dir "$work/ledger" --sub "$1" --group "$2" --ttl 2h; }

export MLFLOW_TRACKING_URI="$url"
export MLFLOW_TRACKING_TOKEN="$(token tracking-admin ml-admins)"
export MODEL_LEDGER_READER_TOKEN="$(token tracking-reader ml-readers)"
export MODEL_LEDGER_RELEASE_TOKEN="$(token tracking-release ml-release-managers)"
export MODEL_LEDGER_CI_TOKEN="$(token tracking-ci ml-ci)"
export MODEL_LEDGER_URL="$url"
export MODEL_LEDGER_UPSTREAM_URL="$mlflow_url"
# The upstream's artifact store on disk, where the tampering test changes a pinned file.
export MODEL_LEDGER_UPSTREAM_ARTIFACTS="$work/artifacts"
# Where the phases (upstream up, down, back) leave each other the names they need.
export MODEL_LEDGER_STATE_DIR="$work"
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=0
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true

status=0
echo "==> tracking suite (upstream up)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/mlflow_tracking/test_tracking.py -m "not upstream_down and not upstream_back" || status=1

echo "==> stopping the upstream; tracking suite (upstream down)"
stop "$mlflow_pid"
mlflow_pid=""
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/mlflow_tracking/test_tracking.py -m upstream_down || status=1
echo "==> the upstream back (same store and artifacts); tracking suite (upstream back)"
start_mlflow
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/mlflow_tracking/test_tracking.py -m upstream_back || status=1

if [ "$status" -ne 0 ]; then
    echo "---- model-ledger log (last 40 lines) ----" >&2
    tail -n 40 "$work/ledger.log" >&2
    echo "---- mlflow log (last 40 lines) ----" >&2
    tail -n 40 "$work/mlflow.log" >&2 || true
fi
exit "$status"
