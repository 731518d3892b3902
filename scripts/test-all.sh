#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (real PostgreSQL and NATS on this
# machine), the shipped policies' case file, and the client compatibility suites (the real
# MLflow Python client, Node.js) against a real server. Installs what the suites need first.
# Fails if any part fails; never skips a part because a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
run() {
    echo "==> $*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        status=1
    fi
}

bash scripts/check-services.sh
# The S3 tests run against moto's S3-compatible server, installed from PyPI into target/.
bash tests/support/ensure_moto.sh

# `fault-injection` (test-only) adds the relay crash hook one publishing test needs. Both
# commands take it so the binary is built once, and the suites below run that same binary.
run cargo build --bins --features fault-injection
run cargo test --all-targets --no-fail-fast --features fault-injection
run target/debug/model-ledger policy test policies/tests/default_policies.json --policies policies

for suite in scripts/suites/*.sh; do
    [ -e "$suite" ] || continue
    run bash "$suite"
done

exit $status
