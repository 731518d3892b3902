//! A local OIDC issuer for tests: serves a discovery document and a JWKS over HTTP on
//! `127.0.0.1:<random port>`, and mints tokens with arbitrary headers and claims.
//!
//! It is also a minimal OpenID Provider for the console's sign-in: `/authorize` signs in
//! whoever [`TestIssuer::sign_in_as`] names without a login page and redirects back with a
//! one-time code; `/token` redeems the code for an ID token, checking the client, the
//! redirect URI and the PKCE verifier against the challenge (S256 only, and required), as a
//! real provider does. [`TestIssuer::patch_id_tokens`] bends the ID tokens it issues (a
//! wrong `nonce` or `aud`) to show that the console refuses them.
//!
//! Unit tests in `auth` and integration tests in `tests/` use it to exercise the real discovery
//! and JWKS path without network access. Keys can be added and removed while the issuer runs, to
//! test rotation. It is compiled into the library (it only uses crates the server already needs)
//! but must never be used outside tests; setup failures panic, as test fixtures do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _,
};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::IssuerConfig;

/// A signing key of the test issuer.
pub struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    public_key: Vec<u8>,
}

impl TestKey {
    /// A fresh RSA-2048 key used with `alg` (RS256/384/512 or PS256/384/512).
    pub fn rsa(kid: &str, alg: Algorithm) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA key");
        let pkcs8 = pair.as_der().expect("encode RSA key");
        let pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("load RSA key");
        let public_key = pair
            .public_key()
            .as_der()
            .expect("encode RSA public key")
            .as_ref()
            .to_vec();
        Self::new(kid, alg, encoding, public_key)
    }

    /// A fresh EC key: P-256 for `ES256`, P-384 for `ES384`.
    pub fn ec(kid: &str, alg: Algorithm) -> Self {
        let curve = match alg {
            Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let pair = EcdsaKeyPair::generate(curve).expect("generate EC key");
        let pkcs8 = pair.to_pkcs8v1().expect("encode EC key");
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let public_key = pair.public_key().as_ref().to_vec();
        Self::new(kid, alg, encoding, public_key)
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519(kid: &str) -> Self {
        let pair = Ed25519KeyPair::generate().expect("generate Ed25519 key");
        let pkcs8 = pair.to_pkcs8v1().expect("encode Ed25519 key");
        let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
        let public_key = pair.public_key().as_ref().to_vec();
        Self::new(kid, Algorithm::EdDSA, encoding, public_key)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, public_key: Vec<u8>) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            public_key,
        }
    }

    /// Publishes the JWK without `alg`, so the verifier must derive it from the key type.
    pub fn without_alg(mut self) -> Self {
        self.jwk.common.key_algorithm = None;
        self
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK as published.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Public key bytes an attacker could know: SubjectPublicKeyInfo DER for RSA, the raw point
    /// for EC and Ed25519. Used for HMAC-with-public-key confusion tests.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.public_key
    }

    /// Signs `claims` under `header` exactly as given (the header's `alg` must suit the key).
    pub fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign test token")
    }

    /// The header this key normally signs with: its `alg` and `kid`, typed as an access token.
    pub fn header(&self) -> Header {
        let mut header = access_token_header(self.alg);
        header.kid = Some(self.kid.clone());
        header
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A header for `alg` typed as an RFC 9068 access token (`typ: at+jwt`), as a conforming IdP
/// signs access tokens; `jsonwebtoken`'s `Header::new` says `typ: JWT`, which is what ID tokens
/// carry and what the authenticator refuses by default.
pub fn access_token_header(alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some(super::ACCESS_TOKEN_TYPE.to_owned());
    header
}

/// Builds an unsigned `alg: none` token (header and payload, empty signature).
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// What `/authorize` granted, redeemed once at `/token`.
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    claims: Value,
}

