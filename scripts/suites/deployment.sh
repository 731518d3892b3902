#!/usr/bin/env bash
# The production recipe of docs/deployment.md, run on this machine (see the script it calls).
# Picked up by scripts/test-all.sh.
set -euo pipefail
exec bash "$(dirname "$0")/../deployment-check.sh"
