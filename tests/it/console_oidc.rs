//! Console sign-in through an OpenID Provider (#19): the authorization code flow with PKCE,
//! end to end over HTTP against the in-process test provider (`auth::test_issuer`: real
//! discovery, JWKS, `/authorize` and `/token`, checking the PKCE verifier), on both backends.
//! The browser suite (scripts/suites/console.sh) runs the same flow against the npm
//! `oidc-provider` with its login and consent pages.
//!
//! What could go wrong, and is checked: the state, the signed pending-sign-in cookie, the
//! verifier (a code redeemed with another sign-in's verifier), the ID token's nonce and
//! audience, the provider's own refusal, open redirects through `next`, and cookie flags.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};
use model_ledger::auth::test_issuer::TestIssuer;

const CLIENT_ID: &str = "model-ledger-console";
const SECRET: &str = "s3cret-never-shown";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers).iter().find_map(|c| {
        let (k, v) = c.split(';').next()?.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}

fn location(headers: &HeaderMap) -> String {
    headers[LOCATION].to_str().expect("ascii").to_string()
}

fn query_param(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A provider with the console registered as a confidential client, and a release manager.
async fn provider() -> TestIssuer {
    let op = TestIssuer::start().await;
    op.register_client(CLIENT_ID, Some(SECRET));
    op.sign_in_as(
        "ada",
        json!({"name": "Ada Lovelace", "groups": ["ml-release-managers", "ml-readers"]}),
    );
    op
}

/// A server trusting `op` for API tokens and console sign-in; no dev auth.
async fn console_app(
    backend: Backend,
    op: &TestIssuer,
    external: &str,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write secret");
    let secret_file = secret_file.display().to_string();
    let app = spawn_app_with(
        backend,
        &[
            "--oidc-issuer",
            op.issuer(),
            "--console-oidc-issuer",
            op.issuer(),
            "--console-oidc-client-id",
            CLIENT_ID,
            "--console-oidc-client-secret-file",
            &secret_file,
            "--console-external-url",
            external,
        ],
    )
    .await;
    (app, dir)
}

/// One sign-in as a browser runs it, up to (not including) the callback.
struct Started {
    authorize_url: String,
    cookie: String,
}

async fn start(app: &TestApp, next: &str) -> Started {
    let r = browser()
        .get(format!(
            "{}/signin/oidc?next={}",
            app.url,
            crate::helpers::enc(next)
        ))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    Started {
        authorize_url: location(r.headers()),
        cookie: cookie_value(r.headers(), "ml_oidc").expect("pending cookie"),
    }
}

/// The provider's answer to the authorization request: the callback URL it redirects to.
async fn authorize(started: &Started) -> String {
    let r = browser()
        .get(&started.authorize_url)
        .send()
        .await
        .expect("authorize");
    assert!(r.status().is_redirection(), "{}", r.status());
    location(r.headers())
}

async fn callback(
    app: &TestApp,
    callback_url: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, HeaderMap) {
    let path = callback_url
        .strip_prefix(&app.url)
        .unwrap_or_else(|| panic!("{callback_url} is not on {}", app.url));
    let mut request = browser().get(format!("{}{path}", app.url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("ml_oidc={cookie}"));
    }
    let r = request.send().await.expect("callback");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, r.text().await.expect("body"), headers)
}

/// `url` with query parameter `key` set to `value`.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

fn assert_refused(result: &(StatusCode, String, HeaderMap), status: StatusCode, code: &str) {
    let (got, html, headers) = result;
    assert_eq!(*got, status, "{html}");
    assert!(html.contains(code), "{code} expected: {html}");
    assert!(!html.contains(SECRET), "{html}");
    assert!(
        cookie_value(headers, "ml_session").is_none(),
        "no session: {headers:?}"
    );
    // The pending sign-in is spent, whatever the outcome.
    assert!(
        set_cookies(headers)
            .iter()
            .any(|c| c.starts_with("ml_oidc=;") && c.contains("Max-Age=0")),
        "{headers:?}"
    );
}

both_backends!(
    a_code_flow_with_pkce_signs_in_with_the_providers_identity_and_groups,
    |backend: Backend| async move {
        let op = provider().await;
        let (app, _secret) = console_app(backend, &op, "{url}").await;

        // The sign-in page offers the provider, and no dev sign-in.
        let page = browser()
            .get(format!("{}/signin", app.url))
            .send()
            .await
            .expect("signin");
        let html = page.text().await.expect("html");
        assert!(
            html.contains(&format!("Sign in with {}", op.issuer())),
            "{html}"
        );
        assert!(!html.contains("Development sign-in"), "{html}");
        let dev = browser()
            .post(format!("{}/signin/dev", app.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("csrf=x&subject=mallory")
            .send()
            .await
            .expect("dev");
        assert_eq!(dev.status(), StatusCode::BAD_REQUEST);

        // The authorization request: code flow, this client, S256 challenge, state and nonce.
        let started = start(&app, "/models?q=fraud").await;
        let auth = &started.authorize_url;
        assert!(
            auth.starts_with(&format!("{}/authorize?", op.issuer())),
            "{auth}"
        );
        assert_eq!(query_param(auth, "response_type").as_deref(), Some("code"));
        assert_eq!(query_param(auth, "client_id").as_deref(), Some(CLIENT_ID));
        assert_eq!(
            query_param(auth, "redirect_uri"),
            Some(format!("{}/signin/oidc/callback", app.url))
        );
        assert_eq!(
            query_param(auth, "scope").as_deref(),
            Some("openid profile email")
        );
        assert_eq!(
            query_param(auth, "code_challenge_method").as_deref(),
            Some("S256")
        );
        assert_eq!(
            query_param(auth, "code_challenge").map(|c| c.len()),
            Some(43)
        );
        let state = query_param(auth, "state").expect("state");
        let nonce = query_param(auth, "nonce").expect("nonce");
        assert!(state.len() >= 43 && nonce.len() >= 43 && state != nonce);
        assert!(!auth.contains(SECRET));
        // Neither the state nor the verifier is readable in the cookie, and it is flagged.
        let r = browser()
            .get(format!("{}/signin/oidc", app.url))
            .send()
            .await
            .expect("start");
        let flags = set_cookies(r.headers()).join(" | ");
        assert!(
            flags.contains("HttpOnly")
                && flags.contains("SameSite=Lax")
                && flags.contains("Path=/signin/oidc"),
            "{flags}"
        );
        assert!(!flags.contains("Secure"), "plain http: {flags}");

        // The provider sends the browser back; the callback signs it in and lands on `next`.
        let back = authorize(&started).await;
        assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
        let result = callback(&app, &back, Some(&started.cookie)).await;
        let (status, html, headers) = &result;
        assert_eq!(*status, StatusCode::SEE_OTHER, "{html}");
        assert_eq!(location(headers), "/models?q=fraud");
        let session = cookie_value(headers, "ml_session").expect("a session");
        assert!(
            set_cookies(headers)
                .iter()
                .any(|c| c.starts_with("ml_oidc=;"))
        );

        // The pages show who signed in, with the provider's groups, and the policies use them.
        let models = browser()
            .get(format!("{}/models", app.url))
            .header("cookie", format!("ml_session={session}"))
            .send()
            .await
            .expect("models");
        assert_eq!(models.status(), StatusCode::OK);
        let html = models.text().await.expect("html");
        assert!(html.contains("Ada Lovelace"), "{html}");
        assert!(html.contains("ml-release-managers"), "{html}");
        assert!(!html.contains(SECRET), "{html}");

        // The code was for one use: the same callback again redeems nothing.
        let replay = callback(&app, &back, Some(&started.cookie)).await;
        assert_refused(&replay, StatusCode::BAD_GATEWAY, "OIDC_EXCHANGE_FAILED");
        assert!(replay.1.contains("invalid_grant"), "{}", replay.1);
    }
);

both_backends!(
    a_wrong_state_a_forged_cookie_or_another_sign_ins_verifier_is_refused,
    |backend: Backend| async move {
        let op = provider().await;
        let (app, _secret) = console_app(backend, &op, "{url}").await;

        let started = start(&app, "/models").await;
        let back = authorize(&started).await;
        // Another state than this browser's.
        let wrong = with_param(&back, "state", "A".repeat(43).as_str());
        assert_refused(
            &callback(&app, &wrong, Some(&started.cookie)).await,
            StatusCode::BAD_REQUEST,
            "OIDC_STATE_INVALID",
        );
        // No pending cookie at all (a callback this browser did not start).
        assert_refused(
            &callback(&app, &back, None).await,
            StatusCode::BAD_REQUEST,
            "OIDC_STATE_INVALID",
        );
        // A cookie altered by one character fails its HMAC.
        let mut forged = started.cookie.clone().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_refused(
            &callback(&app, &back, Some(&forged)).await,
            StatusCode::BAD_REQUEST,
            "OIDC_STATE_INVALID",
        );
        // The code is still unredeemed: the right state and cookie sign in.
        let ok = callback(&app, &back, Some(&started.cookie)).await;
        assert_eq!(ok.0, StatusCode::SEE_OTHER, "{}", ok.1);

        // Code injection: a code from sign-in A, delivered into sign-in B (B's state and
        // cookie). The console redeems it with B's verifier, which the provider refuses.
        let a = start(&app, "/models").await;
        let a_back = authorize(&a).await;
        let b = start(&app, "/models").await;
        let b_back = authorize(&b).await;
        let injected = with_param(
            &b_back,
            "code",
            &query_param(&a_back, "code").expect("code"),
        );
        let refused = callback(&app, &injected, Some(&b.cookie)).await;
        assert_refused(&refused, StatusCode::BAD_GATEWAY, "OIDC_EXCHANGE_FAILED");
        assert!(
            refused.1.contains("PKCE verification failed"),
            "{}",
            refused.1
        );
        // And the provider refuses a redemption without any verifier.
        let c = start(&app, "/models").await;
        let code = query_param(&authorize(&c).await, "code").expect("code");
        let r = browser()
            .post(format!("{}/token", op.issuer()))
            .basic_auth(CLIENT_ID, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}",
                crate::helpers::enc(&format!("{}/signin/oidc/callback", app.url))
            ))
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.expect("body").contains("PKCE"));
    }
);

