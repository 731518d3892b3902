//! Tests for `auth` against a real HTTP issuer ([`TestIssuer`]): one test per rejection rule,
//! key rotation, claim mapping and dev auth.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::test_issuer::{TestIssuer, TestKey, access_token_header, unsigned_token};
use super::*;

const AUD: &str = "model-ledger-api";

async fn authenticator(
    issuer: &TestIssuer,
    groups_claim: &str,
    refetch: Duration,
) -> Authenticator {
    Authenticator::new(AuthConfig {
        issuers: vec![issuer.config(AUD, groups_claim)],
        jwks_refetch_min_interval: refetch,
        ..AuthConfig::default()
    })
    .await
    .expect("authenticator starts")
}

async fn setup() -> (TestIssuer, Authenticator) {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, "groups", Duration::ZERO).await;
    (issuer, auth)
}

async fn check(auth: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    auth.authenticate(Some(&format!("Bearer {token}"))).await
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[track_caller]
fn assert_invalid(result: Result<Principal, AuthError>, fragment: &str) {
    match result {
        Err(AuthError::InvalidToken(message)) => {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}")
        }
        other => panic!("expected InvalidToken({fragment}), got {other:?}"),
    }
}

#[tokio::test]
async fn valid_rsa_token_maps_claims() {
    let (issuer, auth) = setup().await;
    let claims = issuer.claims("alice-id", AUD);
    let claims = with(claims, "name", json!("Alice"));
    let claims = with(claims, "email", json!("alice@example.com"));
    let claims = with(claims, "groups", json!(["ml-eng", "approvers", 7]));
    let principal = check(&auth, &issuer.mint("rsa-1", &claims))
        .await
        .expect("accepted");
    assert_eq!(
        principal,
        Principal {
            subject: "alice-id".into(),
            issuer: issuer.issuer().into(),
            display_name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
            groups: vec!["ml-eng".into(), "approvers".into()],
            kind: PrincipalKind::User,
            expires_at: claims["exp"].as_i64(),
        }
    );
    let actor = principal.actor();
    assert_eq!(
        (
            actor.subject.as_str(),
            actor.issuer.as_str(),
            actor.display_name.as_deref()
        ),
        ("alice-id", issuer.issuer(), Some("Alice"))
    );
}

#[tokio::test]
async fn valid_ec_token_and_preferred_username_fallback() {
    let (issuer, auth) = setup().await;
    let claims = with(
        issuer.claims("bob", AUD),
        "preferred_username",
        json!("bob.b"),
    );
    let principal = check(&auth, &issuer.mint("ec-1", &claims))
        .await
        .expect("accepted");
    assert_eq!(principal.display_name.as_deref(), Some("bob.b"));
    assert!(principal.groups.is_empty());
}

