#!/usr/bin/env bash
# Pinning a large run artifact (issue #16): a real `mlflow server` holds a run whose model
# directory has one SIZE_MIB file (default 2048); model-ledger registers `runs:/<run>/model`,
# streams and hashes it through the upstream's artifact proxy, then verifies it. Prints the
# registration (pin) and verify times, model-ledger's peak RSS (VmHWM), and `sha256sum` over the
# same file for comparison. Usage: bash scripts/bench-pin.sh [SIZE_MIB] [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${1:-2048}"
profile="${2:-debug}"
venv="target/mlflow-server-venv"
if ! "$venv/bin/python" -c "import mlflow" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow==3.17.2"
fi
if [ "$profile" = release ]; then cargo build --release --bins --quiet; else cargo build --bins --quiet; fi
bin="target/$profile/model-ledger"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mp="$(free_port)"; lp="$(free_port)"
set -m
"$venv/bin/mlflow" server --backend-store-uri "sqlite:///$work/mlflow.db" \
    --default-artifact-root mlflow-artifacts:/ --artifacts-destination "$work/artifacts" \
    --host 127.0.0.1 --port "$mp" --workers 1 >"$work/mlflow.log" 2>&1 &
pids+=($!)
set +m
until curl -fsS "http://127.0.0.1:$mp/health" >/dev/null 2>&1; do sleep 0.2; done
mkdir -p "$work/ledger"
"$bin" serve --data-dir "$work/ledger" --database-url "sqlite://$work/ledger.db" --policies policies \
    --dev-auth --listen "127.0.0.1:$lp" --mlflow-upstream "http://127.0.0.1:$mp" \
    --mlflow-upstream-timeout 600s >"$work/ledger.log" 2>&1 &
ledger=$!
pids+=($ledger)
until curl -fsS "http://127.0.0.1:$lp/healthz" >/dev/null 2>&1; do sleep 0.1; done
tok="$("$bin" token --data-dir "$work/ledger" --sub bench --group ml-admins)"
api() { curl -fsS -X POST "http://127.0.0.1:$lp/api/2.0/mlflow/$1" -H "Authorization: Bearer $tok" \
        -H 'Content-Type: application/json' -d "$2"; }
exp="$(api experiments/create '{"name": "pin-bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["experiment_id"])')"
run="$(api runs/create "{\"experiment_id\": \"$exp\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run"]["info"]["run_id"])')"
dir="$work/artifacts/$exp/$run/artifacts/model"
mkdir -p "$dir"
printf 'flavors: {}\n' > "$dir/MLmodel"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$dir/weights.bin"
api registered-models/create '{"name": "big"}' >/dev/null
rss_before="$(awk '/VmHWM/ {print $2}' "/proc/$ledger/status")"
t0="$(date +%s.%N)"
api model-versions/create "{\"name\": \"big\", \"source\": \"runs:/$run/model\"}" >/dev/null
t1="$(date +%s.%N)"
curl -fsS -X POST "http://127.0.0.1:$lp/api/v1/models/big/versions/1/verify" -H "Authorization: Bearer $tok" \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["verified"], b'
t2="$(date +%s.%N)"
rss_after="$(awk '/VmHWM/ {print $2}' "/proc/$ledger/status")"
t3="$(date +%s.%N)"
sha256sum "$dir/weights.bin" >/dev/null
t4="$(date +%s.%N)"
python3 - "$size_mib" "$t0" "$t1" "$t2" "$t3" "$t4" "$rss_before" "$rss_after" "$profile" <<'PY'
import sys
mib, t0, t1, t2, t3, t4, rb, ra, profile = sys.argv[1:]
mib = int(mib); t0, t1, t2, t3, t4 = map(float, (t0, t1, t2, t3, t4))
pin, ver, ref = t1 - t0, t2 - t1, t4 - t3
print(f"{mib} MiB run artifact, {profile} build, through the mlflow server's artifact proxy")
print(f"  pin at registration: {pin:.1f} s ({mib / pin:.0f} MiB/s)")
print(f"  verify:              {ver:.1f} s ({mib / ver:.0f} MiB/s)")
print(f"  sha256sum same file: {ref:.1f} s ({mib / ref:.0f} MiB/s)")
print(f"  model-ledger peak RSS: {int(rb) / 1024:.0f} MB before, {int(ra) / 1024:.0f} MB after")
PY
