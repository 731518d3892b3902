//! OIDC key handling: discovery, the per-issuer JWKS cache, algorithm pinning and the
//! `jsonwebtoken` validation settings.
//!
//! Every decision about *which* key and *which* algorithm verifies a token is made here, from the
//! issuer's published keys, never from the token: the token header only supplies a `kid` used as
//! a lookup key (RFC 8725 §2.1, §3.1). `jku`/`x5u`/embedded `jwk` headers are ignored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{AuthError, IssuerConfig};

/// Larger discovery documents or key sets are refused: real ones are a few KiB, and an
/// unbounded read would let a misbehaving endpoint exhaust memory.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Tokens larger than this are refused before any parsing work.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Key sets older than this are refetched (rate limit permitting) even when every `kid` is
/// known, so a key the provider has withdrawn stops verifying without a restart.
const JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A verification key with the one algorithm it may be used with.
pub(crate) struct VerifyKey {
    alg: Algorithm,
    key: DecodingKey,
}

/// An issuer's usable keys, by `kid`. Keys published without a `kid` are kept apart: they can
/// only verify tokens without a `kid`, and only when they are the issuer's single key.
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    without_kid: Vec<Arc<VerifyKey>>,
    fetched_at: Instant,
}

impl KeySet {
    fn from_jwks(keys: &[Value], issuer: &str) -> Self {
        let mut by_kid = HashMap::new();
        let mut without_kid = Vec::new();
        for raw in keys {
            // One odd key (an encryption key, an unsupported curve) must not make the whole
            // set unusable, so bad entries are skipped, not fatal.
            let jwk: Jwk = match serde_json::from_value(raw.clone()) {
                Ok(jwk) => jwk,
                Err(e) => {
                    tracing::debug!(issuer, error = %e, "skipping unparseable JWK");
                    continue;
                }
            };
            let kid = jwk.common.key_id.clone();
            match verify_key(&jwk) {
                Ok(key) => match kid {
                    Some(kid) => {
                        by_kid.insert(kid, Arc::new(key));
                    }
                    None => without_kid.push(Arc::new(key)),
                },
                Err(reason) => tracing::debug!(issuer, ?kid, reason, "skipping JWK"),
            }
        }
        Self {
            by_kid,
            without_kid,
            fetched_at: Instant::now(),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_kid.is_empty() && self.without_kid.is_empty()
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }
}

/// Pins the algorithm from the key itself: the JWK's `alg` when present (checked against the key
/// type), otherwise the conventional algorithm for the key type. Symmetric (`oct`) keys are
/// never usable: accepting them is how HMAC-with-public-key confusion starts.
fn pin_algorithm(jwk: &Jwk) -> Result<Algorithm, &'static str> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("encryption key");
    }
    let declared = match jwk.common.key_algorithm {
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| "unsupported alg")?),
        None => None,
    };
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            let alg = declared.unwrap_or(Algorithm::RS256);
            if !matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) {
                return Err("alg does not match RSA key");
            }
            alg
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let by_curve = match params.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("unsupported EC curve"),
            };
            if declared.is_some_and(|d| d != by_curve) {
                return Err("alg does not match EC curve");
            }
            by_curve
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                return Err("alg does not match OKP key");
            }
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never accepted"),
        _ => return Err("unsupported key type"),
    };
    Ok(alg)
}

fn verify_key(jwk: &Jwk) -> Result<VerifyKey, &'static str> {
    let alg = pin_algorithm(jwk)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "invalid key material")?;
    Ok(VerifyKey { alg, key })
}

enum KeySource {
    /// Keys come from the issuer's `jwks_uri` and are refetched on rotation.
    Remote {
        client: reqwest::Client,
        jwks_uri: String,
    },
    /// Keys are fixed at startup (the dev signing key).
    Local,
}

/// One trusted issuer: its settings and its cached keys.
pub(crate) struct IssuerKeys {
    config: IssuerConfig,
    source: KeySource,
    keys: RwLock<Arc<KeySet>>,
    /// Time of the last JWKS fetch attempt. Holding this async mutex while fetching also makes
    /// refreshes single-flight: concurrent requests with a new `kid` wait for one fetch.
    last_fetch: tokio::sync::Mutex<Instant>,
    refetch_min_interval: Duration,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

pub(crate) fn http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        // A redirect to another host would make us trust keys the issuer did not publish.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build HTTP client: {e}")))
}

/// Plain HTTP is only acceptable for loopback issuers (tests, a local IdP); anything else must
/// use TLS, or an on-path attacker could substitute the keys.
pub(crate) fn check_url(url: &str, what: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{what} {url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(format!(
            "{what} {url:?} must use https (plain http only on loopback)"
        )),
    }
}

