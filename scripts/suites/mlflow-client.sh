#!/usr/bin/env bash
# The real MLflow client against model-ledger, with the two pinned client lines: the newest 2.x
# and the newest installable 3.x on PyPI (mlflow 3.18.0 is listed, but its mlflow-skinny==3.18.0
# requirement is not published, so 3.17.2 is the newest 3.x that installs). Picked up by
# scripts/test-all.sh; each run also runs the Node.js quality-gate test.
set -euo pipefail
cd "$(dirname "$0")/../.."

status=0
for version in 2.22.5 3.17.2; do
    bash tests/mlflow_client/run.sh "$version" || status=1
done
exit $status
