#!/usr/bin/env bash
# Artifact benchmark: uploads a 2 GiB single-file artifact and a 2 GiB four-file artifact to a
# release server (embedded SQLite, local file store), verifies both, pulls one back, and reports
#  - the server's peak RSS (VmHWM from /proc/<pid>/status) over the whole run,
#  - verification throughput (bytes / server-side hashing time, warm page cache) against
#    `sha256sum` over the same stored files (one process per file, all at once, and one file).
# Usage: bash benches/artifacts.sh [work-dir]   (needs `cargo build --release` first; ~6 GiB disk)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/model-ledger
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work="${1:-$(mktemp -d /tmp/ml-artifacts-bench.XXXXXX)}"
mkdir -p "$work"
data="$work/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

"$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" --policies policies >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$bin" token --data-dir "$data" --sub bench --group ml-admins)
export MODEL_LEDGER_URL="$url" MODEL_LEDGER_TOKEN="$token"

echo "==> generating inputs in $work"
mkdir -p "$work/one" "$work/four"
[ -f "$work/one/weights.bin" ] || head -c $((2048 * 1024 * 1024)) /dev/urandom >"$work/one/weights.bin"
for i in 1 2 3 4; do
  [ -f "$work/four/shard-$i.bin" ] || head -c $((512 * 1024 * 1024)) /dev/urandom >"$work/four/shard-$i.bin"
done

seconds() { python3 -c "import time; print(time.time())"; }
t0=$(seconds); v1=$("$bin" push --no-progress bench-one "$work/one"); t1=$(seconds)
v2=$("$bin" push --no-progress bench-four "$work/four"); t2=$(seconds)
upload_one=$(python3 -c "print(f'{2048/($t1-$t0):.0f}')")
upload_four=$(python3 -c "print(f'{2048/($t2-$t1):.0f}')")

verify_best() { # model version -> best GB/s of 3 runs (server-side hashing time)
  best=0
  for _ in 1 2 3; do
    r=$(curl -fsS -X POST -H "authorization: Bearer $token" "$url/api/v1/models/$1/versions/$2/verify")
    gbps=$(echo "$r" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["verified"], r; print(r["bytes"]/r["seconds"]/1e9)')
    best=$(python3 -c "print(max($best, $gbps))")
  done
  echo "$best"
}
one_gbps=$(verify_best bench-one "$v1")
four_gbps=$(verify_best bench-four "$v2")

loc() { curl -fsS -H "authorization: Bearer $token" "$url/api/v1/models/$1/versions/$2/files" | python3 -c 'import json,sys,urllib.parse as u; print(u.unquote(u.urlparse(json.load(sys.stdin)["location"]).path))'; }
one_dir=$(loc bench-one "$v1"); four_dir=$(loc bench-four "$v2")
sha_best() { # command... -> best GB/s of 3 runs over 2 GiB
  best=0
  for _ in 1 2 3; do
    a=$(seconds); "$@" >/dev/null; b=$(seconds)
    best=$(python3 -c "print(max($best, 2147483648/($b-$a)/1e9))")
  done
  echo "$best"
}
sha_one=$(sha_best sha256sum "$one_dir/weights.bin")
sha_four=$(sha_best bash -c "ls $four_dir/*.bin | xargs -P 4 -n 1 sha256sum")

t3=$(seconds); "$bin" pull --no-progress "models:/bench-one/$v1" "$work/pulled" 2>/dev/null; t4=$(seconds)
pull_one=$(python3 -c "print(f'{2048/($t4-$t3):.0f}')")
cmp -s "$work/one/weights.bin" "$work/pulled/weights.bin"

hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
cores=$(nproc)
cat <<REPORT
### Artifacts: 2 GiB upload, verification and download ($(date -u +%Y-%m-%d), $cores cores, $(uname -m))

| measure | value |
|---|---|
| server peak RSS (VmHWM) over the whole run | $((hwm / 1024)) MiB |
| push 1 × 2 GiB (MiB/s, client + server on one host) | $upload_one |
| push 4 × 512 MiB (MiB/s) | $upload_four |
| pull 1 × 2 GiB with client-side SHA-256 check (MiB/s) | $pull_one |
| verify 1 × 2 GiB, server (GB/s) | $(printf %.2f "$one_gbps") |
| \`sha256sum\` 1 × 2 GiB (GB/s) | $(printf %.2f "$sha_one") |
| ratio verify / sha256sum, one file | $(python3 -c "print(f'{$one_gbps/$sha_one:.2f}')") |
| verify 4 × 512 MiB in parallel, server (GB/s) | $(printf %.2f "$four_gbps") |
| \`sha256sum\` 4 × 512 MiB, 4 processes (GB/s) | $(printf %.2f "$sha_four") |
| ratio verify / sha256sum, four files | $(python3 -c "print(f'{$four_gbps/$sha_four:.2f}')") |
REPORT
