//! ID tokens: the proof of sign-in an OpenID Provider hands the web console at the end of an
//! authorization code flow.
//!
//! An ID token is signed by the same keys as the issuer's access tokens, so it is verified by
//! the same machinery ([`IssuerKeys`](super::oidc::IssuerKeys): the issuer's JWKS, the
//! algorithm pinned by the key, `iss`, `exp`, `nbf`), with three differences that make it an
//! answer to *this* sign-in and nothing else (OpenID Connect Core §3.1.3.7):
//! - its audience is the console's client id, not the API's audience;
//! - when it names several audiences, `azp` must be the console's client id;
//! - its `nonce` must be the one the console put in the authorization request, which only the
//!   browser that started the sign-in holds, so a token minted for another sign-in (replayed,
//!   or injected with a stolen code) is refused.
//!
//! An RFC 9068 access token (`typ: at+jwt`) is refused here just as an ID token is refused as
//! a bearer token: the two are not interchangeable. Claims map to a [`Principal`] exactly as a
//! bearer token's do (the same groups claim), so the policies see one person either way.

use serde_json::Value;

use super::{ACCESS_TOKEN_TYPE, AuthError, Authenticator, Principal, claims, normalize_token_type};

impl Authenticator {
    /// Verifies an ID token from `issuer` (one of the configured issuers) issued to
    /// `client_id` for the sign-in that sent `nonce`, and maps its claims.
    pub async fn verify_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Principal, AuthError> {
        let keys = self
            .inner
            .issuers
            .get(issuer)
            .ok_or_else(|| AuthError::UnknownIssuer(issuer.to_owned()))?;
        let header = super::oidc::parse_header(token)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| normalize_token_type(t) == normalize_token_type(ACCESS_TOKEN_TYPE))
        {
            return Err(AuthError::InvalidToken(
                "an access token is not an ID token".to_owned(),
            ));
        }
        // The token's own `iss` must be the console's issuer; the validation below pins it.
        if super::oidc::unverified_issuer(token)? != issuer {
            return Err(AuthError::InvalidToken(
                "ID token issuer does not match".to_owned(),
            ));
        }
        let claims = keys
            .verify_for(
                token,
                &header,
                self.inner.leeway_secs,
                &[client_id.to_owned()],
            )
            .await?;
        if let Some(Value::Array(audiences)) = claims.get("aud")
            && audiences.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(client_id)
        {
            return Err(AuthError::InvalidToken(
                "ID token has several audiences and `azp` is not this client".to_owned(),
            ));
        }
        let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), nonce.as_bytes()) || nonce.is_empty() {
            return Err(AuthError::InvalidToken(
                "ID token nonce does not match this sign-in".to_owned(),
            ));
        }
        claims::principal_from_claims(&claims, keys.config(), keys.is_dev())
    }
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
