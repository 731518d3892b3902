//! Authentication: turns an `Authorization: Bearer <jwt>` header into a verified [`Principal`].
//!
//! Tokens come either from configured OIDC issuers (keys from each issuer's discovery document and
//! JWKS, see `oidc`) or, for local development only, from a signing key kept in the data dir
//! ([`dev`]). Native API clients and MLflow clients (`MLFLOW_TRACKING_TOKEN`) send the same header.
//! This module only says *who* is calling; what they may do is the policy module's job. It depends
//! on `domain` only for [`Actor`]; mapping [`AuthError`] to HTTP responses belongs to `api`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Actor;

mod claims;
pub mod dev;
mod id_token;
mod oidc;
pub mod test_issuer;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod token_type_and_refetch_tests;

/// Whether a principal is a person or a machine identity; policies treat them differently
/// (e.g. only users may approve a promotion). See the service-account rule on [`Principal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    /// The spelling used in dev tokens' `model_ledger_kind` claim and in serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

/// A caller whose token has been verified.
///
/// Claims are mapped as follows:
/// - `subject` ← `sub`, `issuer` ← `iss` (together they identify the caller; `sub` alone is
///   only unique per issuer);
/// - `display_name` ← `name`, else `preferred_username`;
/// - `email` ← `email`;
/// - `groups` ← the issuer's `groups_claim`, a dotted path such as `groups`, `roles` or
///   `realm_access.roles`; the value may be an array of strings or a single string. A claim whose
///   own name contains dots (Auth0 namespaced claims like `https://example.com/groups`) is found
///   by its full name first.
///
/// **Service-account rule.** `kind` is [`PrincipalKind::ServiceAccount`] when the token carries
/// one of these provider markers for a client-credentials (machine) token, and
/// [`PrincipalKind::User`] otherwise:
/// 1. dev tokens: `model_ledger_kind == "service_account"` (trusted only from the dev issuer);
/// 2. Microsoft Entra ID: `idtyp == "app"`;
/// 3. Auth0: `gty == "client-credentials"`;
/// 4. Keycloak: `preferred_username` starts with `service-account-`;
/// 5. Okta and other providers: `sub` equals `client_id` or `azp` (in a client-credentials grant
///    the subject *is* the client).
///
/// A missing `email` alone does not make a service account: many IdPs omit it when the `email`
/// scope was not requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub subject: String,
    pub issuer: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub kind: PrincipalKind,
    /// The token's `exp` (Unix seconds): what is allowed on the token's say-so ends then, even
    /// a response that is still streaming (see `api/v1/event_stream.rs`).
    pub expires_at: Option<i64>,
}

impl Principal {
    /// The identity recorded in events this principal causes.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerConfig {
    /// Exactly the `iss` value the provider puts in tokens (and in its discovery document).
    pub issuer: String,
    /// Accepted `aud` values; at least one is required so a token minted for another
    /// application of the same IdP is not accepted here (RFC 8725 §3.9).
    pub audiences: Vec<String>,
    /// Dotted path to the groups claim: `groups`, `roles`, `realm_access.roles`, ...
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

/// The HTTP client, bounded fetch and URL rule the issuer discovery uses, for the console's
/// OIDC sign-in, which discovers the same issuer's authorization and token endpoints.
pub(crate) use oidc::{check_url, fetch_json, http_client};

/// Settings for [`Authenticator::new`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Data dir holding the dev signing key when running with `--dev-auth`; `None` otherwise.
    pub dev_auth_dir: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Minimum time between JWKS fetches triggered by unknown `kid`s: short, so a key the IdP
    /// has just rotated in is picked up within about this long, yet a bound, so a flood of
    /// forged tokens with random `kid`s cannot turn us into a hammer against the IdP.
    pub jwks_refetch_min_interval: Duration,
    /// Header `typ` values accepted, compared as media types (case-insensitive, `application/`
    /// implied). The default, `at+jwt`, accepts only RFC 9068 access tokens, so an ID token
    /// (`typ: JWT`) issued to some other client of the same IdP cannot be replayed here.
    pub accepted_token_types: Vec<String>,
}

/// The RFC 9068 access-token type, the default and only accepted `typ` unless configured.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            dev_auth_dir: None,
            leeway_secs: 30,
            jwks_refetch_min_interval: Duration::from_secs(1),
            accepted_token_types: vec![ACCESS_TOKEN_TYPE.to_owned()],
        }
    }
}

