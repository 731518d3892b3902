//! Maps verified token claims to a [`Principal`]: identity, display name, email, groups from
//! the issuer's configured claim path, and the service-account rule documented on [`Principal`].
//!
//! Runs only on claims whose signature and registered claims have already been verified.

use serde_json::Value;

use super::dev::KIND_CLAIM;
use super::{AuthError, IssuerConfig, Principal, PrincipalKind};

pub(crate) fn principal_from_claims(
    claims: &Value,
    config: &IssuerConfig,
    is_dev: bool,
) -> Result<Principal, AuthError> {
    let subject = string_claim(claims, "sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::InvalidToken("claim `sub` must be a non-empty string".into()))?;
    let issuer = string_claim(claims, "iss")
        .ok_or_else(|| AuthError::InvalidToken("claim `iss` must be a string".into()))?;
    let preferred_username = string_claim(claims, "preferred_username");
    let display_name = string_claim(claims, "name").or_else(|| preferred_username.clone());
    let email = string_claim(claims, "email");
    let groups = groups(claims, &config.groups_claim);
    let kind = if is_dev {
        dev_kind(claims)?
    } else {
        oidc_kind(claims, &subject, preferred_username.as_deref())
    };
    Ok(Principal {
        subject,
        issuer,
        display_name,
        email,
        groups,
        kind,
        expires_at: claims.get("exp").and_then(Value::as_i64),
    })
}

fn string_claim(claims: &Value, name: &str) -> Option<String> {
    claims.get(name)?.as_str().map(str::to_owned)
}

/// Finds the claim by its full name first (Auth0-style `https://example.com/groups`), then
/// as a dotted path into nested objects (Keycloak `realm_access.roles`).
fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, segment| value.get(segment))
}

fn groups(claims: &Value, path: &str) -> Vec<String> {
    match lookup(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(single)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

/// Dev tokens state their kind explicitly; an unknown value is an error rather than a silent
/// default, since the token was minted by our own code.
fn dev_kind(claims: &Value) -> Result<PrincipalKind, AuthError> {
    match claims.get(KIND_CLAIM) {
        None => Ok(PrincipalKind::User),
        Some(Value::String(s)) if s == PrincipalKind::User.as_str() => Ok(PrincipalKind::User),
        Some(Value::String(s)) if s == PrincipalKind::ServiceAccount.as_str() => {
            Ok(PrincipalKind::ServiceAccount)
        }
        Some(_) => Err(AuthError::InvalidToken(format!(
            "claim `{KIND_CLAIM}` must be \"user\" or \"service_account\""
        ))),
    }
}

/// Provider markers of client-credentials tokens; see the rule on [`Principal`].
fn oidc_kind(claims: &Value, subject: &str, preferred_username: Option<&str>) -> PrincipalKind {
    let claim_is =
        |name: &str, expected: &str| claims.get(name).and_then(Value::as_str) == Some(expected);
    let is_service_account = claim_is("idtyp", "app")
        || claim_is("gty", "client-credentials")
        || preferred_username.is_some_and(|u| u.starts_with("service-account-"))
        || claim_is("client_id", subject)
        || claim_is("azp", subject);
    if is_service_account {
        PrincipalKind::ServiceAccount
    } else {
        PrincipalKind::User
    }
}