both_backends!(
    id_tokens_for_another_sign_in_or_client_and_provider_refusals_are_refused,
    |backend: Backend| async move {
        let op = provider().await;
        let (app, _secret) = console_app(backend, &op, "{url}").await;
        for (patch, words) in [
            (json!({"nonce": "a-nonce-from-another-sign-in"}), "nonce"),
            (json!({"aud": "some-other-client"}), "audience"),
            (json!({"aud": [CLIENT_ID, "other"], "azp": "other"}), "azp"),
            (json!({"iss": "https://impostor.example"}), "issuer"),
        ] {
            op.patch_id_tokens(patch.clone());
            let started = start(&app, "/models").await;
            let back = authorize(&started).await;
            let refused = callback(&app, &back, Some(&started.cookie)).await;
            assert_refused(&refused, StatusCode::UNAUTHORIZED, "OIDC_TOKEN_INVALID");
            assert!(refused.1.contains(words), "{patch}: {}", refused.1);
        }
        op.patch_id_tokens(json!({}));

        // The provider says no: its error, on a console error page, and no session.
        op.refuse_sign_in();
        let started = start(&app, "/models").await;
        let back = authorize(&started).await;
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("access_denied")
        );
        let refused = callback(&app, &back, Some(&started.cookie)).await;
        assert_refused(&refused, StatusCode::UNAUTHORIZED, "OIDC_PROVIDER_ERROR");
        assert!(refused.1.contains("access_denied"), "{}", refused.1);
    }
);