/// A `typ` value in the form used for comparison. RFC 7515 §4.1.9: media types compare
/// case-insensitively, and a value without `/` means `application/<value>`, so `at+jwt`,
/// `AT+JWT` and `application/at+jwt` are one type.
pub fn normalize_token_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
}

/// Why a request could not be authenticated, or why the authenticator could not start.
///
/// The messages are safe to return to clients: they never contain the token or key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("malformed credentials: {0}")]
    Malformed(String),
    #[error("token issuer is not trusted: {0}")]
    UnknownIssuer(String),
    #[error("token signing key is unknown: {0}")]
    UnknownKey(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("OIDC discovery failed: {0}")]
    Discovery(String),
    #[error("invalid authentication configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// Stable machine-readable code; clients and tests match on these, so never rename one.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "UNAUTHENTICATED",
            AuthError::Malformed(_) => "MALFORMED_TOKEN",
            AuthError::UnknownIssuer(_) => "UNKNOWN_ISSUER",
            AuthError::UnknownKey(_) => "UNKNOWN_SIGNING_KEY",
            AuthError::InvalidToken(_) => "INVALID_TOKEN",
            AuthError::Discovery(_) => "OIDC_DISCOVERY_FAILED",
            AuthError::Config(_) => "AUTH_CONFIG_INVALID",
        }
    }

    /// True for errors caused by the request (HTTP 401); false for server-side setup
    /// failures (`Discovery`, `Config`), which only `Authenticator::new` returns.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AuthError::Discovery(_) | AuthError::Config(_))
    }
}

/// Verifies bearer tokens against the configured issuers. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keyed by the exact `iss` string; the token's unverified `iss` picks the entry, and the
    /// verified `iss` must then match it.
    issuers: HashMap<String, oidc::IssuerKeys>,
    leeway_secs: u64,
    /// Recently verified tokens, by SHA-256 of the token. A model server resolving its model
    /// sends the same token on every request; re-checking the signature each time would cost
    /// more than the lookup it guards. Each entry expires at the token's `exp` but at most
    /// [`VERIFIED_TTL`] after it was verified, so a token signed by a key the IdP has since
    /// withdrawn stops working within that bound; moka evicts the least useful entries beyond
    /// [`VERIFIED_CAPACITY`], so a flood of distinct tokens cannot grow memory.
    verified: moka::sync::Cache<[u8; 32], VerifiedToken>,
    /// Normalized `typ` values accepted in token headers (see [`normalize_token_type`]).
    accepted_token_types: Vec<String>,
}

/// A verified token: who it is, for how long the verification is reused, and under which
/// issuer's key set it was made.
#[derive(Clone)]
struct VerifiedToken {
    principal: Principal,
    reuse_for: Duration,
    issuer: String,
    key_set: std::time::Instant,
}

/// Gives every cached verification its own lifetime (the token's remaining validity, capped).
struct ReuseUntilExpiry;

impl moka::Expiry<[u8; 32], VerifiedToken> for ReuseUntilExpiry {
    fn expire_after_create(
        &self,
        _fingerprint: &[u8; 32],
        token: &VerifiedToken,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(token.reuse_for)
    }

    fn expire_after_update(
        &self,
        _fingerprint: &[u8; 32],
        token: &VerifiedToken,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        // A re-verification (after a key-set change) starts a fresh lifetime.
        Some(token.reuse_for)
    }
}

/// Longest time a verified token is trusted without re-checking its signature.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Bound on the verified-token cache: far more distinct callers than a registry sees in a
/// minute, at a few hundred bytes each.
const VERIFIED_CAPACITY: u64 = 10_000;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<&String> = self.inner.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("Authenticator")
            .field("issuers", &issuers)
            .finish()
    }
}