fn validate_config(config: &IssuerConfig) -> Result<(), AuthError> {
    check_url(&config.issuer, "issuer").map_err(AuthError::Config)?;
    if config.audiences.is_empty() || config.audiences.iter().any(|a| a.is_empty()) {
        return Err(AuthError::Config(format!(
            "issuer {}: at least one non-empty audience is required",
            config.issuer
        )));
    }
    if config.groups_claim.is_empty() {
        return Err(AuthError::Config(format!(
            "issuer {}: groups_claim must not be empty",
            config.issuer
        )));
    }
    Ok(())
}

pub(crate) async fn fetch_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: response exceeds {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: invalid JSON document: {e}"))
}

async fn fetch_key_set(
    client: &reqwest::Client,
    jwks_uri: &str,
    issuer: &str,
) -> Result<KeySet, String> {
    let raw: RawJwks = fetch_json(client, jwks_uri).await?;
    Ok(KeySet::from_jwks(&raw.keys, issuer))
}

impl IssuerKeys {
    /// Fetches `{issuer}/.well-known/openid-configuration` and its `jwks_uri`.
    pub(crate) async fn discover(
        client: reqwest::Client,
        config: IssuerConfig,
        refetch_min_interval: Duration,
    ) -> Result<Self, AuthError> {
        validate_config(&config)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let doc: DiscoveryDocument = fetch_json(&client, &url)
            .await
            .map_err(AuthError::Discovery)?;
        // OIDC Discovery §4.3: the document must name the issuer we asked for; otherwise one
        // provider could vouch for another's tokens.
        if doc.issuer != config.issuer {
            return Err(AuthError::Discovery(format!(
                "discovery document at {url} names issuer {:?}, expected {:?}",
                doc.issuer, config.issuer
            )));
        }
        check_url(&doc.jwks_uri, "jwks_uri").map_err(AuthError::Discovery)?;
        let set = fetch_key_set(&client, &doc.jwks_uri, &config.issuer)
            .await
            .map_err(AuthError::Discovery)?;
        if set.is_empty() {
            return Err(AuthError::Discovery(format!(
                "JWKS at {} has no usable signing keys",
                doc.jwks_uri
            )));
        }
        tracing::info!(issuer = %config.issuer, keys = set.len(), "loaded OIDC signing keys");
        Ok(Self {
            config,
            source: KeySource::Remote {
                client,
                jwks_uri: doc.jwks_uri,
            },
            keys: RwLock::new(Arc::new(set)),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
            refetch_min_interval,
        })
    }

    /// An issuer whose keys are fixed (the dev key). Its JWKS are given as JSON values.
    pub(crate) fn local(config: IssuerConfig, jwks: &[Value]) -> Result<Self, AuthError> {
        let set = KeySet::from_jwks(jwks, &config.issuer);
        if set.is_empty() {
            return Err(AuthError::Config(format!(
                "no usable key for issuer {}",
                config.issuer
            )));
        }
        Ok(Self {
            config,
            source: KeySource::Local,
            keys: RwLock::new(Arc::new(set)),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
            refetch_min_interval: Duration::MAX,
        })
    }

    pub(crate) fn config(&self) -> &IssuerConfig {
        &self.config
    }

    pub(crate) fn is_dev(&self) -> bool {
        matches!(self.source, KeySource::Local)
    }

    /// When the keys in force were fetched: a cached verification made under other keys is
    /// re-checked, so a key the IdP withdrew stops being honoured at the next refetch.
    pub(crate) fn key_set_stamp(&self) -> Instant {
        self.current().fetched_at
    }

    fn current(&self) -> Arc<KeySet> {
        // A poisoned lock only means a writer panicked between two plain assignments; the
        // stored Arc is still a complete key set.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refetches the JWKS unless the last fetch was less than `refetch_min_interval` ago. A
    /// failed fetch keeps the old keys (the IdP being briefly down must not log everyone out).
    async fn refresh(&self) {
        let KeySource::Remote { client, jwks_uri } = &self.source else {
            return;
        };
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() < self.refetch_min_interval {
            return;
        }
        // Counted even when the fetch fails, so a down IdP is not retried on every request.
        *last = Instant::now();
        match fetch_key_set(client, jwks_uri, &self.config.issuer).await {
            // An empty set is far more likely an IdP glitch than a deliberate revocation of
            // every key; keeping the old keys avoids locking everyone out.
            Ok(set) if set.is_empty() => {
                tracing::warn!(issuer = %self.config.issuer, "refetched JWKS has no usable keys; keeping previous keys");
            }
            Ok(set) => {
                tracing::info!(issuer = %self.config.issuer, keys = set.len(), "refreshed JWKS");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "JWKS refresh failed")
            }
        }
    }

