//! Test harness: spawn the server per test, mint tokens, call the API.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use model_ledger::config::{Cli, Commands};
use model_ledger::store::SharedStore;
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The PostgreSQL server tests use (trust auth on the machine's service).
pub fn pg_admin_url() -> String {
    std::env::var("MODEL_LEDGER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a fresh PostgreSQL database and returns its URL. Panics if PostgreSQL is down.
pub async fn fresh_pg_database() -> String {
    let admin_url = pg_admin_url();
    let name = format!("ml_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect_with_url(&admin_url).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database on {admin_url}: {e}"));
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url);
    format!("{base}/{name}")
}

trait ConnectWithUrl: Sized {
    async fn connect_with_url(url: &str) -> Self;
}

impl ConnectWithUrl for sqlx::PgConnection {
    async fn connect_with_url(url: &str) -> Self {
        use sqlx::Connection;
        sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is required for the tests and is not reachable: {e}")
        })
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub url: String,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub store: SharedStore,
    shutdown: Option<oneshot::Sender<()>>,
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Extra `serve` flags for a test (e.g. a body limit).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra_args: &[&str]) -> TestApp {
    spawn_app_on(backend, None, extra_args).await
}

/// Like [`spawn_app_with`], but on an existing database when `database_url` is given (several
/// server processes sharing one database).
pub async fn spawn_app_on(
    backend: Backend,
    database_url: Option<&str>,
    extra_args: &[&str],
) -> TestApp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let database_url = match (database_url, backend) {
        (Some(url), _) => url.to_string(),
        (None, Backend::Postgres) => fresh_pg_database().await,
        (None, Backend::Sqlite) => {
            format!("sqlite://{}", data_dir.path().join("test.db").display())
        }
    };
    let policies = repo_path("policies");
    let custom_policies = extra_args.contains(&"--policies");
    // Bound first, so a flag may name the server's own URL as `{url}` (the console's
    // external URL, which the OIDC redirect URI is built from).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut argv: Vec<String> = vec![
        "model-ledger".into(),
        "serve".into(),
        "--database-url".into(),
        database_url.clone(),
        "--data-dir".into(),
        data_dir.path().display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--db-max-connections".into(),
        "8".into(),
    ];
    // Dev auth unless the test trusts a real issuer (the two cannot be combined).
    if !extra_args.contains(&"--oidc-issuer") {
        argv.push("--dev-auth".into());
    }
    if !custom_policies {
        argv.extend(["--policies".to_string(), policies.display().to_string()]);
    }
    argv.extend(extra_args.iter().map(|s| s.replace("{url}", &url)));
    let Commands::Serve(args) = Cli::parse_from(argv).command else {
        panic!("not a serve command")
    };
    let built = model_ledger::app::build(&args).await.expect("app builds");
    let store = built.store.clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = model_ledger::app::serve(listener, built.state, async {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        backend,
        url,
        database_url,
        data_dir,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        store,
        shutdown: Some(tx),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response's status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// A dev token for `sub` in `groups`, accepted by this server.
    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        model_ledger::auth::dev::mint_token(
            self.data_dir.path(),
            sub,
            &groups,
            Duration::from_secs(3600),
            model_ledger::auth::PrincipalKind::User,
        )
        .expect("mint token")
    }

    /// An administrator (can do everything but promote to Production).
    pub fn admin(&self) -> String {
        self.token("admin", &["ml-admins"])
    }

    /// A release manager (may promote to Production).
    pub fn release_manager(&self) -> String {
        self.token("rm", &["ml-release-managers"])
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        into_reply(resp).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.request(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Raw body with a content type, for malformed-input tests.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let resp = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        into_reply(resp).await
    }

    /// Creates a model as an admin; panics unless it succeeds.
    pub async fn create_model(&self, name: &str) -> Value {
        let r = self
            .post(
                "/api/v1/models",
                &self.admin(),
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(r.status, 201, "create model {name}: {:?}", r.body);
        r.body
    }

    /// Creates a version as an admin; returns its number.
    pub async fn create_version(&self, name: &str) -> u64 {
        let path = format!("/api/v1/models/{}/versions", enc(name));
        let r = self
            .post(
                &path,
                &self.admin(),
                serde_json::json!({ "source": format!("s3://bucket/{name}") }),
            )
            .await;
        assert_eq!(r.status, 201, "create version of {name}: {:?}", r.body);
        r.body["version"].as_u64().expect("version number")
    }

    /// Uploads one small file as a new version of `model` with `metrics`, as `token`.
    pub async fn upload_version_with_metrics(
        &self,
        token: &str,
        model: &str,
        metrics: Value,
    ) -> u64 {
        let start = self
            .post(
                &format!("/api/v1/models/{model}/uploads"),
                token,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(start.status, 201, "{:?}", start.body);
        let id = start.body["upload_id"]
            .as_str()
            .expect("upload id")
            .to_string();
        let put = self
            .send_raw(
                reqwest::Method::PUT,
                &format!("/api/v1/models/{model}/uploads/{id}/files/model.pkl"),
                token,
                "application/octet-stream",
                b"weights".to_vec(),
            )
            .await;
        assert_eq!(put.status, 201, "{:?}", put.body);
        let commit = self
            .post(
                &format!("/api/v1/models/{model}/uploads/{id}/commit"),
                token,
                serde_json::json!({"metrics": metrics}),
            )
            .await;
        assert_eq!(commit.status, 201, "{:?}", commit.body);
        commit.body["version"].as_u64().expect("version number")
    }

    /// Runs the `model-ledger` binary against this server as `token`.
    pub async fn cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_model-ledger"))
            .args(args)
            .env("MODEL_LEDGER_URL", &self.url)
            .env("MODEL_LEDGER_TOKEN", token)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run model-ledger")
    }

    /// Number of events in the log.
    pub async fn event_count(&self) -> i64 {
        self.store.head().await.expect("head").0
    }

    pub fn store(&self) -> Arc<dyn model_ledger::store::Store> {
        self.store.clone()
    }
}

async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        headers,
    }
}

/// Percent-encodes a path segment.
pub fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Defines one test per backend: `both_backends!(name, |app_backend| async { ... })`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::helpers::Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::helpers::Backend::Sqlite).await
            }
        }
    };
}

/// A policy directory (shipped schema + one permit-everything policy), for tests about storage
/// and concurrency rather than authorization.
pub fn permissive_policies(dir: &std::path::Path) -> PathBuf {
    let policies = dir.join("permissive-policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::copy(
        repo_path("policies/model_ledger.cedarschema"),
        policies.join("model_ledger.cedarschema"),
    )
    .expect("copy schema");
    std::fs::write(
        policies.join("allow_all.cedar"),
        "// Tests of storage behaviour: every action is allowed.\n@id(\"test-allow-all\")\npermit(principal, action, resource);\n",
    )
    .expect("write policy");
    policies
}

/// A server whose policies allow everything.
pub async fn spawn_permissive(backend: Backend) -> TestApp {
    let holder = tempfile::tempdir().expect("tempdir");
    let policies = permissive_policies(holder.path());
    let app = spawn_app_with(
        backend,
        &["--policies", policies.to_str().expect("utf-8 path")],
    )
    .await;
    // The policies were loaded at start-up; the directory may go.
    drop(holder);
    app
}
