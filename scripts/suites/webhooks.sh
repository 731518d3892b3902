#!/usr/bin/env bash
# Registry webhooks (issue #18) with the real MLflow 3 client and a `standardwebhooks` receiver.
# Picked up by scripts/test-all.sh. 3.17.2 is the newest 3.x client that installs (see
# mlflow-client.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/webhooks_client/run.sh 3.17.2
