#!/usr/bin/env bash
# Runs the production recipe of docs/deployment.md on this machine, as far as it allows:
#   PostgreSQL (the machine's service) with migrations applied once by `model-ledger migrate`,
#   NATS JetStream (the machine's service), S3-compatible storage (moto, from PyPI into target/),
#   two `serve --no-migrate` processes behind a round-robin load balancer, TLS terminated in
#   front of it (socat with a throw-away certificate), a push, a verify and a promotion through
#   it, then a backup of the database restored into a fresh one, where `audit verify` must pass
#   and a server on the restored copy must find and verify the artifact in object storage.
#   Finally the systemd unit in docs/deployment.md is checked to parse.
# What it cannot run here: a real OIDC issuer (dev tokens stand in: `--dev-auth`, which the
# recipe replaces with `--oidc-issuer`) and a real load balancer (scripts/deploy/round_robin.py).
# Usage: bash scripts/deployment-check.sh   (exits non-zero on the first failed step; also run by
# scripts/test-all.sh as scripts/suites/deployment.sh). MODEL_LEDGER_BIN=PATH skips the build;
# KEEP_WORK=1 keeps the temporary directory with every process's log.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

# The same build scripts/test-all.sh makes (the test-only feature adds a hidden flag and
# nothing else), so running both does not rebuild the binary back and forth.
if [ -z "${MODEL_LEDGER_BIN:-}" ]; then
    cargo build --bins --quiet --features fault-injection
fi
bin="${MODEL_LEDGER_BIN:-$root/target/debug/model-ledger}"
moto="$(bash tests/support/ensure_moto.sh | sed -n 's/^MODEL_LEDGER_MOTO_SERVER=//p')"

