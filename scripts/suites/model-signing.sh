#!/usr/bin/env bash
# OpenSSF model signatures made by the real `model_signing` CLI (PyPI model-signing 1.1 with
# pyopenssl, which its CLI imports), recorded and checked by a running model-ledger, with the
# example policy production-requires-release-signature switched on. Picked up by
# scripts/test-all.sh. Covers: the key method and the certificate method (a CA made here),
# a signature over other files (mismatch), an untrusted key (refused, nothing recorded), and the
# policy allowing and refusing Production accordingly; plus the example policy's own cases.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="target/model-signing-venv"
if ! "$venv/bin/python" -c "import model_signing, OpenSSL" 2>/dev/null; then
    echo "==> installing model-signing 1.1 and pyopenssl into ${venv}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "model-signing==1.1.*" pyopenssl
fi
sign="$PWD/$venv/bin/model_signing"

cargo build --bins --quiet
bin="$PWD/target/debug/model-ledger"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAILED: $*" >&2
    [ -f "$work/server.log" ] && tail -n 30 "$work/server.log" >&2
    exit 1
}
step() { echo "==> $*"; }

step "keys and a CA (openssl)"
cd "$work"
cat > ext.cnf <<'EOF'
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectAltName = email:release@example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl ecparam -name prime256v1 -genkey -noout -out release.key
openssl ec -in release.key -pubout -out release.pub 2>/dev/null
openssl ecparam -name secp384r1 -genkey -noout -out other.key
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj "/CN=Example Release CA" -days 30 -out ca.pem \
    -extensions ca_ext -config <(cat /etc/ssl/openssl.cnf ext.cnf) 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out leaf.key
openssl req -new -key leaf.key -subj "/CN=release" -out leaf.csr
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 -out leaf.pem \
    -extfile ext.cnf -extensions leaf_ext 2>/dev/null
release_key_id="$(sha256sum release.pub | cut -d' ' -f1)"
cd - >/dev/null

