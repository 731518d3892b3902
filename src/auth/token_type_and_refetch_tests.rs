//! Tests for the rules that tell an access token from other JWTs the same IdP signs (`typ`,
//! `crit`), for how fast a rotated-in key is picked up without letting random `kid`s drive
//! JWKS traffic, and for the verified-token cache's lifetime. All run against the real HTTP
//! [`TestIssuer`].

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use serde_json::json;

use super::test_issuer::{TestIssuer, TestKey};
use super::*;

const AUD: &str = "model-ledger-api";

async fn authenticator(issuer: &TestIssuer, config: AuthConfig) -> Authenticator {
    Authenticator::new(AuthConfig {
        issuers: vec![issuer.config(AUD, "groups")],
        ..config
    })
    .await
    .expect("authenticator starts")
}

async fn check(auth: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    auth.authenticate(Some(&format!("Bearer {token}"))).await
}

/// A token shaped like an OIDC ID token: `typ: JWT` (what `Header::new` writes), same keys.
fn id_token(issuer: &TestIssuer) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    issuer.mint_with_header("rsa-1", &header, &issuer.claims("alice", AUD))
}

#[tokio::test]
async fn id_tokens_are_refused_by_default() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, AuthConfig::default()).await;
    let err = check(&auth, &id_token(&issuer))
        .await
        .expect_err("typ JWT refused");
    assert_eq!(err.code(), "INVALID_TOKEN");
    assert!(err.is_client_error(), "answered as 401");
    let message = err.to_string();
    assert!(message.contains("\"JWT\""), "{message}");
    assert!(message.contains("application/at+jwt"), "{message}");

    // No `typ` at all is not an access token either.
    let mut header = issuer.key("rsa-1").header();
    header.typ = None;
    let untyped = issuer.mint_with_header("rsa-1", &header, &issuer.claims("a", AUD));
    let err = check(&auth, &untyped).await.expect_err("no typ refused");
    assert!(err.to_string().contains("no `typ`"), "{err}");
}

#[tokio::test]
async fn access_token_type_is_matched_as_a_media_type() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, AuthConfig::default()).await;
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let mut header = issuer.key("ec-1").header();
        header.typ = Some(typ.into());
        let token = issuer.mint_with_header("ec-1", &header, &issuer.claims("a", AUD));
        check(&auth, &token)
            .await
            .unwrap_or_else(|e| panic!("{typ}: {e}"));
    }
    let mut header = issuer.key("ec-1").header();
    header.typ = Some("application/jwt".into());
    let token = issuer.mint_with_header("ec-1", &header, &issuer.claims("a", AUD));
    assert!(check(&auth, &token).await.is_err(), "application/jwt");
}

#[tokio::test]
async fn plain_jwt_is_accepted_when_configured() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(
        &issuer,
        AuthConfig {
            accepted_token_types: vec!["at+jwt".into(), "JWT".into()],
            ..AuthConfig::default()
        },
    )
    .await;
    let principal = check(&auth, &id_token(&issuer))
        .await
        .expect("JWT accepted when configured");
    assert_eq!(principal.subject, "alice");
    let access = issuer.mint("rsa-1", &issuer.claims("bob", AUD));
    check(&auth, &access).await.expect("at+jwt still accepted");

    let only_jwt = authenticator(
        &issuer,
        AuthConfig {
            accepted_token_types: vec!["jwt".into()],
            ..AuthConfig::default()
        },
    )
    .await;
    assert!(
        check(&only_jwt, &access).await.is_err(),
        "at+jwt not listed"
    );
}

#[tokio::test]
async fn an_empty_token_type_list_is_a_configuration_error() {
    let issuer = TestIssuer::start().await;
    for types in [vec![], vec![" ".to_owned()]] {
        let r = Authenticator::new(AuthConfig {
            issuers: vec![issuer.config(AUD, "groups")],
            accepted_token_types: types,
            ..AuthConfig::default()
        })
        .await;
        assert!(matches!(r, Err(AuthError::Config(_))));
    }
}

#[tokio::test]
async fn dev_tokens_are_access_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dev::mint_token(
        dir.path(),
        "dev",
        &[],
        Duration::from_secs(60),
        PrincipalKind::User,
    )
    .expect("mint");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.typ.as_deref(), Some(ACCESS_TOKEN_TYPE));
    let auth = Authenticator::new(AuthConfig {
        dev_auth_dir: Some(dir.path().to_owned()),
        ..AuthConfig::default()
    })
    .await
    .expect("dev auth");
    check(&auth, &token).await.expect("accepted by default");
}

