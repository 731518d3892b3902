//! Local development signing key, stored in the data dir, for running without an IdP.
//!
//! With `--dev-auth` the server trusts exactly one issuer, [`DEV_ISSUER`], whose Ed25519 key
//! lives in `<data dir>/dev-auth-ed25519.pem` (created with mode 0600 on first use).
//! [`mint_token`] signs tokens with it for the CLI and tests. Anyone who can read the data dir
//! can mint any identity, which is why `Authenticator::new` refuses dev auth alongside real
//! issuers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::oidc::IssuerKeys;
use super::{AuthError, IssuerConfig, PrincipalKind};

/// `iss` of dev tokens.
pub const DEV_ISSUER: &str = "model-ledger-dev";
/// `aud` of dev tokens.
pub const DEV_AUDIENCE: &str = "model-ledger";
/// Claim carrying the principal kind in dev tokens: `"user"` or `"service_account"`.
pub const KIND_CLAIM: &str = "model_ledger_kind";
const KEY_FILE: &str = "dev-auth-ed25519.pem";

/// Where the dev key lives inside `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

fn io_error(path: &Path, e: std::io::Error) -> AuthError {
    AuthError::Config(format!("dev key {}: {e}", path.display()))
}

/// Creates the dev key if it is missing, and checks that an existing one loads.
pub fn ensure_dev_key(data_dir: &Path) -> Result<(), AuthError> {
    let path = key_path(data_dir);
    if !path.exists() {
        std::fs::create_dir_all(data_dir).map_err(|e| io_error(data_dir, e))?;
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| AuthError::Config("cannot generate Ed25519 key".to_owned()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| AuthError::Config("cannot encode Ed25519 key".to_owned()))?;
        write_private(&path, pem("PRIVATE KEY", der.as_ref()).as_bytes())?;
    }
    load(data_dir).map(|_| ())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so splitting on byte boundaries is safe.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes with `create_new` and mode 0600 so the key is never briefly world-readable and an
/// existing key is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process created it concurrently; `load` will validate theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_error(path, e)),
    };
    file.write_all(bytes).map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

struct DevKey {
    encoding: EncodingKey,
    /// Public JWK with `kid` set to its RFC 7638 thumbprint, so a regenerated key gets a new
    /// `kid` and old tokens fail with "unknown key" instead of a confusing signature error.
    jwk: Jwk,
    kid: String,
}

fn load(data_dir: &Path) -> Result<DevKey, AuthError> {
    let path = key_path(data_dir);
    let pem = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    let invalid = |what: &str| AuthError::Config(format!("dev key {}: {what}", path.display()));
    let encoding =
        EncodingKey::from_ed_pem(&pem).map_err(|_| invalid("not an Ed25519 PKCS#8 PEM key"))?;
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)
        .map_err(|_| invalid("not a usable Ed25519 key"))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| invalid("cannot compute key thumbprint"))?;
    jwk.common.key_id = Some(kid.clone());
    Ok(DevKey { encoding, jwk, kid })
}

/// The dev issuer as the authenticator sees it: fixed key, [`DEV_AUDIENCE`], `groups` claim.
pub(crate) fn issuer_keys(data_dir: &Path) -> Result<IssuerKeys, AuthError> {
    ensure_dev_key(data_dir)?;
    let key = load(data_dir)?;
    let jwk = serde_json::to_value(&key.jwk)
        .map_err(|e| AuthError::Config(format!("cannot encode dev JWK: {e}")))?;
    IssuerKeys::local(
        IssuerConfig {
            issuer: DEV_ISSUER.to_owned(),
            audiences: vec![DEV_AUDIENCE.to_owned()],
            groups_claim: "groups".to_owned(),
        },
        &[jwk],
    )
}

/// Mints a dev token for `sub`, valid from now for `ttl`; creates the key if needed.
pub fn mint_token(
    data_dir: &Path,
    sub: &str,
    groups: &[String],
    ttl: Duration,
    kind: PrincipalKind,
) -> Result<String, AuthError> {
    if sub.trim().is_empty() {
        return Err(AuthError::Config(
            "dev token subject must not be empty".to_owned(),
        ));
    }
    ensure_dev_key(data_dir)?;
    let key = load(data_dir)?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(ttl.as_secs()),
        "groups": groups,
        KIND_CLAIM: kind.as_str(),
    });
    // Dev tokens stand in for an IdP's access tokens, so they are typed as RFC 9068 ones and
    // pass the same `typ` check.
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(super::ACCESS_TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid);
    jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| AuthError::Config(format!("cannot sign dev token: {e}")))
}
