#!/usr/bin/env bash
# The real Databricks SDK for Python (databricks-sdk on PyPI) driving model-ledger's approval
# workflow (issue #17) through its Databricks-compatible API: transition requests (create,
# list, approve, reject, delete), comments (create, update, delete) and the Databricks
# transition-stage call. Picked up by scripts/test-all.sh. The venv is built once under
# target/dbsdk-venv, like the MLflow client suite's.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash tests/databricks_sdk/run.sh