#[tokio::test]
async fn keys_without_alg_are_pinned_by_key_type() {
    let issuer = TestIssuer::start_with_keys(vec![
        TestKey::rsa("rsa", Algorithm::RS256).without_alg(),
        TestKey::ec("p256", Algorithm::ES256).without_alg(),
        TestKey::ec("p384", Algorithm::ES384).without_alg(),
        TestKey::ed25519("ed").without_alg(),
        TestKey::rsa("pss", Algorithm::PS256),
    ])
    .await;
    let auth = authenticator(&issuer, "groups", Duration::ZERO).await;
    for kid in ["rsa", "p256", "p384", "ed", "pss"] {
        let token = issuer.mint(kid, &issuer.claims("svc", AUD));
        check(&auth, &token)
            .await
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    // An RSA key without `alg` means RS256 only: a PS256 signature by the same key is refused.
    let mut header = issuer.key("rsa").header();
    header.alg = Algorithm::PS256;
    let token = issuer.mint_with_header("rsa", &header, &issuer.claims("svc", AUD));
    assert_invalid(check(&auth, &token).await, "not allowed");
}

#[tokio::test]
async fn header_problems() {
    let (_issuer, auth) = setup().await;
    assert!(matches!(
        auth.authenticate(None).await,
        Err(AuthError::MissingToken)
    ));
    assert!(matches!(
        auth.authenticate(Some("")).await,
        Err(AuthError::MissingToken)
    ));
    assert!(matches!(
        auth.authenticate(Some("Bearer ")).await,
        Err(AuthError::MissingToken)
    ));
    let basic = auth.authenticate(Some("Basic dXNlcjpwYXNz")).await;
    assert!(
        matches!(&basic, Err(AuthError::Malformed(m)) if m.contains("Basic")),
        "{basic:?}"
    );
    let junk = auth.authenticate(Some("Bearer not-a-jwt")).await;
    assert!(matches!(junk, Err(AuthError::Malformed(_))), "{junk:?}");
    let e = auth.authenticate(None).await.expect_err("missing");
    assert_eq!(e.code(), "UNAUTHENTICATED");
    assert!(e.is_client_error());
}

#[tokio::test]
async fn lowercase_bearer_scheme_is_accepted() {
    let (issuer, auth) = setup().await;
    let token = issuer.mint("rsa-1", &issuer.claims("a", AUD));
    auth.authenticate(Some(&format!("bearer {token}")))
        .await
        .expect("accepted");
}

#[tokio::test]
async fn rejects_alg_none() {
    let (issuer, auth) = setup().await;
    let token = unsigned_token(&issuer.claims("mallory", AUD));
    let err = check(&auth, &token).await.expect_err("unsigned");
    assert_eq!(err.code(), "INVALID_TOKEN");
    assert_invalid(Err(err), "alg none");
}

#[tokio::test]
async fn rejects_hmac_signed_with_rsa_public_key() {
    let (issuer, auth) = setup().await;
    let rsa = issuer.key("rsa-1");
    let mut header = access_token_header(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &issuer.claims("mallory", AUD),
        &EncodingKey::from_secret(rsa.public_key_bytes()),
    )
    .expect("sign");
    assert_invalid(check(&auth, &forged).await, "not allowed");
    // Also with the JWK's modulus as the secret, and with no kid at all.
    header.kid = None;
    let forged = jsonwebtoken::encode(
        &header,
        &issuer.claims("mallory", AUD),
        &EncodingKey::from_secret(serde_json::to_string(rsa.jwk()).expect("jwk").as_bytes()),
    )
    .expect("sign");
    assert!(check(&auth, &forged).await.is_err());
}

#[tokio::test]
async fn rejects_missing_iss() {
    let (issuer, auth) = setup().await;
    let token = issuer.mint("rsa-1", &without(issuer.claims("a", AUD), "iss"));
    assert_invalid(check(&auth, &token).await, "iss");
}

#[tokio::test]
async fn rejects_wrong_iss_and_unknown_issuer() {
    let (issuer, auth) = setup().await;
    // Same host with a trailing slash is a different issuer string, so it is not trusted.
    let wrong = format!("{}/", issuer.issuer());
    let token = issuer.mint("rsa-1", &with(issuer.claims("a", AUD), "iss", json!(wrong)));
    let err = check(&auth, &token).await.expect_err("wrong iss");
    assert!(
        matches!(&err, AuthError::UnknownIssuer(i) if *i == wrong),
        "{err:?}"
    );
    assert_eq!(err.code(), "UNKNOWN_ISSUER");

    // A token from a completely different issuer, signed with that issuer's own key.
    let other = TestIssuer::start().await;
    let token = other.mint("rsa-1", &other.claims("a", AUD));
    assert!(matches!(
        check(&auth, &token).await,
        Err(AuthError::UnknownIssuer(_))
    ));
    let token = issuer.mint("rsa-1", &with(issuer.claims("a", AUD), "iss", json!(42)));
    assert_invalid(check(&auth, &token).await, "iss");
}

#[tokio::test]
async fn issuer_tokens_signed_by_another_issuers_key_fail() {
    // Two trusted issuers with the same kid names: A's key must not verify a token naming B.
    let a = TestIssuer::start().await;
    let b = TestIssuer::start().await;
    let auth = Authenticator::new(AuthConfig {
        issuers: vec![a.config(AUD, "groups"), b.config(AUD, "groups")],
        jwks_refetch_min_interval: Duration::ZERO,
        ..AuthConfig::default()
    })
    .await
    .expect("starts");
    let token = a.mint("rsa-1", &b.claims("a", AUD));
    assert_invalid(check(&auth, &token).await, "signature");
    check(&auth, &b.mint("rsa-1", &b.claims("b", AUD)))
        .await
        .expect("b accepted");
    check(&auth, &a.mint("ec-1", &a.claims("a", AUD)))
        .await
        .expect("a accepted");
}

#[tokio::test]
async fn rejects_wrong_or_missing_aud() {
    let (issuer, auth) = setup().await;
    let token = issuer.mint("rsa-1", &issuer.claims("a", "another-app"));
    assert_invalid(check(&auth, &token).await, "audience");
    let token = issuer.mint("rsa-1", &without(issuer.claims("a", AUD), "aud"));
    assert_invalid(check(&auth, &token).await, "aud");
    // An array containing our audience is fine.
    let claims = with(issuer.claims("a", AUD), "aud", json!(["x", AUD]));
    check(&auth, &issuer.mint("rsa-1", &claims))
        .await
        .expect("accepted");
}

#[tokio::test]
async fn rejects_expired_with_leeway() {
    let (issuer, auth) = setup().await;
    let expired = with(issuer.claims("a", AUD), "exp", json!(now() - 120));
    assert_invalid(
        check(&auth, &issuer.mint("rsa-1", &expired)).await,
        "expired",
    );
    // Within the 30 s default leeway.
    let skewed = with(issuer.claims("a", AUD), "exp", json!(now() - 10));
    check(&auth, &issuer.mint("rsa-1", &skewed))
        .await
        .expect("within leeway");
    let missing = without(issuer.claims("a", AUD), "exp");
    assert_invalid(check(&auth, &issuer.mint("rsa-1", &missing)).await, "exp");
    // A string `exp` must not be treated as absent (CVE-2026-25537).
    let typed = with(issuer.claims("a", AUD), "exp", json!("99999999999"));
    assert_invalid(check(&auth, &issuer.mint("rsa-1", &typed)).await, "exp");
}

#[tokio::test]
async fn rejects_not_yet_valid_with_leeway() {
    let (issuer, auth) = setup().await;
    let future = with(issuer.claims("a", AUD), "nbf", json!(now() + 120));
    assert_invalid(
        check(&auth, &issuer.mint("rsa-1", &future)).await,
        "not valid yet",
    );
    let skewed = with(issuer.claims("a", AUD), "nbf", json!(now() + 10));
    check(&auth, &issuer.mint("rsa-1", &skewed))
        .await
        .expect("within leeway");
    let typed = with(issuer.claims("a", AUD), "nbf", json!("0"));
    assert_invalid(check(&auth, &issuer.mint("rsa-1", &typed)).await, "nbf");
}

#[tokio::test]
async fn rejects_tampered_tokens() {
    let (issuer, auth) = setup().await;
    for kid in ["rsa-1", "ec-1"] {
        let token = issuer.mint(kid, &issuer.claims("alice", AUD));
        let parts: Vec<&str> = token.split('.').collect();
        // Swap in a payload for another subject, keeping the original signature.
        let evil = issuer.mint(kid, &issuer.claims("admin", AUD));
        let evil_payload = evil.split('.').nth(1).expect("payload");
        let swapped = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
        assert_invalid(check(&auth, &swapped).await, "signature");
        // Flip the first character of the signature.
        let sig = parts[2];
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let broken = format!("{}.{}.{}{}", parts[0], parts[1], flipped, &sig[1..]);
        assert!(check(&auth, &broken).await.is_err(), "{kid}");
    }
}

#[tokio::test]
async fn key_rotation_without_restart() {
    let (issuer, auth) = setup().await;
    let old = issuer.mint("rsa-1", &issuer.claims("a", AUD));
    check(&auth, &old).await.expect("old key accepted");
    assert_eq!(issuer.jwks_fetch_count(), 1);

    issuer.rotate(TestKey::rsa("rsa-2", Algorithm::RS256));
    let new = issuer.mint("rsa-2", &issuer.claims("a", AUD));
    check(&auth, &new)
        .await
        .expect("new key accepted after refetch");
    assert_eq!(issuer.jwks_fetch_count(), 2);
    check(&auth, &new).await.expect("new key cached");
    assert_eq!(issuer.jwks_fetch_count(), 2, "known kid must not refetch");

    // The dropped key is gone from the refetched set.
    let err = check(&auth, &old).await.expect_err("dropped key");
    assert!(matches!(err, AuthError::UnknownKey(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_kid_after_refetch_is_rejected() {
    let (issuer, auth) = setup().await;
    let stray = TestKey::rsa("never-published", Algorithm::RS256);
    let token = stray.sign(&stray.header(), &issuer.claims("a", AUD));
    let err = check(&auth, &token).await.expect_err("unknown kid");
    assert!(
        matches!(&err, AuthError::UnknownKey(k) if k.contains("never-published")),
        "{err:?}"
    );
    assert_eq!(err.code(), "UNKNOWN_SIGNING_KEY");
    assert_eq!(issuer.jwks_fetch_count(), 2, "one refetch attempted");
}

#[tokio::test]
async fn refetch_is_rate_limited() {
    let issuer = TestIssuer::start().await;
    let auth = authenticator(&issuer, "groups", Duration::from_secs(3600)).await;
    issuer.add_key(TestKey::ec("ec-2", Algorithm::ES256));
    let token = issuer.mint("ec-2", &issuer.claims("a", AUD));
    for _ in 0..3 {
        assert!(matches!(
            check(&auth, &token).await,
            Err(AuthError::UnknownKey(_))
        ));
    }
    assert_eq!(issuer.jwks_fetch_count(), 1, "startup fetch only");
}

#[tokio::test]
async fn token_without_kid_needs_single_key() {
    let issuer = TestIssuer::start_with_keys(vec![TestKey::ec("only", Algorithm::ES256)]).await;
    let auth = authenticator(&issuer, "groups", Duration::ZERO).await;
    let header = access_token_header(Algorithm::ES256);
    let token = issuer.mint_with_header("only", &header, &issuer.claims("a", AUD));
    check(&auth, &token).await.expect("single key");

    let (issuer, auth) = setup().await;
    let token = issuer.mint_with_header(
        "rsa-1",
        &access_token_header(Algorithm::RS256),
        &issuer.claims("a", AUD),
    );
    assert!(matches!(
        check(&auth, &token).await,
        Err(AuthError::UnknownKey(_))
    ));
    assert_eq!(
        issuer.jwks_fetch_count(),
        1,
        "no refetch for kid-less tokens"
    );
}

#[tokio::test]
async fn groups_from_nested_and_namespaced_claims() {
    let issuer = TestIssuer::start().await;
    let keycloak = authenticator(&issuer, "realm_access.roles", Duration::ZERO).await;
    let claims = with(
        issuer.claims("a", AUD),
        "realm_access",
        json!({"roles": ["offline_access", "ml-admin"]}),
    );
    let p = check(&keycloak, &issuer.mint("rsa-1", &claims))
        .await
        .expect("ok");
    assert_eq!(p.groups, ["offline_access", "ml-admin"]);

    let auth0 = authenticator(&issuer, "https://ledger.example/groups", Duration::ZERO).await;
    let claims = with(
        issuer.claims("a", AUD),
        "https://ledger.example/groups",
        json!("data-sci"),
    );
    let p = check(&auth0, &issuer.mint("rsa-1", &claims))
        .await
        .expect("ok");
    assert_eq!(p.groups, ["data-sci"]);

    let roles = authenticator(&issuer, "roles", Duration::ZERO).await;
    let claims = with(issuer.claims("a", AUD), "roles", json!({"not": "a list"}));
    let p = check(&roles, &issuer.mint("rsa-1", &claims))
        .await
        .expect("ok");
    assert!(p.groups.is_empty());
}

#[tokio::test]
async fn service_account_rule() {
    let (issuer, auth) = setup().await;
    let kind = |claims: Value| {
        let token = issuer.mint("rsa-1", &claims);
        let auth = auth.clone();
        async move { check(&auth, &token).await.expect("accepted").kind }
    };
    let base = || issuer.claims("3f1c-client", AUD);
    let sa = PrincipalKind::ServiceAccount;
    assert_eq!(kind(with(base(), "idtyp", json!("app"))).await, sa, "Entra");
    assert_eq!(
        kind(with(base(), "gty", json!("client-credentials"))).await,
        sa,
        "Auth0"
    );
    let keycloak = with(base(), "preferred_username", json!("service-account-ci"));
    assert_eq!(kind(keycloak).await, sa, "Keycloak");
    assert_eq!(
        kind(with(base(), "azp", json!("3f1c-client"))).await,
        sa,
        "sub == azp"
    );
    assert_eq!(
        kind(with(base(), "client_id", json!("3f1c-client"))).await,
        sa,
        "Okta"
    );
    // A user logged in through a client: azp names the client, not the user.
    let user = with(base(), "azp", json!("web-ui"));
    let user = with(user, "preferred_username", json!("carol"));
    assert_eq!(kind(user).await, PrincipalKind::User);
    // The dev-only claim is not trusted from a real issuer.
    let spoof = with(base(), dev::KIND_CLAIM, json!("service_account"));
    assert_eq!(kind(spoof).await, PrincipalKind::User);
}

#[tokio::test]
async fn dev_tokens_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let groups = vec!["ml-eng".to_owned(), "approvers".to_owned()];
    let token = dev::mint_token(
        &data,
        "dev-alice",
        &groups,
        Duration::from_secs(600),
        PrincipalKind::User,
    )
    .expect("mint creates the key");
    let auth = Authenticator::new(AuthConfig {
        dev_auth_dir: Some(data.clone()),
        ..AuthConfig::default()
    })
    .await
    .expect("dev auth starts");
    let p = check(&auth, &token).await.expect("dev token accepted");
    assert_eq!(p.subject, "dev-alice");
    assert_eq!(p.issuer, dev::DEV_ISSUER);
    assert_eq!(p.groups, groups);
    assert_eq!(p.kind, PrincipalKind::User);

    let svc = dev::mint_token(
        &data,
        "ci-bot",
        &[],
        Duration::from_secs(60),
        PrincipalKind::ServiceAccount,
    )
    .expect("mint");
    assert_eq!(
        check(&auth, &svc).await.expect("ok").kind,
        PrincipalKind::ServiceAccount
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dev::key_path(&data))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The key persists: ensure_dev_key does not replace it.
    dev::ensure_dev_key(&data).expect("existing key loads");
    check(&auth, &token).await.expect("still valid");

    // A token from another data dir's key is refused.
    let other = dir.path().join("other");
    let foreign = dev::mint_token(
        &other,
        "dev-alice",
        &[],
        Duration::from_secs(60),
        PrincipalKind::User,
    )
    .expect("mint");
    assert!(matches!(
        check(&auth, &foreign).await,
        Err(AuthError::UnknownKey(_))
    ));

    // Expired dev tokens are refused like any other.
    let expired =
        dev::mint_token(&data, "x", &[], Duration::ZERO, PrincipalKind::User).expect("mint");
    let auth_strict = Authenticator::new(AuthConfig {
        dev_auth_dir: Some(data.clone()),
        leeway_secs: 0,
        ..AuthConfig::default()
    })
    .await
    .expect("starts");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_invalid(check(&auth_strict, &expired).await, "expired");

    assert!(matches!(
        dev::mint_token(&data, " ", &[], Duration::from_secs(1), PrincipalKind::User),
        Err(AuthError::Config(_))
    ));
}

#[tokio::test]
async fn dev_token_is_not_accepted_by_oidc_authenticator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dev::mint_token(
        dir.path(),
        "dev",
        &[],
        Duration::from_secs(60),
        PrincipalKind::User,
    )
    .expect("mint");
    let (_issuer, auth) = setup().await;
    assert!(matches!(
        check(&auth, &token).await,
        Err(AuthError::UnknownIssuer(_))
    ));
}

#[tokio::test]
async fn startup_configuration_errors() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let both = Authenticator::new(AuthConfig {
        issuers: vec![issuer.config(AUD, "groups")],
        dev_auth_dir: Some(dir.path().to_owned()),
        ..AuthConfig::default()
    })
    .await;
    assert!(
        matches!(&both, Err(AuthError::Config(_))),
        "{:?}",
        both.err()
    );

    let none = Authenticator::new(AuthConfig::default()).await;
    assert!(matches!(none, Err(AuthError::Config(_))));

    let mut no_aud = issuer.config(AUD, "groups");
    no_aud.audiences.clear();
    let r = Authenticator::new(AuthConfig {
        issuers: vec![no_aud],
        ..AuthConfig::default()
    })
    .await;
    assert!(matches!(r, Err(AuthError::Config(_))));

    let plain = IssuerConfig {
        issuer: "http://idp.example.com".into(),
        ..issuer.config(AUD, "groups")
    };
    let r = Authenticator::new(AuthConfig {
        issuers: vec![plain],
        ..AuthConfig::default()
    })
    .await;
    assert!(matches!(r, Err(AuthError::Config(m)) if m.contains("https")));
}

#[tokio::test]
async fn startup_discovery_errors() {
    // Nothing listens on the port of a dropped listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let dead = IssuerConfig {
        issuer: format!("http://{addr}"),
        audiences: vec![AUD.into()],
        groups_claim: "groups".into(),
    };
    let r = Authenticator::new(AuthConfig {
        issuers: vec![dead],
        ..AuthConfig::default()
    })
    .await;
    let err = r.expect_err("unreachable");
    assert!(matches!(err, AuthError::Discovery(_)), "{err:?}");
    assert_eq!(err.code(), "OIDC_DISCOVERY_FAILED");
    assert!(!err.is_client_error());

    // The discovery document names the issuer without the trailing slash: refused.
    let issuer = TestIssuer::start().await;
    let slash = IssuerConfig {
        issuer: format!("{}/", issuer.issuer()),
        ..issuer.config(AUD, "groups")
    };
    let r = Authenticator::new(AuthConfig {
        issuers: vec![slash],
        ..AuthConfig::default()
    })
    .await;
    assert!(matches!(r, Err(AuthError::Discovery(m)) if m.contains("names issuer")));

    // An issuer publishing only keys we refuse to use (none here) fails at startup.
    let empty = TestIssuer::start_with_keys(vec![]).await;
    let r = Authenticator::new(AuthConfig {
        issuers: vec![empty.config(AUD, "g")],
        ..AuthConfig::default()
    })
    .await;
    assert!(matches!(r, Err(AuthError::Discovery(m)) if m.contains("no usable")));
}
