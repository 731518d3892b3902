#!/usr/bin/env bash
# Creates target/moto-venv with moto's S3-compatible server (moto[server] from PyPI) unless it is
# already there, then prints the server binary's path. The artifact tests read that path from
# MODEL_LEDGER_MOTO_SERVER, defaulting to target/moto-venv/bin/moto_server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${MOTO_VENV:-$root/target/moto-venv}"
bin="$venv/bin/moto_server"
if [ ! -x "$bin" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
"$bin" --help >/dev/null
echo "MODEL_LEDGER_MOTO_SERVER=$bin"
