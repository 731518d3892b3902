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
mod oidc;
pub mod test_issuer;
#[cfg(test)]
mod tests;

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

/// Settings for [`Authenticator::new`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Data dir holding the dev signing key when running with `--dev-auth`; `None` otherwise.
    pub dev_auth_dir: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Minimum time between JWKS fetches triggered by unknown `kid`s, so a flood of forged
    /// tokens cannot turn us into a hammer against the IdP.
    pub jwks_refetch_min_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            dev_auth_dir: None,
            leeway_secs: 30,
            jwks_refetch_min_interval: Duration::from_secs(10),
        }
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
    /// Recently verified tokens. A model server resolving its model sends the same token on
    /// every request; re-checking the signature each time would cost more than the lookup it
    /// guards. Entries live until the token's `exp` but at most [`VERIFIED_TTL`], so a token
    /// signed by a key the IdP has since withdrawn stops working within that bound.
    verified: std::sync::Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

/// A verified token: who it is, until when the verification is reused, and under which
/// issuer's key set it was made.
struct VerifiedToken {
    principal: Principal,
    valid_until: std::time::Instant,
    issuer: String,
    key_set: std::time::Instant,
}

/// Longest time a verified token is trusted without re-checking its signature.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Bound on the verified-token cache; it is emptied when full (simple and enough for the
/// number of distinct callers a registry sees).
const VERIFIED_CAPACITY: usize = 10_000;

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
                verified: std::sync::Mutex::new(HashMap::new()),
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
        let now = std::time::Instant::now();
        if let Ok(cache) = self.inner.verified.lock()
            && let Some(hit) = cache.get(&fingerprint)
            && hit.valid_until > now
            && self
                .inner
                .issuers
                .get(&hit.issuer)
                .is_some_and(|keys| keys.key_set_stamp() == hit.key_set)
        {
            return Ok(hit.principal.clone());
        }
        let header = oidc::parse_header(token)?;
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
            let ttl = Duration::from_secs(expires_in as u64).min(VERIFIED_TTL);
            if let Ok(mut cache) = self.inner.verified.lock() {
                if cache.len() >= VERIFIED_CAPACITY {
                    cache.clear();
                }
                // Stamped with the key set *before* verifying: if a refetch happened meanwhile,
                // the entry is simply re-verified next time.
                cache.insert(
                    fingerprint,
                    VerifiedToken {
                        principal: principal.clone(),
                        valid_until: now + ttl,
                        issuer: iss.clone(),
                        key_set,
                    },
                );
            }
        }
        Ok(principal)
    }
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
