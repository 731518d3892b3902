#!/usr/bin/env bash
# Runs tests/databricks_sdk/test_approvals.py against a freshly started model-ledger:
# builds the binary, starts `model-ledger serve` on a free port with a temporary SQLite data
# directory and the shipped policies, mints tokens for an admin, a CI pipeline, two release
# managers and a reader, runs pytest, stops the server and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="target/dbsdk-venv"
if ! "$venv/bin/python" -c "import databricks.sdk, pytest, requests" 2>/dev/null; then
    echo "==> installing databricks-sdk into ${venv}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check databricks-sdk pytest requests
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

export MODEL_LEDGER_URL="$url"
export MODEL_LEDGER_ADMIN_TOKEN="$(token sdk-admin ml-admins)"
export MODEL_LEDGER_CI_TOKEN="$(token sdk-ci ml-ci)"
export MODEL_LEDGER_RELEASE_TOKEN="$(token sdk-rita ml-release-managers)"
export MODEL_LEDGER_RELEASE2_TOKEN="$(token sdk-rob ml-release-managers)"
export MODEL_LEDGER_READER_TOKEN="$(token sdk-reader ml-readers)"
# Keep the SDK from reading a developer's ~/.databrickscfg or environment.
unset DATABRICKS_HOST DATABRICKS_TOKEN DATABRICKS_CONFIG_PROFILE || true
export DATABRICKS_CONFIG_FILE="$data_dir/no-databrickscfg"

status=0
echo "==> Databricks SDK approvals suite against ${url}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/databricks_sdk/test_approvals.py || status=1
if [ "$status" -ne 0 ]; then
    echo "---- server log (last 50 lines) ----" >&2
    tail -n 50 "$data_dir/server.log" >&2
fi
exit "$status"