both_backends!(
    a_sign_in_returns_only_to_pages_of_this_console,
    |backend: Backend| async move {
        let op = provider().await;
        let (app, _secret) = console_app(backend, &op, "{url}").await;
        for (next, landing) in [
            ("https://evil.example/steal", "/models"),
            ("//evil.example/steal", "/models"),
            ("/\\evil.example", "/models"),
            ("/signin/oidc", "/models"),
            ("/approvals", "/approvals"),
        ] {
            let started = start(&app, next).await;
            let back = authorize(&started).await;
            let (status, html, headers) = callback(&app, &back, Some(&started.cookie)).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{next}: {html}");
            assert_eq!(location(&headers), landing, "{next}");
        }
        // A page visited signed out is where the sign-in returns to.
        let r = browser()
            .get(format!("{}/approvals", app.url))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(r.headers()), "/signin?next=%2Fapprovals");
        let html = browser()
            .get(format!("{}/signin?next=%2Fapprovals", app.url))
            .send()
            .await
            .expect("signin")
            .text()
            .await
            .expect("html");
        assert!(
            html.contains("href=\"/signin/oidc?next=%2Fapprovals\""),
            "{html}"
        );
        // The sign-in page does not pass a foreign `next` on either.
        let html = browser()
            .get(format!(
                "{}/signin?next={}",
                app.url,
                crate::helpers::enc("https://evil.example")
            ))
            .send()
            .await
            .expect("signin")
            .text()
            .await
            .expect("html");
        assert!(html.contains("/signin/oidc?next=%2Fmodels"), "{html}");
        assert!(!html.contains("evil.example"), "{html}");
    }
);

