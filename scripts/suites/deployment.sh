#!/usr/bin/env bash
# The production recipe of docs/deployment.md, run on this machine (see the script it calls).
# Picked up by scripts/test-all.sh. The recipe's stand-ins for a TLS terminator and a database
# dump tool come from Debian packages; a machine without them gets them installed here rather
# than a skipped check.
set -euo pipefail
missing=()
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} (apt)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    else
        sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
exec bash "$(dirname "$0")/../deployment-check.sh"
