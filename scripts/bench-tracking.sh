#!/usr/bin/env bash
# Benchmark of the tracking pass-through (not a timed test): a release model-ledger in front of a
# real `mlflow server` (the venv from tests/mlflow_tracking/run.sh), on this machine.
#   1. latency: N sequential keep-alive GETs of experiments/get, alternating direct-to-MLflow and
#      through model-ledger, reporting both medians and the added median latency;
#   2. a 1 GiB artifact uploaded (PUT) and downloaded (GET) through model-ledger, reporting
#      throughput and model-ledger's peak RSS (VmHWM) before and after.
# Usage: bash scripts/bench-tracking.sh [requests]   (docs/performance.md records a run)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
venv="target/mlflow-server-venv"
[ -x "$venv/bin/mlflow" ] || { echo "run tests/mlflow_tracking/run.sh first (it creates $venv)" >&2; exit 1; }
cargo build --release --bin model-ledger >/dev/null
bin=target/release/model-ledger
work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mp="$(free_port)"; lp="$(free_port)"
mlflow_pid=""; ledger_pid=""
cleanup() {
    [ -n "$ledger_pid" ] && { kill "$ledger_pid" 2>/dev/null || true; wait "$ledger_pid" 2>/dev/null || true; }
    [ -n "$mlflow_pid" ] && { kill -- "-$mlflow_pid" 2>/dev/null || true; wait "$mlflow_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
set -m
MLFLOW_DISABLE_TELEMETRY=true "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$work/mlflow.db" \
    --default-artifact-root mlflow-artifacts:/ --artifacts-destination "$work/artifacts" \
    --host 127.0.0.1 --port "$mp" --workers 1 >"$work/mlflow.log" 2>&1 &
mlflow_pid=$!
set +m
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$mp/health" >/dev/null 2>&1 && break; sleep 0.1; done
RUST_LOG=warn "$bin" serve --data-dir "$work/ledger" --database-url "sqlite://$work/ledger.db" \
    --policies policies --dev-auth --listen "127.0.0.1:$lp" \
    --mlflow-upstream "http://127.0.0.1:$mp" >"$work/ledger.log" 2>&1 &
ledger_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$lp/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token="$("$bin" token --data-dir "$work/ledger" --sub bench --group ml-admins --ttl 2h)"
truncate -s 1G "$work/big.bin"

"$venv/bin/python" - "$N" "http://127.0.0.1:$mp" "http://127.0.0.1:$lp" "$token" "$ledger_pid" "$work/big.bin" <<'PY'
import statistics, sys, time
import requests
n, direct, ledger, token, pid, big = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
path = "/api/2.0/mlflow/experiments/get?experiment_id=0"
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            yield line.split()[0].rstrip(":"), int(line.split()[1]) // 1024
s_direct, s_ledger = requests.Session(), requests.Session()
s_ledger.headers["Authorization"] = f"Bearer {token}"
for s, base in ((s_direct, direct), (s_ledger, ledger)):
    for _ in range(50):
        s.get(base + path).raise_for_status()
d, l = [], []
for i in range(n):
    for s, base, out in ((s_direct, direct, d), (s_ledger, ledger, l)) if i % 2 else ((s_ledger, ledger, l), (s_direct, direct, d)):
        t = time.perf_counter()
        s.get(base + path).raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
md, ml = statistics.median(d), statistics.median(l)
q = lambda xs: statistics.quantiles(xs, n=100)[98]
print(f"latency: {n} GETs each; median direct {md:.3f} ms, via model-ledger {ml:.3f} ms, added {ml - md:.3f} ms; p99 direct {q(d):.3f} ms, via model-ledger {q(l):.3f} ms")
print("model-ledger memory before transfer (MiB):", dict(rss()))
url = f"{ledger}/api/2.0/mlflow-artifacts/artifacts/0/bench/big.bin"
t = time.perf_counter()
with open(big, "rb") as f:
    requests.put(url, data=f, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
up = time.perf_counter() - t
t = time.perf_counter()
total = 0
with requests.get(url, headers={"Authorization": f"Bearer {token}"}, stream=True) as r:
    r.raise_for_status()
    for chunk in r.iter_content(1 << 20):
        total += len(chunk)
down = time.perf_counter() - t
assert total == 1 << 30, total
print(f"1 GiB upload via model-ledger: {up:.1f} s ({1024 / up:.0f} MiB/s); download: {down:.1f} s ({1024 / down:.0f} MiB/s)")
print("model-ledger memory after 1 GiB up + down (MiB; VmHWM = peak RSS):", dict(rss()))
PY
