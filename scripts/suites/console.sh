#!/usr/bin/env bash
# The web console (issue #19) in a real browser: Debian's chromium driven by playwright-core
# (pinned in tests/console_browser/package.json; it never downloads a browser), against a real
# `model-ledger serve` with the embedded store and dev auth, then (tests/console_browser/oidc.mjs)
# a second server signing in through a real OpenID Provider (npm oidc-provider) the test
# starts. Picked up by scripts/test-all.sh.
# Installs what it needs (we run as root on CI): chromium from apt when /usr/bin/chromium is
# missing, playwright-core into target/console-browser/. Screenshots of each page go to
# target/console-screenshots/ (kept by CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh image may have no (or stale) package lists: refresh them and try again.
    apt-get install -y chromium \
        || { apt-get update -q && apt-get install -y chromium; }
fi
deps="$root/target/console-browser"
mkdir -p "$deps"
cp tests/console_browser/package.json tests/console_browser/package-lock.json "$deps/"
if [ ! -d "$deps/node_modules/playwright-core" ] || [ ! -d "$deps/node_modules/oidc-provider" ]; then
    # From the committed lockfile: exactly the pinned version, nothing resolved anew.
    (cd "$deps" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
cp tests/console_browser/run.mjs tests/console_browser/oidc.mjs "$deps/"

bin="$root/target/debug/model-ledger"
[ -x "$bin" ] || cargo build --bins --features fault-injection

work=$(mktemp -d)
shots="$root/target/console-screenshots"
rm -rf "$shots" && mkdir -p "$shots"
port=$((20000 + RANDOM % 20000))
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --policies policies \
    > "$work/serve.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null || { cat "$work/serve.log"; exit 1; }

token() { "$bin" token --data-dir "$work/data" --sub "$1" --group "$2" | tail -1; }
BASE="http://127.0.0.1:$port" \
ADMIN=$(token admin ml-admins) \
CI_TOKEN=$(token ci ml-ci) \
SHOTS="$shots" \
PROFILE="$work/profile" \
    node "$deps/run.mjs" || { tail -50 "$work/serve.log"; exit 1; }
# The OIDC sign-in: the script starts the provider and its own server (no dev auth).
BIN="$bin" ROOT="$root" WORK="$work" SHOTS="$shots" PROFILE="$work/profile-oidc" \
    node "$deps/oidc.mjs" || { tail -50 "$work/serve-oidc.log" 2>/dev/null; exit 1; }
ls "$shots"
