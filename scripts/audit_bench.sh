#!/usr/bin/env bash
# Audit benchmark: streamed export memory and verify throughput (see docs/performance.md, "Audit").
# Usage: scripts/audit_bench.sh [EXPORT_EVENTS] [VERIFY_EVENTS] [WORKDIR]
set -euo pipefail
EXPORT_EVENTS=${1:-200000}
VERIFY_EVENTS=${2:-1000000}
WORK=${3:-/tmp/model-ledger-audit-bench}
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --release --bin model-ledger --example audit_bench
B=target/release
DB="sqlite://$WORK/audit.db"
rss() { grep -E "Maximum resident set size|Elapsed \(wall" "$1" | sed 's/^\s*//'; }

echo "== generate $EXPORT_EVENTS events into $DB"
$B/examples/audit_bench --events "$EXPORT_EVENTS" --database-url "$DB"
for fmt in ndjson csv json; do
  echo "== audit export --format $fmt ($EXPORT_EVENTS events)"
  /usr/bin/time -v -o "$WORK/export-$fmt.time" $B/model-ledger audit export --format "$fmt" --database-url "$DB" > "$WORK/export.$fmt"
  ls -l "$WORK/export.$fmt" | awk '{print "bytes:", $5}'
  rss "$WORK/export-$fmt.time"
done
echo "== audit export --limit 1000 (baseline memory)"
/usr/bin/time -v -o "$WORK/export-small.time" $B/model-ledger audit export --limit 1000 --database-url "$DB" > /dev/null
rss "$WORK/export-small.time"
echo "== audit verify --database-url ($EXPORT_EVENTS events)"
/usr/bin/time -v -o "$WORK/verify-db.time" $B/model-ledger audit verify --database-url "$DB"
rss "$WORK/verify-db.time"

echo "== generate $VERIFY_EVENTS events as NDJSON"
$B/examples/audit_bench --events "$VERIFY_EVENTS" --ndjson "$WORK/big.ndjson"
ls -l "$WORK/big.ndjson" | awk '{print "bytes:", $5}'
echo "== audit verify --file ($VERIFY_EVENTS events)"
/usr/bin/time -v -o "$WORK/verify-file.time" $B/model-ledger audit verify --file "$WORK/big.ndjson"
rss "$WORK/verify-file.time"
