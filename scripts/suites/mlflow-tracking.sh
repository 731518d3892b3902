#!/usr/bin/env bash
# Tracking pass-through and run evidence against a real `mlflow server` 3.17.2 as the upstream
# (the newest installable 3.x; 3.18.0 is listed on PyPI but does not install). Picked up by
# scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash tests/mlflow_tracking/run.sh