impl Authenticator {
    /// Fetches every issuer's discovery document and JWKS (so a typo or an unreachable IdP fails
    /// at startup, not on the first request), or loads/creates the dev key.
    ///
    /// Dev auth and real issuers are mutually exclusive: a server that accepts self-minted
    /// tokens must never also look like a production deployment.
    pub async fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let accepted_token_types = accepted_token_types(&config.accepted_token_types)?;
        let mut issuers = HashMap::new();
        match (&config.dev_auth_dir, config.issuers.is_empty()) {
            (Some(_), false) => {
                return Err(AuthError::Config(
                    "dev auth cannot be combined with configured OIDC issuers".to_owned(),
                ));
            }
            (None, true) => {
                return Err(AuthError::Config(
                    "no OIDC issuer configured (configure one, or use dev auth locally)".to_owned(),
                ));
            }
            (Some(dir), true) => {
                let keys = dev::issuer_keys(dir)?;
                issuers.insert(dev::DEV_ISSUER.to_owned(), keys);
            }
            (None, false) => {
                let client = oidc::http_client()?;
                for issuer in &config.issuers {
                    if issuers.contains_key(&issuer.issuer) {
                        return Err(AuthError::Config(format!(
                            "issuer {} is configured twice",
                            issuer.issuer
                        )));
                    }
                    let keys = oidc::IssuerKeys::discover(
                        client.clone(),
                        issuer.clone(),
                        config.jwks_refetch_min_interval,
                    )
                    .await?;
                    issuers.insert(issuer.issuer.clone(), keys);
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuers,
                leeway_secs: config.leeway_secs,
                verified: moka::sync::Cache::builder()
                    .max_capacity(VERIFIED_CAPACITY)
                    .expire_after(ReuseUntilExpiry)
                    .build(),
                accepted_token_types,
            }),
        })
    }

    /// Verifies the `Authorization` header value (`Bearer <jwt>`) and maps the claims.
    pub async fn authenticate(
        &self,
        authorization_header: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let token = bearer_token(authorization_header)?;
        let fingerprint: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some(hit) = self.inner.verified.get(&fingerprint)
            && self
                .inner
                .issuers
                .get(&hit.issuer)
                .is_some_and(|keys| keys.key_set_stamp() == hit.key_set)
        {
            return Ok(hit.principal);
        }
        let header = oidc::parse_header(token)?;
        self.check_token_type(header.typ.as_deref())?;
        // The unverified `iss` only selects which keys to verify with; validation then pins
        // the same issuer, so a lying `iss` cannot pick keys that would accept the token.
        let iss = oidc::unverified_issuer(token)?;
        let keys = self
            .inner
            .issuers
            .get(&iss)
            .ok_or_else(|| AuthError::UnknownIssuer(iss.clone()))?;
        let key_set = keys.key_set_stamp();
        let claims = keys.verify(token, &header, self.inner.leeway_secs).await?;
        let principal = claims::principal_from_claims(&claims, keys.config(), keys.is_dev())?;
        let expires_in = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .map(|exp| exp - chrono::Utc::now().timestamp())
            .unwrap_or(0);
        if expires_in > 0 {
            // Stamped with the key set *before* verifying: if a refetch happened meanwhile,
            // the entry is simply re-verified next time.
            self.inner.verified.insert(
                fingerprint,
                VerifiedToken {
                    principal: principal.clone(),
                    reuse_for: Duration::from_secs(expires_in.unsigned_abs()).min(VERIFIED_TTL),
                    issuer: iss,
                    key_set,
                },
            );
        }
        Ok(principal)
    }
}

impl Authenticator {
    /// Refuses tokens of a type this server was not told to accept, before any key lookup:
    /// an ID token is signed by the same keys as an access token, so only `typ` tells them
    /// apart.
    fn check_token_type(&self, typ: Option<&str>) -> Result<(), AuthError> {
        let accepted = &self.inner.accepted_token_types;
        match typ {
            Some(typ) if accepted.contains(&normalize_token_type(typ)) => Ok(()),
            found => Err(AuthError::InvalidToken(format!(
                "token type {} is not accepted here (accepted: {}); ID tokens are not access \
                 tokens (see --oidc-accepted-token-types)",
                found.map_or_else(|| "(no `typ` header)".to_owned(), |t| format!("{t:?}")),
                accepted.join(", ")
            ))),
        }
    }
}

/// Checks and normalizes the configured token types; an empty list would refuse everything.
fn accepted_token_types(configured: &[String]) -> Result<Vec<String>, AuthError> {
    if configured.is_empty() || configured.iter().any(|t| t.trim().is_empty()) {
        return Err(AuthError::Config(format!(
            "accepted token types must be non-empty names such as {ACCESS_TOKEN_TYPE} or JWT"
        )));
    }
    Ok(configured.iter().map(|t| normalize_token_type(t)).collect())
}

/// Extracts the token from `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Err(AuthError::MissingToken);
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        Ok(token)
    } else if scheme.eq_ignore_ascii_case("basic") {
        Err(AuthError::Malformed(
            "Basic authentication is not supported; send `Authorization: Bearer <token>` \
             (MLflow: set MLFLOW_TRACKING_TOKEN, not MLFLOW_TRACKING_USERNAME/PASSWORD)"
                .to_owned(),
        ))
    } else {
        Err(AuthError::Malformed(
            "unsupported authorization scheme; expected `Bearer`".to_owned(),
        ))
    }
}
