//! A local OIDC issuer for tests: serves a discovery document and a JWKS over HTTP on
//! `127.0.0.1:<random port>`, and mints tokens with arbitrary headers and claims.
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

struct IssuerState {
    issuer: String,
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
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
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