pg_admin="${MODEL_LEDGER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_base="${pg_admin%/*}"
run_id="deploy_$(date +%s)_$$"
db="ml_${run_id}"
restored="ml_${run_id}_restored"
work="$(mktemp -d)"
pids=()

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
step() { echo "==> $*"; }
fail() { echo "FAILED: $*" >&2; for log in "$work"/*.log; do echo "---- $log" >&2; tail -n 20 "$log" >&2; done; exit 1; }
wait_http() {
    for _ in $(seq 1 150); do
        curl -fsS "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS \"$db\"" -c "DROP DATABASE IF EXISTS \"$restored\"" >/dev/null 2>&1 || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

step "PostgreSQL: a fresh database, migrated once before any server starts"
psql -q "$pg_admin" -c "CREATE DATABASE \"$db\"" >/dev/null
database_url="$pg_base/$db"
"$bin" migrate --database-url "$database_url" | grep -q "migrations applied" || fail "migrate"

step "S3-compatible storage: moto with a bucket"
s3_port="$(free_port)"
"$moto" -p "$s3_port" >"$work/s3.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$s3_port/" || fail "moto did not start"
curl -fsS -X PUT "http://127.0.0.1:$s3_port/models" >/dev/null || fail "create bucket"
export AWS_ACCESS_KEY_ID=deploy AWS_SECRET_ACCESS_KEY=deploy AWS_REGION=us-east-1

step "Two model-ledger processes on one database, NATS and artifact store"
# One data directory for both: it holds the checkpoint key (every process must sign with the
# same one) and, here only, the dev-token key standing in for the OIDC issuer.
data_dir="$work/data"
mkdir -p "$data_dir"
common=(--no-migrate --data-dir "$data_dir" --dev-auth
    --policies "$root/policies"
    --artifact-store "s3://models/ledger" --s3-endpoint "http://127.0.0.1:$s3_port" --s3-allow-http
    --trusted-proxy 127.0.0.1)
nats=(--nats-url nats://127.0.0.1:4222 --nats-stream "DEPLOY_${run_id^^}"
    --nats-subject-prefix "deploy.$run_id" --nats-max-age 1h)
ports=()
for i in 1 2; do
    port="$(free_port)"
    ports+=("$port")
    "$bin" serve "${common[@]}" "${nats[@]}" --database-url "$database_url" --listen "127.0.0.1:$port" \
        >"$work/server$i.log" 2>&1 &
    pids+=($!)
done
for port in "${ports[@]}"; do
    wait_http "http://127.0.0.1:$port/readyz" || fail "server on $port not ready"
done

step "Load balancer over both, TLS terminated in front of it"
lb_port="$(free_port)"
python3 scripts/deploy/round_robin.py "$lb_port" "${ports[@]}" >"$work/lb.log" 2>&1 &
pids+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1
tls_port="$(free_port)"
socat "openssl-listen:$tls_port,reuseaddr,fork,cert=$work/tls.crt,key=$work/tls.key,verify=0" \
    "tcp:127.0.0.1:$lb_port" >"$work/tls.log" 2>&1 &
pids+=($!)
https="https://localhost:$tls_port"
tls=(--cacert "$work/tls.crt")
wait_http "${tls[@]}" "$https/readyz" || fail "the registry is not reachable over TLS"

step "Use it through TLS and the balancer"
ci="$("$bin" token --data-dir "$data_dir" --sub ci-bot --group ml-ci)"
rm="$("$bin" token --data-dir "$data_dir" --sub release --group ml-release-managers)"
for _ in 1 2 3 4; do
    curl -fsS "${tls[@]}" "$https/api/v1/models" -H "Authorization: Bearer $ci" >/dev/null || fail "list models"
done
# The CLI talks to the balancer directly (it trusts only public CAs, not this test certificate).
lb="http://127.0.0.1:$lb_port"
version="$("$bin" push churn "$root/examples/churn-model" --server "$lb" --token "$ci" --no-progress)" || fail "push"
"$bin" verify "models:/churn/$version" --server "$lb" --token "$ci" >/dev/null || fail "verify"
curl -fsS "${tls[@]}" -X POST "$https/api/v1/models/churn/versions/$version/stage" \
    -H "Authorization: Bearer $rm" -H 'Content-Type: application/json' \
    -d '{"stage": "Production", "comment": "deployment check"}' >/dev/null || fail "promote"
for i in 1 2; do
    grep -q "model_ledger::access" "$work/server$i.log" || fail "server $i answered no request"
done
relay_leaders=0
for port in "${ports[@]}"; do
    curl -fsS "http://127.0.0.1:$port/readyz" | grep -q '"leader":true' && relay_leaders=$((relay_leaders + 1))
done
[ "$relay_leaders" -eq 1 ] || fail "expected exactly one relay leader, found $relay_leaders"
"$bin" audit checkpoint --database-url "$database_url" --data-dir "$data_dir" >"$work/checkpoint.txt" \
    || fail "checkpoint"

step "Backup: pg_dump, restore into a fresh database, verify the chain and the artifact"
pg_dump -Fc "$database_url" >"$work/ledger.dump" || fail "pg_dump"
psql -q "$pg_admin" -c "CREATE DATABASE \"$restored\"" >/dev/null
pg_restore --no-owner -d "$pg_base/$restored" "$work/ledger.dump" || fail "pg_restore"
"$bin" audit verify --database-url "$pg_base/$restored" --checkpoint "$work/checkpoint.txt" \
    --data-dir "$data_dir" | tee "$work/verify.txt" | grep -q "chain OK" || fail "audit verify on the restored copy"
restored_port="$(free_port)"
# Without NATS: this copy is only checked, it must not publish into the live stream.
"$bin" serve "${common[@]}" --database-url "$pg_base/$restored" \
    --listen "127.0.0.1:$restored_port" >"$work/restored.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$restored_port/readyz" || fail "server on the restored copy"
"$bin" verify "models:/churn/$version" --server "http://127.0.0.1:$restored_port" --token "$ci" >/dev/null \
    || fail "the restored copy finds the artifact in object storage"

step "Upgrade: migrate is safe to run again against the live database"
"$bin" migrate --database-url "$database_url" | grep -q "migrations applied" || fail "migrate again"

step "systemd unit from docs/deployment.md parses"
exec_start="$(sed -n 's/^ExecStart=//p' docs/deployment.md | head -n 1)"
[ -n "$exec_start" ] || fail "no ExecStart in docs/deployment.md"
read -r -a unit_args <<<"${exec_start#* }"
"$bin" "${unit_args[@]}" --help >/dev/null || fail "ExecStart's options do not parse: $exec_start"

echo "deployment check passed: $(cat "$work/verify.txt")"
