//! The web console (#19) at the HTML level: every page's status and security headers, that
//! hostile names, descriptions and tags arrive as text, that each role is offered (and
//! allowed) only what the policies allow, that a form without its CSRF token changes
//! nothing, and the session cookie's flags and lifetime — on both backends.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, enc, spawn_app, spawn_app_on};

const HOSTILE_NAME: &str = "fraud<script>alert(1)</script>";
const HOSTILE_DESCRIPTION: &str = "<img src=x onerror=alert(2)> and <script>alert(3)</script>";

/// A browser that keeps no cookies on its own and follows no redirects, so each test sees
/// exactly what the server answered.
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

fn cookie_value(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies.iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// A signed-in console browser: its session cookie and CSRF token.
struct Console {
    url: String,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn sign_in(url: &str, subject: &str, groups: &[&str]) -> Console {
        let client = browser();
        let form = client
            .get(format!("{url}/signin"))
            .send()
            .await
            .expect("signin page");
        assert_eq!(form.status(), StatusCode::OK);
        let signin_cookie =
            cookie_value(&set_cookies(form.headers()), "ml_signin").expect("signin cookie");
        let html = form.text().await.expect("html");
        assert!(html.contains("Development sign-in"), "{html}");
        let mut body = format!("csrf={}&subject={}", csrf_in(&html), enc(subject));
        for g in groups {
            body.push_str(&format!("&group={}", enc(g)));
        }
        let signed = client
            .post(format!("{url}/signin/dev"))
            .header("cookie", format!("ml_signin={signin_cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("dev sign-in");
        assert_eq!(signed.status(), StatusCode::SEE_OTHER);
        let cookie =
            cookie_value(&set_cookies(signed.headers()), "ml_session").expect("session cookie");
        let mut console = Console {
            url: url.to_string(),
            client,
            cookie,
            csrf: String::new(),
        };
        let models = console.get("/models").await;
        assert_eq!(models.0, StatusCode::OK, "{}", models.1);
        console.csrf = csrf_in(&models.1);
        console
    }

    async fn get(&self, path: &str) -> (StatusCode, String, HeaderMap) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("ml_session={}", self.cookie))
            .send()
            .await
            .expect("get");
        let status = r.status();
        let headers = r.headers().clone();
        (status, r.text().await.expect("body"), headers)
    }

    async fn post(&self, path: &str, form: &str) -> (StatusCode, String, HeaderMap) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .header("cookie", format!("ml_session={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .expect("post");
        let status = r.status();
        let headers = r.headers().clone();
        (status, r.text().await.expect("body"), headers)
    }
}

fn assert_console_headers(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .expect("ascii");
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

/// A model with hostile strings and one verified version registered by CI (so a release
/// manager may promote it).
async fn hostile_model(app: &TestApp) -> u64 {
    let admin = app.admin();
    let created = app
        .post(
            "/api/v1/models",
            &admin,
            json!({
                "name": HOSTILE_NAME,
                "description": HOSTILE_DESCRIPTION,
                "tags": {"team": "<b onmouseover=alert(4)>risk</b>"}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let ci = app.token("ci", &["ml-ci"]);
    let version = app
        .upload_version_with_metrics(&ci, &enc(HOSTILE_NAME), json!({"auc": 0.93}))
        .await;
    let verified = app
        .post(
            &format!(
                "/api/v1/models/{}/versions/{version}/verify",
                enc(HOSTILE_NAME)
            ),
            &ci,
            json!({}),
        )
        .await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    version
}

fn assert_no_raw_markup(html: &str, what: &str) {
    for raw in ["<script>alert", "<img src=x", "<b onmouseover"] {
        assert!(!html.contains(raw), "{what} contains raw {raw}: {html}");
    }
}

both_backends!(
    every_page_renders_escaped_with_security_headers,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let version = hostile_model(&app).await;
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let name = enc(HOSTILE_NAME);
        for path in [
            "/models".to_string(),
            format!("/models?q={}", enc("<script>")),
            format!("/models/{name}"),
            format!("/models/{name}/versions/{version}"),
        ] {
            let (status, html, headers) = reader.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {html}");
            assert_console_headers(&headers, &path);
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            assert_no_raw_markup(&html, &path);
        }
        let (_, models, _) = reader.get("/models").await;
        assert!(
            models.contains("fraud&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{models}"
        );
        let (_, model, _) = reader.get(&format!("/models/{name}")).await;
        assert!(
            model.contains("&#60;img src=x onerror=alert(2)&#62;"),
            "{model}"
        );
        assert!(
            model.contains("team=&#60;b onmouseover=alert(4)&#62;"),
            "{model}"
        );
        let (_, page, _) = reader
            .get(&format!("/models/{name}/versions/{version}"))
            .await;
        assert!(
            page.contains("model.pkl"),
            "the manifest lists the file: {page}"
        );
        assert!(
            page.contains("ArtifactVerified"),
            "verification history: {page}"
        );

        // Assets are embedded and carry the same headers; nothing else is served under them.
        for asset in ["console.css", "console.js", "htmx.min.js"] {
            let r = browser()
                .get(format!("{}/console/assets/{asset}", app.url))
                .send()
                .await
                .expect("asset");
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
            assert_console_headers(r.headers(), asset);
        }
        let missing = browser()
            .get(format!("{}/console/assets/..%2Fmod.rs", app.url))
            .send()
            .await
            .expect("asset");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);

        // Without a session every page sends the browser to sign in; the API is unchanged.
        let anonymous = browser()
            .get(format!("{}/models/{name}", app.url))
            .send()
            .await
            .expect("page");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
        // ...and back to the page after (a local path, query-encoded).
        assert_eq!(
            anonymous.headers()[LOCATION].to_str().expect("ascii"),
            format!("/signin?next={}", enc(&format!("/models/{name}")))
        );
        let root = browser()
            .get(format!("{}/", app.url))
            .send()
            .await
            .expect("root");
        assert_eq!(root.status(), StatusCode::SEE_OTHER);
        assert_eq!(root.headers()[LOCATION], "/models");
        let api = app.get("/api/v1/no-such-thing", &app.admin()).await;
        assert_eq!((api.status, api.code()), (404, "ENDPOINT_NOT_FOUND"));
        // A model that does not exist is the API's 404, as a page.
        let (status, html, _) = reader.get("/models/no-such-model").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
        assert!(html.contains("RESOURCE_DOES_NOT_EXIST"), "{html}");
    }
);

both_backends!(
    each_role_is_offered_and_allowed_only_what_policies_allow,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let version = hostile_model(&app).await;
        let name = enc(HOSTILE_NAME);
        let page_path = format!("/models/{name}/versions/{version}");
        let stage_path = format!("/models/{name}/versions/{version}/stage");

        // A reader sees the version, a "No" with the deciding policy, and no buttons.
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let (_, html, _) = reader.get(&page_path).await;
        assert!(html.contains("panel deny"), "{html}");
        assert!(
            html.contains("production-only-release-managers"),
            "the denial names its policy: {html}"
        );
        assert!(!html.contains("Move to Production"), "{html}");
        let (_, model, _) = reader.get(&format!("/models/{name}")).await;
        assert!(
            !model.contains("alias-form"),
            "a reader may not set aliases: {model}"
        );
        // Sending the form anyway is refused by the same policy, with its id, and writes nothing.
        let before = app.event_count().await;
        let (status, denied, _) = reader
            .post(
                &stage_path,
                &format!("csrf={}&stage=Production", reader.csrf),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
        assert!(denied.contains("PERMISSION_DENIED"), "{denied}");
        assert!(
            denied.contains("production-only-release-managers"),
            "{denied}"
        );
        assert_eq!(app.event_count().await, before);
        // ...and the refusal is in the audit's denial log, as an API refusal would be.
        // (Denials are written in the background, coalesced; give the writer a moment.)
        let mut logged = false;
        for _ in 0..50 {
            let denials = app.get("/api/v1/audit/reports/denials", &app.admin()).await;
            assert_eq!(denials.status, 200, "{:?}", denials.body);
            if denials.body.to_string().contains("rita") {
                logged = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(logged, "the console refusal is in the denial log");

        // A release manager is offered the promotion, and it is the API's transition.
        let rm = Console::sign_in(&app.url, "rm", &["ml-release-managers"]).await;
        let (_, html, _) = rm.get(&page_path).await;
        assert!(html.contains("panel allow"), "{html}");
        assert!(html.contains("Move to Production"), "{html}");
        let (status, _, headers) = rm
            .post(&stage_path, &format!("csrf={}&stage=Production", rm.csrf))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], page_path.as_str());
        let v = app
            .get(
                &format!("/api/v1/models/{name}/versions/{version}"),
                &app.admin(),
            )
            .await;
        assert_eq!(v.body["stage"], "Production", "{:?}", v.body);
        let events = app
            .get(&format!("/api/v1/models/{name}/history"), &app.admin())
            .await;
        let text = events.body.to_string();
        assert!(
            text.contains("\"rm\""),
            "the event names the console user: {text}"
        );
        let (_, model, _) = rm.get(&format!("/models/{name}")).await;
        assert!(model.contains("badge Production"), "{model}");
    }
);

both_backends!(
    forms_without_the_csrf_token_change_nothing,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let version = hostile_model(&app).await;
        let name = enc(HOSTILE_NAME);
        let rm = Console::sign_in(&app.url, "rm", &["ml-release-managers", "ml-admins"]).await;
        let before = app.event_count().await;
        for form in [
            "stage=Production".to_string(),
            "csrf=&stage=Production".to_string(),
            format!("csrf={}x&stage=Production", rm.csrf),
        ] {
            let (status, html, _) = rm
                .post(&format!("/models/{name}/versions/{version}/stage"), &form)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{form}: {html}");
            assert!(html.contains("CSRF_TOKEN_INVALID"), "{html}");
            let (status, _, _) = rm
                .post(
                    &format!("/models/{name}/aliases"),
                    &format!("{form}&alias=champion&version={version}"),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
        }
        assert_eq!(app.event_count().await, before, "no event was written");
        // The token may also come as the htmx header.
        let r = rm
            .client
            .post(format!("{}/models/{name}/aliases", app.url))
            .header("cookie", format!("ml_session={}", rm.cookie))
            .header("x-csrf-token", &rm.csrf)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("alias=champion&version={version}"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let model = app
            .get(&format!("/api/v1/models/{name}"), &app.admin())
            .await;
        assert_eq!(
            model.body["aliases"]["champion"], version,
            "{:?}",
            model.body
        );

        // Dev sign-in without the sign-in cookie's token (login CSRF) is refused.
        let r = browser()
            .post(format!("{}/signin/dev", app.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("csrf=forged&subject=mallory&group=ml-admins")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(cookie_value(&set_cookies(r.headers()), "ml_session").is_none());
    }
);

both_backends!(
    sessions_are_shared_flagged_and_end_at_sign_out,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        // The cookie's flags: HttpOnly, SameSite=Lax, not Secure over plain http (and a forged
        // X-Forwarded-Proto from an untrusted peer does not change that).
        let client = browser();
        let form = client
            .get(format!("{}/signin", app.url))
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .expect("signin");
        let cookies = set_cookies(form.headers());
        assert!(
            cookies[0].contains("HttpOnly") && cookies[0].contains("SameSite=Lax"),
            "{cookies:?}"
        );
        assert!(!cookies[0].contains("Secure"), "{cookies:?}");
        let console = Console::sign_in(&app.url, "alice", &["ml-readers"]).await;
        assert_eq!(console.cookie.len(), 43, "32 random bytes, base64url");

        // A second process on the same database knows the session (a balancer may send the
        // next page there).
        let second = spawn_app_on(backend, Some(&app.database_url), &[]).await;
        let on_second = Console {
            url: second.url.clone(),
            client: browser(),
            cookie: console.cookie.clone(),
            csrf: console.csrf.clone(),
        };
        let (status, html, _) = on_second.get("/models").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("alice"), "{html}");

        // Sign-out needs the token, then ends the session everywhere.
        let (status, _, _) = console.post("/signout", "csrf=wrong").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, headers) = console
            .post("/signout", &format!("csrf={}", console.csrf))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            set_cookies(&headers)
                .iter()
                .any(|c| c.starts_with("ml_session=;") && c.contains("Max-Age=0"))
        );
        for c in [&console, &on_second] {
            let (status, _, headers) = c.get("/models").await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert_eq!(headers[LOCATION], "/signin");
        }
        // A made-up cookie is no session.
        let forged = Console {
            cookie: "A".repeat(43),
            ..on_second
        };
        let (status, _, _) = forged.get("/models").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
);

both_backends!(
    a_request_is_approved_by_a_second_user_and_history_shows_it,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let version = hostile_model(&app).await;
        let name = enc(HOSTILE_NAME);
        let requester = Console::sign_in(&app.url, "rm1", &["ml-release-managers"]).await;
        let (status, html, _) = requester
            .post(
                &format!("/models/{name}/versions/{version}/requests"),
                &format!(
                    "csrf={}&stage=Production&comment={}",
                    requester.csrf,
                    enc("<script>alert(5)</script> please")
                ),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");

        // A reader sees the request but may not act on it.
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let (status, inbox, headers) = reader.get("/approvals").await;
        assert_eq!(status, StatusCode::OK, "{inbox}");
        assert_console_headers(&headers, "/approvals");
        assert_no_raw_markup(&inbox, "/approvals");
        assert!(
            inbox.contains("&#60;script&#62;alert(5)&#60;/script&#62; please"),
            "{inbox}"
        );
        assert!(!inbox.contains("/approve\""), "{inbox}");
        // The requester may not approve their own request (separation of duties).
        let (_, own, _) = requester.get("/approvals").await;
        assert!(!own.contains("/approve\""), "{own}");

        // A second release manager approves it; the approval executes the promotion.
        let approver = Console::sign_in(&app.url, "rm2", &["ml-release-managers"]).await;
        let (_, inbox, _) = approver.get("/approvals").await;
        let marker = format!("/approvals/{name}/");
        let start = inbox.find(&marker).expect("an approve form") + marker.len();
        let id = inbox[start..]
            .split('/')
            .next()
            .expect("request id")
            .to_string();
        assert!(
            inbox.contains(&format!("/approvals/{name}/{id}/approve\"")),
            "{inbox}"
        );
        let (status, html, _) = approver
            .post(
                &format!("/approvals/{name}/{id}/approve"),
                &format!("csrf={}&comment=looks+good", approver.csrf),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let v = app
            .get(
                &format!("/api/v1/models/{name}/versions/{version}"),
                &app.admin(),
            )
            .await;
        assert_eq!(v.body["stage"], "Production", "{:?}", v.body);
        let (_, inbox, _) = approver.get("/approvals").await;
        assert!(inbox.contains("No open requests."), "{inbox}");

        // The history shows the decision: who, what and the policies that allowed it.
        let (status, history, headers) = reader.get(&format!("/models/{name}/history")).await;
        assert_eq!(status, StatusCode::OK, "{history}");
        assert_console_headers(&headers, "history");
        assert_no_raw_markup(&history, "history");
        assert!(history.contains("RequestApproved"), "{history}");
        assert!(history.contains("StageTransitioned"), "{history}");
        assert!(history.contains("rm2"), "{history}");
        assert!(
            history.contains("release-managers-release") || history.contains("class=\"policy-id\""),
            "{history}"
        );
        // Filtered by type, only that type is listed.
        let (_, filtered, _) = reader
            .get(&format!("/models/{name}/history?type=TransitionRequested"))
            .await;
        assert!(filtered.contains("<td>TransitionRequested"), "{filtered}");
        assert!(!filtered.contains("<td>RequestApproved"), "{filtered}");
        let (status, _, _) = reader
            .get(&format!("/models/{name}/history?type=NoSuchType"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // As of a day before anything existed, nothing held a stage; today, v1 holds Production.
        let (_, past, _) = reader
            .get(&format!("/models/{name}/history?as_of=2000-01-01"))
            .await;
        assert!(past.contains("The model had no versions then."), "{past}");
        let (_, now, _) = reader.get(&format!("/models/{name}/history")).await;
        let stages = &now[now.find("id=\"stages\"").expect("stages")..];
        assert!(stages.contains("badge Production"), "{stages}");
        let (status, _, _) = reader
            .get(&format!("/models/{name}/history?as_of=yesterday-ish"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
);

both_backends!(
    the_audit_page_verifies_the_chain_and_exports_the_log,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        hostile_model(&app).await;
        let auditor = Console::sign_in(&app.url, "audra", &["ml-admins"]).await;
        let (status, html, headers) = auditor.get("/audit").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert_console_headers(&headers, "/audit");
        assert!(html.contains("Verify the chain now"), "{html}");
        let (_, verified, _) = auditor.get("/audit?verify=1").await;
        let events = app.event_count().await;
        assert!(
            verified.contains(&format!("Verified: {events} events")),
            "{verified}"
        );
        let r = auditor
            .client
            .get(format!("{}/audit/export.ndjson", app.url))
            .header("cookie", format!("ml_session={}", auditor.cookie))
            .send()
            .await
            .expect("export");
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.text().await.expect("body");
        assert_eq!(body.lines().count() as i64, events, "{body}");
        let (status, csv, _) = auditor.get("/audit/reports/promotions.csv").await;
        assert_eq!(status, StatusCode::OK, "{csv}");
        let (status, _, _) = auditor.get("/audit/reports/nope.csv").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Without ReadAudit (readers have only ReadModel) the page is the policies' refusal,
        // and so is every download.
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let (status, html, _) = reader.get("/audit").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert!(html.contains("PERMISSION_DENIED"), "{html}");
        for path in [
            "/audit/export.ndjson",
            "/audit/export.csv",
            "/audit/reports/denials.csv",
        ] {
            let (status, _, _) = reader.get(path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
    }
);

both_backends!(
    the_live_stream_announces_commits_to_signed_in_readers,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let mut stream = reader
            .client
            .get(format!("{}/console/events", app.url))
            .header("cookie", format!("ml_session={}", reader.cookie))
            .send()
            .await
            .expect("stream");
        assert_eq!(stream.status(), StatusCode::OK);
        assert!(
            stream.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/event-stream")
        );
        app.create_model("live-model").await;
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.contains("event: changed") {
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .expect("a notice within 10 s")
                .expect("read")
                .expect("open stream");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        // Only that something changed: no registry data rides on the stream.
        assert!(!seen.contains("live-model"), "{seen}");
        // Without a session there is no stream.
        let anonymous = browser()
            .get(format!("{}/console/events", app.url))
            .send()
            .await
            .expect("stream");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    }
);

both_backends!(
    models_show_their_last_change_and_audit_is_offered_only_to_auditors,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        // Created by an admin, last changed by CI (its upload and verification).
        hostile_model(&app).await;
        // Created by the admin and then tagged by CI.
        app.create_model("quiet-model").await;
        let tagged = app
            .put(
                "/api/v1/models/quiet-model/tags/owner",
                &app.token("rachel", &["ml-ci"]),
                json!({"value": "growth"}),
            )
            .await;
        assert_eq!(tagged.status, 200, "{:?}", tagged.body);
        let reader = Console::sign_in(&app.url, "rita", &["ml-readers"]).await;
        let (status, html, _) = reader.get("/models").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let row = |name: &str| -> String {
            let start = html
                .find(name)
                .unwrap_or_else(|| panic!("{name} row: {html}"));
            html[start..]
                .split("</tr>")
                .next()
                .expect("row")
                .to_string()
        };
        let hostile = row("fraud&#60;script&#62;");
        assert!(
            hostile.contains("class=\"changed-by\">ci<"),
            "last changed by CI, not its creator: {hostile}"
        );
        assert!(hostile.contains("ArtifactVerified"), "{hostile}");
        let quiet = row("quiet-model");
        assert!(quiet.contains("class=\"changed-by\">rachel<"), "{quiet}");
        assert!(quiet.contains("ModelTagSet"), "{quiet}");
        assert!(quiet.contains(" UTC"), "{quiet}");

        // A reader may not read the audit: no Audit link on any page. An admin has it.
        for path in ["/models", "/models/quiet-model", "/approvals"] {
            let (status, page, _) = reader.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            assert!(!page.contains("href=\"/audit\""), "{path}: {page}");
            assert!(page.contains("href=\"/approvals\""), "{path}");
        }
        let admin = Console::sign_in(&app.url, "audra", &["ml-admins"]).await;
        let (_, page, _) = admin.get("/models").await;
        assert!(page.contains("href=\"/audit\""), "{page}");
    }
);
