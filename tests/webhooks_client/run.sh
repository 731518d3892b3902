#!/usr/bin/env bash
# The real MLflow 3 client's webhook API against model-ledger, with deliveries checked by a
# Python receiver built on the `standardwebhooks` package:
#   tests/webhooks_client/run.sh MLFLOW_VERSION
# Creates (or reuses) a virtual environment under target/webhooks-venv-<version> (mlflow-skinny,
# pytest, standardwebhooks, requests from PyPI), starts `model-ledger serve` on a free port with a
# temporary data directory, the shipped policies, --webhook-allow-private-ips (the receiver
# listens on 127.0.0.1) and fast retries, runs the pytest suite as an admin, stops the server
# and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="${1:?usage: tests/webhooks_client/run.sh MLFLOW_VERSION}"
venv="target/webhooks-venv-${version}"

if ! "$venv/bin/python" -c "import mlflow, pytest, requests, standardwebhooks, sys; sys.exit(mlflow.__version__ != '${version}')" 2>/dev/null; then
    echo "==> installing mlflow-skinny==${version}, pytest, standardwebhooks into ${venv}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow-skinny==${version}" pytest standardwebhooks requests
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

"$bin" serve --data-dir "$data_dir" --database-url "sqlite://${data_dir}/ledger.db" \
    --policies policies --dev-auth --listen "127.0.0.1:${port}" \
    --webhook-allow-private-ips --webhook-retry-base 100ms --webhook-retry-max-delay 500ms \
    >"$data_dir/server.log" 2>&1 &
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
export MLFLOW_TRACKING_TOKEN="$(token webhook-admin ml-admins)"
export MODEL_LEDGER_READER_TOKEN="$(token webhook-reader ml-readers)"
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=0
# For the checkpoint test, which signs one with `model-ledger audit checkpoint`.
export MODEL_LEDGER_BIN="$bin"
export MODEL_LEDGER_DATA_DIR="$data_dir"
export MODEL_LEDGER_DATABASE_URL="sqlite://${data_dir}/ledger.db"
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true

status=0
echo "==> MLflow ${version} webhooks suite against ${url}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/webhooks_client/test_webhooks.py || status=1
if [ "$status" -ne 0 ]; then
    echo "---- server log (last 50 lines) ----" >&2
    tail -n 50 "$data_dir/server.log" >&2
fi
exit "$status"