#[tokio::test]
async fn unknown_critical_header_parameters_are_refused() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, AuthConfig::default()).await;
    let mut header = issuer.key("rsa-1").header();
    header.crit = Some(vec!["exp-policy".into()]);
    header.extras.insert("exp-policy", json!("strict"));
    let token = issuer.mint_with_header("rsa-1", &header, &issuer.claims("a", AUD));
    let err = check(&auth, &token).await.expect_err("crit refused");
    assert_eq!(err.code(), "INVALID_TOKEN");
    assert!(err.to_string().contains("\"exp-policy\""), "{err}");
    assert_eq!(
        issuer.jwks_fetch_count(),
        1,
        "refused before any key lookup"
    );

    // RFC 7797's unencoded payload is an extension we do not implement either.
    header.crit = Some(vec!["b64".into()]);
    let token = issuer.mint_with_header("rsa-1", &header, &issuer.claims("a", AUD));
    assert!(check(&auth, &token).await.is_err(), "b64");

    header.crit = Some(vec![]);
    let token = issuer.mint_with_header("rsa-1", &header, &issuer.claims("a", AUD));
    let err = check(&auth, &token).await.expect_err("empty crit refused");
    assert_eq!(err.code(), "MALFORMED_TOKEN");

    // The same header without `crit` is fine: the refusal is about `crit`, not the extra field.
    header.crit = None;
    let token = issuer.mint_with_header("rsa-1", &header, &issuer.claims("a", AUD));
    check(&auth, &token).await.expect("accepted without crit");
}

#[tokio::test]
async fn a_rotated_in_key_is_picked_up_within_about_a_second() {
    let issuer = TestIssuer::start().await;
    // The default interval, as `serve` uses it unless told otherwise.
    let auth = authenticator(&issuer, AuthConfig::default()).await;
    assert_eq!(
        AuthConfig::default().jwks_refetch_min_interval,
        Duration::from_secs(1)
    );
    issuer.rotate(TestKey::rsa("rsa-2", Algorithm::RS256));
    let rotated_at = Instant::now();
    let token = issuer.mint("rsa-2", &issuer.claims("a", AUD));
    loop {
        match check(&auth, &token).await {
            Ok(_) => break,
            Err(AuthError::UnknownKey(_)) if rotated_at.elapsed() < Duration::from_secs(3) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "new key not picked up after {:?}: {e}",
                rotated_at.elapsed()
            ),
        }
    }
    assert!(
        rotated_at.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        rotated_at.elapsed()
    );
}

#[tokio::test]
async fn random_kids_cause_at_most_a_couple_of_fetches() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, AuthConfig::default()).await;
    // Let the startup fetch age past the interval, so the flood is allowed one refetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stray = TestKey::ec("stray", Algorithm::ES256);
    let flood: Vec<_> = (0..50)
        .map(|i| {
            let mut header = stray.header();
            header.kid = Some(format!("random-{i}-{}", uuid::Uuid::new_v4()));
            let token = stray.sign(&header, &issuer.claims("mallory", AUD));
            let auth = auth.clone();
            tokio::spawn(async move { check(&auth, &token).await })
        })
        .collect();
    for request in flood {
        let result = request.await.expect("task");
        assert!(
            matches!(result, Err(AuthError::UnknownKey(_))),
            "{result:?}"
        );
    }
    let fetches = issuer.jwks_fetch_count() - 1;
    assert!(
        (1..=2).contains(&fetches),
        "50 random kids caused {fetches} JWKS fetches"
    );
}

#[tokio::test]
async fn cached_verifications_end_when_the_token_expires() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(
        &issuer,
        AuthConfig {
            leeway_secs: 0,
            ..AuthConfig::default()
        },
    )
    .await;
    let exp = jsonwebtoken::get_current_timestamp() + 2;
    let mut claims = issuer.claims("a", AUD);
    claims["exp"] = json!(exp);
    let token = issuer.mint("rsa-1", &claims);
    check(&auth, &token).await.expect("valid now");
    check(&auth, &token).await.expect("valid from the cache");
    while jsonwebtoken::get_current_timestamp() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = check(&auth, &token)
        .await
        .expect_err("the cache must not outlive exp");
    assert!(err.to_string().contains("expired"), "{err}");
}