    async fn find_key(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, AuthError> {
        if self.current().fetched_at.elapsed() > JWKS_MAX_AGE {
            self.refresh().await;
        }
        let Some(kid) = kid else {
            // No `kid`: usable only when the issuer publishes exactly one key. Never refetch
            // for these, or kid-less junk tokens could drive JWKS traffic.
            let set = self.current();
            let mut all = set.by_kid.values().chain(set.without_kid.iter());
            return match (all.next(), all.next()) {
                (Some(key), None) => Ok(key.clone()),
                _ => Err(AuthError::UnknownKey(
                    "token has no `kid` and the issuer has several keys".to_owned(),
                )),
            };
        };
        if let Some(key) = self.current().by_kid.get(kid) {
            return Ok(key.clone());
        }
        // Unknown kid: the issuer may have rotated keys since we last looked.
        self.refresh().await;
        self.current()
            .by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(format!("no key with kid {kid:?}")))
    }

    /// Verifies signature and registered claims; returns the claims on success.
    pub(crate) async fn verify(
        &self,
        token: &str,
        header: &Header,
        leeway_secs: u64,
    ) -> Result<Value, AuthError> {
        let audiences = self.config.audiences.clone();
        self.verify_for(token, header, leeway_secs, &audiences)
            .await
    }

    /// [`IssuerKeys::verify`] for other accepted audiences: an ID token's `aud` is the client
    /// it was issued to (the console), not the API's audience.
    pub(crate) async fn verify_for(
        &self,
        token: &str,
        header: &Header,
        leeway_secs: u64,
        audiences: &[String],
    ) -> Result<Value, AuthError> {
        if header.kid.as_ref().is_some_and(|k| k.len() > 256) {
            return Err(AuthError::Malformed("`kid` is too long".to_owned()));
        }
        let key = self.find_key(header.kid.as_deref()).await?;
        // The key decides the algorithm; a header asking for anything else (HS256 with the RSA
        // public key as secret, a weaker RSA variant, ...) is refused before any crypto runs.
        if header.alg != key.alg {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not allowed for this key (expected {:?})",
                header.alg, key.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        // jsonwebtoken only checks iss/aud when present unless they are required.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(audiences);
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(map_jwt_error)
    }
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    let message = match error.kind() {
        ErrorKind::ExpiredSignature => "token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => "token issuer does not match".to_owned(),
        ErrorKind::InvalidAudience => "token audience is not accepted here".to_owned(),
        ErrorKind::InvalidSignature => "signature verification failed".to_owned(),
        ErrorKind::InvalidAlgorithm => "token algorithm is not allowed".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing required claim `{claim}`"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim `{claim}` has the wrong type"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => {
            return AuthError::Malformed(format!("token is not a well-formed JWT: {error}"));
        }
        _ => format!("token rejected: {error}"),
    };
    AuthError::InvalidToken(message)
}

/// Decodes the JOSE header. `alg: none` is reported as an invalid (unsigned) token rather than
/// as malformed, since that is what it is; `jsonwebtoken` cannot even represent it.
pub(crate) fn parse_header(token: &str) -> Result<Header, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("token is too large".to_owned()));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        if raw_header_alg(token).is_some_and(|alg| alg.eq_ignore_ascii_case("none")) {
            AuthError::InvalidToken("unsigned tokens (alg none) are not accepted".to_owned())
        } else {
            AuthError::Malformed(format!("token is not a well-formed JWT: {e}"))
        }
    })?;
    check_critical_parameters(header.crit.as_deref())?;
    Ok(header)
}

/// Header extensions this verifier implements, and which a token may therefore mark critical.
/// None: we verify plain JWS (no `b64: false`, RFC 7797, nor any private extension).
const UNDERSTOOD_CRITICAL_PARAMETERS: &[&str] = &[];

/// RFC 7515 §4.1.11: `crit` lists header parameters the recipient must understand and process;
/// a recipient that does not must reject the token, since ignoring, say, an unencoded-payload
/// flag would verify a different message than the one signed. `jsonwebtoken` parses `crit`
/// but does not enforce it, so it is enforced here before any key is looked up.
fn check_critical_parameters(crit: Option<&[String]>) -> Result<(), AuthError> {
    match crit {
        None => Ok(()),
        Some([]) => Err(AuthError::Malformed(
            "`crit` header must not be an empty list (RFC 7515 §4.1.11)".to_owned(),
        )),
        Some(names) => match names
            .iter()
            .find(|name| !UNDERSTOOD_CRITICAL_PARAMETERS.contains(&name.as_str()))
        {
            Some(unknown) => Err(AuthError::InvalidToken(format!(
                "critical header parameter {unknown:?} is not understood (RFC 7515 §4.1.11)"
            ))),
            None => Ok(()),
        },
    }
}

fn raw_header_alg(token: &str) -> Option<String> {
    let first = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(first).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// Reads `iss` without verifying anything; used only to choose the issuer whose keys and
/// settings then verify the token.
pub(crate) fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|e| AuthError::Malformed(format!("token is not a well-formed JWT: {e}")))?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(AuthError::InvalidToken(
            "claim `iss` has the wrong type".to_owned(),
        )),
        None => Err(AuthError::InvalidToken(
            "missing required claim `iss`".to_owned(),
        )),
    }
}