struct IssuerState {
    issuer: String,
    /// Registered clients and their secrets (`None`: a public client).
    clients: HashMap<String, Option<String>>,
    /// Who `/authorize` signs in (claims added to the ID token), `None`: refuse with
    /// `access_denied`.
    login: Option<Value>,
    codes: HashMap<String, Grant>,
    /// Merged into every ID token's claims last.
    id_token_patch: Value,
    /// Every key ever added, so tests can still sign with a key after it is unpublished.
    keys: HashMap<String, Arc<TestKey>>,
    /// Kids currently served in the JWKS, in order.
    published: Vec<String>,
    jwks_fetches: usize,
}

type Shared = Arc<Mutex<IssuerState>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, IssuerState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running test issuer; the server stops when this is dropped.
pub struct TestIssuer {
    issuer: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    /// Starts with two published keys: `rsa-1` (RS256) and `ec-1` (ES256).
    pub async fn start() -> Self {
        Self::start_with_keys(vec![
            TestKey::rsa("rsa-1", Algorithm::RS256),
            TestKey::ec("ec-1", Algorithm::ES256),
        ])
        .await
    }

    /// Starts serving exactly `keys`.
    pub async fn start_with_keys(keys: Vec<TestKey>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test issuer");
        let addr = listener.local_addr().expect("test issuer address");
        let issuer = format!("http://{addr}");
        let state: Shared = Arc::new(Mutex::new(IssuerState {
            issuer: issuer.clone(),
            keys: HashMap::new(),
            published: Vec::new(),
            jwks_fetches: 0,
            clients: HashMap::new(),
            login: None,
            codes: HashMap::new(),
            id_token_patch: json!({}),
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let this = Self {
            issuer,
            state,
            server,
        };
        for key in keys {
            this.add_key(key);
        }
        this
    }

    /// The issuer URL, which is also the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Configuration trusting this issuer for `audience`, groups read from `groups_claim`.
    pub fn config(&self, audience: &str, groups_claim: &str) -> IssuerConfig {
        IssuerConfig {
            issuer: self.issuer.clone(),
            audiences: vec![audience.to_owned()],
            groups_claim: groups_claim.to_owned(),
        }
    }

    /// Adds and publishes a key.
    pub fn add_key(&self, key: TestKey) {
        let mut state = lock(&self.state);
        let kid = key.kid.clone();
        state.keys.insert(kid.clone(), Arc::new(key));
        state.published.retain(|k| *k != kid);
        state.published.push(kid);
    }

    /// Stops publishing a key (it can still sign, to test that its tokens are refused).
    pub fn remove_key(&self, kid: &str) {
        lock(&self.state).published.retain(|k| k != kid);
    }

    /// Key rotation: publishes `key` and unpublishes every other key.
    pub fn rotate(&self, key: TestKey) {
        let kid = key.kid.clone();
        self.add_key(key);
        lock(&self.state).published.retain(|k| *k == kid);
    }

    /// A key added earlier (published or not).
    pub fn key(&self, kid: &str) -> Arc<TestKey> {
        lock(&self.state)
            .keys
            .get(kid)
            .cloned()
            .unwrap_or_else(|| panic!("test issuer has no key {kid:?}"))
    }

    /// How many times the JWKS has been served.
    pub fn jwks_fetch_count(&self) -> usize {
        lock(&self.state).jwks_fetches
    }

    /// Valid claims for `sub` and `aud`: this `iss`, `iat`/`nbf` now, `exp` in 5 minutes.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        })
    }

    /// Signs `claims` with key `kid` under its normal header (`alg` and `kid`).
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        let key = self.key(kid);
        key.sign(&key.header(), claims)
    }

    /// Signs `claims` with key `kid` under an arbitrary `header`.
    pub fn mint_with_header(&self, kid: &str, header: &Header, claims: &Value) -> String {
        self.key(kid).sign(header, claims)
    }
}

impl TestIssuer {
    /// Registers a client of the provider; `secret: None` makes it public (PKCE alone).
    pub fn register_client(&self, client_id: &str, secret: Option<&str>) {
        lock(&self.state)
            .clients
            .insert(client_id.to_owned(), secret.map(str::to_owned));
    }

    /// From now on `/authorize` signs in `sub` with `claims` (name, groups, ...) added to
    /// the ID token.
    pub fn sign_in_as(&self, sub: &str, claims: Value) {
        let mut claims = claims;
        claims["sub"] = json!(sub);
        lock(&self.state).login = Some(claims);
    }