step "the example policy's own cases"
policies="$work/policies"
mkdir -p "$policies"
cp policies/*.cedar policies/*.cedarschema policies/examples/production-requires-release-signature.cedar "$policies/"
"$bin" policy test policies/examples/release_signature_cases.json --policies "$policies" >/dev/null \
    || fail "example policy cases"
# This deployment's release key replaces the example's placeholder.
sed -i "s/4f5e1c2a3b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7/${release_key_id}/" \
    "$policies/production-requires-release-signature.cedar"

step "model-ledger trusting the release key and the CA"
mkdir -p "$work/data"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:${port}"
"$bin" serve --data-dir "$work/data" --database-url "sqlite://$work/data/ledger.db" \
    --policies "$policies" --dev-auth --listen "127.0.0.1:${port}" \
    --trusted-signing-key "$work/release.pub" --trusted-signing-ca "$work/ca.pem" \
    >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || fail "model-ledger did not start"
    sleep 0.1
done
token() { "$bin" token --data-dir "$work/data" --sub "$1" --group "$2" --ttl 1h; }
ci="$(token ci-bot ml-ci)"
release="$(token rita ml-release-managers)"
auditor="$(token ada ml-admins)"
ml() { "$bin" "$@" --server "$url" --no-progress; }
promote() { # VERSION STAGE TOKEN -> prints the HTTP status, body in $work/answer.json
    curl -s -o "$work/answer.json" -w '%{http_code}' -X POST "$url/api/v1/models/signed/versions/$1/stage" \
        -H "Authorization: Bearer $3" -H 'Content-Type: application/json' -d "{\"stage\": \"$2\"}"
}
stage_then_promote() { # VERSION -> HTTP status of the Production promotion
    ml verify "models:/signed/$1" --token "$ci" >/dev/null || fail "verify v$1"
    [ "$(promote "$1" Staging "$ci")" = 200 ] || fail "staging v$1: $(cat "$work/answer.json")"
    promote "$1" Production "$release"
}

model="$work/model"
cp -r examples/churn-model "$model"

step "key method: signed by the release key, verified, Production allowed"
"$sign" sign key --private_key "$work/release.key" --signature "$work/release.sig" "$model" >/dev/null
v1="$(ml push signed "$model" --token "$ci" --signature "$work/release.sig")" || fail "push with the release signature"
[ "$(stage_then_promote "$v1")" = 200 ] || fail "Production of a release-signed version: $(cat "$work/answer.json")"

step "unsigned: Production refused by production-requires-release-signature"
echo "retrained" >> "$model/weights.json"
v2="$(ml push signed "$model" --token "$ci")" || fail "push unsigned"
[ "$(stage_then_promote "$v2")" = 403 ] || fail "Production of an unsigned version was not refused"
grep -q production-requires-release-signature "$work/answer.json" || fail "refusal names the policy: $(cat "$work/answer.json")"

step "mismatch: a release signature over other files is recorded as mismatch and names the file"
out="$(ml sign-verify "models:/signed/$v2" "$work/release.sig" --token "$ci")" && fail "sign-verify of other files exited 0"
echo "$out" | grep -q '^mismatch' || fail "not reported as mismatch: $out"
echo "$out" | grep -q 'changed: weights.json' || fail "the changed file is not named: $out"
[ "$(promote "$v2" Production "$release")" = 403 ] || fail "Production after a mismatching signature"

step "certificate method: chained to the trusted CA, SAN release@example.com"
"$sign" sign certificate --private_key "$work/leaf.key" --signing_certificate "$work/leaf.pem" \
    --certificate_chain "$work/ca.pem" --signature "$work/cert.sig" "$model" >/dev/null
out="$(ml sign-verify "models:/signed/$v2" "$work/cert.sig" --token "$ci")" || fail "certificate signature: $out"
echo "$out" | grep -q 'signed by release@example.com' || fail "signer SAN not reported: $out"
# The policy names this certificate's SAN and issuer as the release signer.
[ "$(promote "$v2" Production "$release")" = 200 ] || fail "Production with the release certificate: $(cat "$work/answer.json")"

step "untrusted key: refused, nothing recorded"
"$sign" sign key --private_key "$work/other.key" --signature "$work/other.sig" "$model" >/dev/null
before="$(curl -fsS "$url/api/v1/events?limit=1000" -H "Authorization: Bearer $auditor" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')" \
    || fail "reading events"
status="$(curl -s -o "$work/answer.json" -w '%{http_code}' -X POST "$url/api/v1/models/signed/versions/$v2/signatures" \
    -H "Authorization: Bearer $ci" -H 'Content-Type: application/json' --data-binary "@$work/other.sig")"
[ "$status" = 422 ] || fail "untrusted signature answered $status: $(cat "$work/answer.json")"
grep -q UNTRUSTED_SIGNATURE "$work/answer.json" || fail "error code: $(cat "$work/answer.json")"
after="$(curl -fsS "$url/api/v1/events?limit=1000" -H "Authorization: Bearer $auditor" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')"
[ "$before" = "$after" ] || fail "an untrusted signature wrote an event"

step "a trusted key that the policy does not name: verified, Production still refused"
echo "retrained again" >> "$model/weights.json"
v3="$(ml push signed "$model" --token "$ci")" || fail "push v3"
ml verify "models:/signed/$v3" --token "$ci" >/dev/null || fail "verify v3"
[ "$(promote "$v3" Staging "$ci")" = 200 ] || fail "staging v3"
openssl req -new -key "$work/leaf.key" -subj "/CN=intern" -out "$work/intern.csr"
sed 's/release@example.com/intern@example.com/' "$work/ext.cnf" > "$work/intern.cnf"
openssl x509 -req -in "$work/intern.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 7 \
    -out "$work/intern.pem" -extfile "$work/intern.cnf" -extensions leaf_ext 2>/dev/null
"$sign" sign certificate --private_key "$work/leaf.key" --signing_certificate "$work/intern.pem" \
    --certificate_chain "$work/ca.pem" --signature "$work/intern.sig" "$model" >/dev/null
out="$(ml sign-verify "models:/signed/$v3" "$work/intern.sig" --token "$ci")" || fail "intern signature: $out"
echo "$out" | grep -q '^verified .*intern@example.com' || fail "intern signer: $out"
[ "$(promote "$v3" Production "$release")" = 403 ] || fail "Production with a signer the policy does not name"

echo "model-signing suite passed"
