#!/usr/bin/env bash
# Runs the real MLflow client suites against a freshly started model-ledger:
#   tests/mlflow_client/run.sh MLFLOW_VERSION
# Creates (or reuses) a virtual environment under target/mlflow-venv-<version> with the MLflow
# client from PyPI (mlflow-skinny by default, which contains MlflowClient; set MLFLOW_PACKAGE=mlflow
# for the full distribution), builds and starts `model-ledger serve` on a free port with a
# temporary data directory and the shipped policies, mints tokens for an admin, a reader and a
# release manager, runs the pytest suite and the Node.js quality-gate test, stops the server and
# exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="${1:?usage: tests/mlflow_client/run.sh MLFLOW_VERSION}"
package="${MLFLOW_PACKAGE:-mlflow-skinny}"
venv="target/mlflow-venv-${version}"

# pandas (with numpy) is what mlflow.pyfunc needs to load and call a model; requests is used to
# ask model-ledger to verify an artifact.
if ! "$venv/bin/python" -c "import mlflow, pytest, pandas, requests, sys; sys.exit(mlflow.__version__ != '${version}')" 2>/dev/null; then
    echo "==> installing ${package}==${version} into ${venv}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${package}==${version}" pytest pandas requests
fi

cargo build --bins --quiet
bin="target/debug/model-ledger"

data_dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:${port}"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$data_dir"
}
trap cleanup EXIT

# The embedded SQLite database in the temporary data directory, whatever the environment says.
"$bin" serve --data-dir "$data_dir" --database-url "sqlite://${data_dir}/ledger.db" \
    --policies policies --dev-auth --listen "127.0.0.1:${port}" >"$data_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$data_dir/server.log" >&2
        echo "model-ledger did not start" >&2
        exit 1
    fi
    sleep 0.1
done

token() { "$bin" token --data-dir "$data_dir" --sub "$1" --group "$2" --ttl 2h; }

export MLFLOW_TRACKING_URI="$url"
export MLFLOW_TRACKING_TOKEN="$(token mlflow-admin ml-admins)"
export MODEL_LEDGER_READER_TOKEN="$(token mlflow-reader ml-readers)"
export MODEL_LEDGER_RELEASE_TOKEN="$(token mlflow-release ml-release-managers)"
export MODEL_LEDGER_URL="$url"
export MODEL_LEDGER_BIN="$PWD/$bin"
export MODEL_LEDGER_TOKEN="$MLFLOW_TRACKING_TOKEN"
# Fail fast instead of retrying, and keep the client from phoning home.
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=0
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true

status=0
echo "==> MLflow ${version} client suite against ${url}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/mlflow_client/test_registry.py || status=1
echo "==> Node.js quality-gate test"
node --test tests/mlflow_client/quality_gate.test.mjs || status=1

if [ "$status" -ne 0 ]; then
    echo "---- server log (last 50 lines) ----" >&2
    tail -n 50 "$data_dir/server.log" >&2
fi
exit "$status"