    /// From now on `/authorize` refuses (`error=access_denied`).
    pub fn refuse_sign_in(&self) {
        lock(&self.state).login = None;
    }

    /// Claims merged into every ID token issued from now on (`{"nonce": "x"}`, `{"aud": "y"}`).
    pub fn patch_id_tokens(&self, patch: Value) {
        lock(&self.state).id_token_patch = patch;
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(state): State<Shared>) -> Json<Value> {
    let issuer = lock(&state).issuer.clone();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
}

async fn jwks(State(state): State<Shared>) -> Json<Value> {
    let mut state = lock(&state);
    state.jwks_fetches += 1;
    let keys: Vec<Value> = state
        .published
        .iter()
        .filter_map(|kid| state.keys.get(kid))
        .filter_map(|key| serde_json::to_value(&key.jwk).ok())
        .collect();
    Json(json!({ "keys": keys }))
}

#[derive(serde::Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn bad_request(error: &str, description: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn authorize(
    State(state): State<Shared>,
    axum::extract::Query(p): axum::extract::Query<AuthorizeParams>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut s = lock(&state);
    let client_id = p.client_id.unwrap_or_default();
    if !s.clients.contains_key(&client_id) {
        return bad_request("invalid_client", "unknown client");
    }
    let Some(Ok(mut back)) = p.redirect_uri.as_deref().map(url::Url::parse) else {
        return bad_request("invalid_request", "redirect_uri");
    };
    if p.response_type.as_deref() != Some("code") {
        return bad_request("unsupported_response_type", "code only");
    }
    // PKCE is required, and only S256.
    let challenge = match (p.code_challenge, p.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if !c.is_empty() => c,
        _ => return bad_request("invalid_request", "PKCE with S256 is required"),
    };
    let state_param = p.state.unwrap_or_default();
    match s.login.clone() {
        None => {
            back.query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_description", "the user said no")
                .append_pair("state", &state_param);
        }
        Some(claims) => {
            let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
            s.codes.insert(
                code.clone(),
                Grant {
                    client_id,
                    redirect_uri: back.to_string(),
                    code_challenge: challenge,
                    nonce: p.nonce,
                    claims,
                },
            );
            back.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &state_param);
        }
    }
    axum::response::Redirect::to(back.as_str()).into_response()
}

async fn token(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use sha2::Digest as _;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    // Client authentication: HTTP Basic (form-encoded parts), or client_id in the form.
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, Some(dec(secret)?)))
        });
    let (client_id, secret) =
        basic.unwrap_or_else(|| (field("client_id"), form.get("client_secret").cloned()));
    let mut s = lock(&state);
    match s.clients.get(&client_id) {
        Some(expected) if *expected == secret => {}
        _ => return bad_request("invalid_client", "client authentication failed"),
    }
    if field("grant_type") != "authorization_code" {
        return bad_request("unsupported_grant_type", "authorization_code only");
    }
    let Some(grant) = s.codes.remove(&field("code")) else {
        return bad_request("invalid_grant", "unknown or used code");
    };
    if grant.client_id != client_id || grant.redirect_uri != field("redirect_uri") {
        return bad_request(
            "invalid_grant",
            "code was issued to another client or redirect",
        );
    }
    let verifier = field("code_verifier");
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if verifier.is_empty() || challenge != grant.code_challenge {
        return bad_request("invalid_grant", "PKCE verification failed");
    }
    let Some(key) = s.published.first().and_then(|kid| s.keys.get(kid)).cloned() else {
        return bad_request("server_error", "no signing key");
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({
        "iss": s.issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 300,
    });
    if let Some(nonce) = grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    for source in [&grant.claims, &s.id_token_patch] {
        if let Value::Object(extra) = source {
            for (k, v) in extra {
                claims[k] = v.clone();
            }
        }
    }
    // An ID token is typed JWT, not at+jwt.
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    let id_token = key.sign(&header, &claims);
    Json(json!({
        "access_token": "opaque-test-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}