both_backends!(
    cookies_are_secure_behind_an_https_external_url,
    |backend: Backend| async move {
        let op = provider().await;
        let (app, _secret) = console_app(backend, &op, "https://registry.example.com").await;
        let r = browser()
            .get(format!("{}/signin/oidc", app.url))
            .send()
            .await
            .expect("start");
        let auth = location(r.headers());
        assert_eq!(
            query_param(&auth, "redirect_uri").as_deref(),
            Some("https://registry.example.com/signin/oidc/callback")
        );
        let flags = set_cookies(r.headers()).join(" | ");
        assert!(
            flags.contains("ml_oidc=") && flags.contains("; Secure"),
            "{flags}"
        );
    }
);

#[tokio::test]
async fn a_console_issuer_that_the_api_does_not_trust_is_refused_at_start_up() {
    use clap::Parser as _;
    use model_ledger::config::{Cli, Commands};
    let op = provider().await;
    let other = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let data = dir.path().display().to_string();
    let build = |extra: Vec<&str>| {
        let mut argv = vec![
            "model-ledger",
            "serve",
            "--database-url",
            &db,
            "--data-dir",
            &data,
            "--oidc-issuer",
            op.issuer(),
        ];
        argv.extend(extra);
        let Commands::Serve(args) = Cli::parse_from(argv).command else {
            panic!("serve")
        };
        async move {
            model_ledger::app::build(&args)
                .await
                .err()
                .map(|e| e.to_string())
        }
    };
    let err = build(vec![
        "--console-oidc-issuer",
        other.issuer(),
        "--console-oidc-client-id",
        CLIENT_ID,
        "--console-external-url",
        "http://127.0.0.1:1",
    ])
    .await
    .expect("refused");
    assert!(err.contains("is not an --oidc-issuer"), "{err}");
    let err = build(vec![
        "--console-oidc-issuer",
        op.issuer(),
        "--console-external-url",
        "http://127.0.0.1:1",
    ])
    .await
    .expect("refused");
    assert!(err.contains("--console-oidc-client-id"), "{err}");
    let err = build(vec![
        "--console-oidc-issuer",
        op.issuer(),
        "--console-oidc-client-id",
        CLIENT_ID,
    ])
    .await
    .expect("refused");
    assert!(err.contains("--console-external-url"), "{err}");
    let err = build(vec![
        "--console-oidc-issuer",
        op.issuer(),
        "--console-oidc-client-id",
        CLIENT_ID,
        "--console-external-url",
        "http://127.0.0.1:1",
        "--console-oidc-scopes",
        "profile email",
    ])
    .await
    .expect("refused");
    assert!(err.contains("openid"), "{err}");
}
