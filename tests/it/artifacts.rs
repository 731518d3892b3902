//! Artifacts end to end: uploads, registration of existing files, download, verification,
//! tampering and repair, path safety, and uploads spread over processes or cut off mid-body.
//! The S3-compatible store (moto) is tested in `artifacts_s3.rs`, the push/pull/verify CLI in
//! `artifacts_cli.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use model_ledger::artifacts::manifest;
use model_ledger::domain::events::ManifestFile;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_on, spawn_app_with};

pub(crate) fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A few MLflow-like files, one spanning several multipart parts.
pub(crate) fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..(9 * 1024 * 1024 + 123))
        .map(|i| (i % 251) as u8)
        .collect();
    vec![
        ("MLmodel", b"flavors:\n  python_function: {}\n".to_vec()),
        ("conda.yaml", b"dependencies: [python=3.11]\n".to_vec()),
        ("data/model.pkl", big),
        ("requirements.txt", Vec::new()),
    ]
}

async fn start_upload(app: &TestApp, token: &str, model: &str) -> String {
    let r = app
        .post(&format!("/api/v1/models/{model}/uploads"), token, json!({}))
        .await;
    assert_eq!(r.status, 201, "start upload: {:?}", r.body);
    r.body["upload_id"].as_str().expect("upload id").to_string()
}

async fn put_bytes(app: &TestApp, path: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .send_raw(
            reqwest::Method::PUT,
            path,
            token,
            "application/octet-stream",
            body,
        )
        .await;
    (r.status, r.body)
}

/// Uploads `files` in one session and commits: returns the version's JSON.
pub(crate) async fn upload_version(
    app: &TestApp,
    token: &str,
    model: &str,
    files: &[(&str, Vec<u8>)],
) -> Value {
    let id = start_upload(app, token, model).await;
    for (path, bytes) in files {
        let (status, body) = put_bytes(
            app,
            &format!("/api/v1/models/{model}/uploads/{id}/files/{path}"),
            token,
            bytes.clone(),
        )
        .await;
        assert_eq!(status, 201, "upload {path}: {body:?}");
        assert_eq!(body["sha256"], sha(bytes));
        assert_eq!(body["size"], bytes.len() as u64);
    }
    let r = app
        .post(
            &format!("/api/v1/models/{model}/uploads/{id}/commit"),
            token,
            json!({"description": "uploaded"}),
        )
        .await;
    assert_eq!(r.status, 201, "commit: {:?}", r.body);
    r.body
}

pub(crate) fn expected_manifest(files: &[(&str, Vec<u8>)]) -> Vec<ManifestFile> {
    manifest::sorted(
        files
            .iter()
            .map(|(p, b)| ManifestFile {
                path: p.to_string(),
                size: b.len() as u64,
                sha256: sha(b),
            })
            .collect(),
    )
}

pub(crate) async fn verify(app: &TestApp, token: &str, model: &str, version: u64) -> Value {
    let r = app
        .post(
            &format!("/api/v1/models/{model}/versions/{version}/verify"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "verify: {:?}", r.body);
    r.body
}

pub(crate) async fn download(
    app: &TestApp,
    token: &str,
    model: &str,
    version: u64,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = app
        .client
        .get(format!(
            "{}/api/v1/models/{model}/versions/{version}/files/{path}",
            app.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

/// The local directory of a location in the app's default (local) store: locations there are
/// store-relative (`store://default/<key>`), never the server's absolute path.
pub(crate) fn local_dir(app: &TestApp, location: &str) -> PathBuf {
    let key = location
        .strip_prefix("store://default/")
        .unwrap_or_else(|| panic!("not a default-store location: {location}"));
    app.data_dir.path().join("artifacts").join(key)
}

both_backends!(
    local_upload_list_download_verify,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("churn").await;
        let files = model_files();
        let version = upload_version(&app, &admin, "churn", &files).await;
        assert_eq!(version["version"], 1);
        let expected = expected_manifest(&files);
        let artifact = &version["artifact"];
        assert_eq!(artifact["digest"], manifest::digest(&expected));
        assert_eq!(
            serde_json::from_value::<Vec<ManifestFile>>(artifact["files"].clone()).expect("files"),
            expected
        );
        assert_eq!(version["source"], artifact["location"]);
        let location = artifact["location"].as_str().unwrap_or("");
        assert!(
            location.starts_with("store://default/models/churn/"),
            "store-relative, not a server path: {location}"
        );

        let listing = app
            .get("/api/v1/models/churn/versions/1/files", &admin)
            .await;
        assert_eq!(listing.status, 200, "{:?}", listing.body);
        assert_eq!(
            listing.body["files"].as_array().map(Vec::len),
            Some(files.len())
        );
        assert_eq!(listing.body["artifact_verified"], false);

        for (path, bytes) in &files {
            let (status, headers, body) = download(&app, &admin, "churn", 1, path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(&body, bytes, "{path}");
            assert_eq!(headers["x-content-sha256"], sha(bytes).as_str());
            let b64 = {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
            };
            assert_eq!(headers["repr-digest"], format!("sha-256=:{b64}:").as_str());
        }
        let (status, _, _) = download(&app, &admin, "churn", 1, "not-there").await;
        assert_eq!(status, 404);

        let verified = verify(&app, &admin, "churn", 1).await;
        assert_eq!(verified["verified"], true, "{verified:?}");
        assert_eq!(verified["digest"], manifest::digest(&expected));
        let v = app.get("/api/v1/models/churn/versions/1", &admin).await;
        assert_eq!(v.body["artifact_verified"], true);

        // A single file is a session with one file.
        let single =
            upload_version(&app, &admin, "churn", &[("model.onnx", b"onnx".to_vec())]).await;
        assert_eq!(single["version"], 2);
        assert_eq!(
            single["artifact"]["files"].as_array().map(Vec::len),
            Some(1)
        );

        // A reader may download but not upload.
        let reader = app.token("rita", &["ml-readers"]);
        let (status, _, _) = download(&app, &reader, "churn", 2, "model.onnx").await;
        assert_eq!(status, 200);
        let r = app
            .post("/api/v1/models/churn/uploads", &reader, json!({}))
            .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
    }
);

both_backends!(
    register_existing_files_in_the_store,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("fraud").await;
        let root = app
            .data_dir
            .path()
            .canonicalize()
            .expect("canon")
            .join("artifacts/jobs/run-17");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("MLmodel"), b"m").expect("write");
        std::fs::write(root.join("sub/weights.bin"), vec![7u8; 70_000]).expect("write");
        let files = expected_manifest(&[
            ("MLmodel", b"m".to_vec()),
            ("sub/weights.bin", vec![7u8; 70_000]),
        ]);
        let digest = manifest::digest(&files);
        let location = url::Url::from_directory_path(&root)
            .expect("url")
            .as_str()
            .trim_end_matches('/')
            .to_string();

        let before = app.event_count().await;
        let wrong = app
        .post(
            "/api/v1/models/fraud/versions",
            &admin,
            json!({"source": "training-job-17", "artifact": {"location": location, "digest": "0".repeat(64)}}),
        )
        .await;
        assert_eq!(
            (wrong.status, wrong.code()),
            (400, "ARTIFACT_MISMATCH"),
            "{:?}",
            wrong.body
        );
        let missing_expectation = app
            .post(
                "/api/v1/models/fraud/versions",
                &admin,
                json!({"source": "x", "artifact": {"location": location}}),
            )
            .await;
        assert_eq!(missing_expectation.status, 400);
        assert_eq!(app.event_count().await, before);

        let ok = app
        .post(
            "/api/v1/models/fraud/versions",
            &admin,
            json!({"source": "training-job-17", "artifact": {"location": location, "digest": digest}}),
        )
        .await;
        assert_eq!(ok.status, 201, "{:?}", ok.body);
        assert_eq!(ok.body["artifact"]["digest"], digest);
        let with_files = app
        .post(
            "/api/v1/models/fraud/versions",
            &admin,
            json!({"source": "training-job-17", "artifact": {"location": location, "files": files}}),
        )
        .await;
        assert_eq!(with_files.status, 201, "{:?}", with_files.body);
        assert_eq!(verify(&app, &admin, "fraud", 1).await["verified"], true);
    }
);

both_backends!(
    tampering_fails_verification_and_blocks_production_until_repaired,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        let rm = app.release_manager();
        app.create_model("ranker").await;
        let files = model_files();
        let version = upload_version(&app, &admin, "ranker", &files).await;
        let dir = local_dir(
            &app,
            version["artifact"]["location"].as_str().expect("location"),
        );
        assert_eq!(verify(&app, &admin, "ranker", 1).await["verified"], true);

        // Overwrite one byte of one file and delete another.
        let pkl = dir.join("data/model.pkl");
        let mut bytes = std::fs::read(&pkl).expect("read");
        bytes[4096] ^= 0xff;
        std::fs::write(&pkl, &bytes).expect("tamper");
        std::fs::remove_file(dir.join("conda.yaml")).expect("delete");

        let failed = verify(&app, &admin, "ranker", 1).await;
        assert_eq!(failed["verified"], false);
        let failures = failed["failures"].as_array().expect("failures");
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert_eq!(failures[0]["path"], "conda.yaml");
        assert_eq!(failures[0]["reason"], "missing");
        assert_eq!(failures[0]["actual_sha256"], Value::Null);
        assert_eq!(failures[1]["path"], "data/model.pkl");
        assert_eq!(failures[1]["actual_sha256"], sha(&bytes));
        assert_eq!(failures[1]["expected_sha256"], sha(&files[2].1));
        let v = app.get("/api/v1/models/ranker/versions/1", &admin).await;
        assert_eq!(v.body["artifact_verified"], false);
        let history = app
            .get("/api/v1/models/ranker/history?order=asc", &admin)
            .await;
        let types: Vec<&str> = history.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["event_type"].as_str())
            .collect();
        assert_eq!(types.last(), Some(&"ArtifactVerificationFailed"));

        let denied = app
            .post(
                "/api/v1/models/ranker/versions/1/stage",
                &rm,
                json!({"stage": "Production"}),
            )
            .await;
        assert_eq!(denied.status, 403, "{:?}", denied.body);
        assert!(
            denied.body["policy_ids"]
                .to_string()
                .contains("production-requires-verified-artifact"),
            "{:?}",
            denied.body
        );

        // A repair must carry the registered bytes; anything else is refused and changes nothing.
        let (status, body) = put_bytes(
            &app,
            "/api/v1/models/ranker/versions/1/files/conda.yaml",
            &admin,
            b"other".to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{body:?}");
        assert!(!dir.join("conda.yaml").exists());
        let (status, body) = put_bytes(
            &app,
            "/api/v1/models/ranker/versions/1/files/new.txt",
            &admin,
            b"x".to_vec(),
        )
        .await;
        assert_eq!(status, 409, "{body:?}");
        for (path, original) in [("conda.yaml", &files[1].1), ("data/model.pkl", &files[2].1)] {
            let (status, body) = put_bytes(
                &app,
                &format!("/api/v1/models/ranker/versions/1/files/{path}"),
                &admin,
                original.clone(),
            )
            .await;
            assert_eq!(status, 200, "repair {path}: {body:?}");
        }
        assert_eq!(verify(&app, &admin, "ranker", 1).await["verified"], true);
        let promoted = app
            .post(
                "/api/v1/models/ranker/versions/1/stage",
                &rm,
                json!({"stage": "Production"}),
            )
            .await;
        assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    }
);

/// Sends a request with a path exactly as given (no client-side normalization of `..`).
async fn raw_put(app: &TestApp, path: &str, token: &str, body: &[u8]) -> u16 {
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

both_backends!(
    traversal_and_out_of_store_locations_are_refused,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("safe").await;
        let id = start_upload(&app, &admin, "safe").await;
        let before = app.event_count().await;
        for bad in [
            "../evil",
            "a/../../evil",
            "%2e%2e/evil",
            "%2E%2E/%2e%2e/evil",
            "a%5C..%5Cevil",
            "a%00b",
            "%2Fetc%2Fevil",
            "a//evil",
            "./evil",
            "dir/",
        ] {
            let status = raw_put(
                &app,
                &format!("/api/v1/models/safe/uploads/{id}/files/{bad}"),
                &admin,
                b"evil",
            )
            .await;
            assert_eq!(status, 400, "upload path {bad}");
            let status = raw_put(
                &app,
                &format!("/api/v1/models/safe/versions/1/files/{bad}"),
                &admin,
                b"evil",
            )
            .await;
            assert_eq!(status, 400, "repair path {bad}");
        }
        let data = app.data_dir.path();
        assert_eq!(
            count_files(&data.join("artifacts")),
            0,
            "nothing may be written"
        );
        assert!(!data.join("evil").exists() && !data.join("artifacts/evil").exists());
        // Nothing was uploaded, so the session cannot be committed.
        let commit = app
            .post(
                &format!("/api/v1/models/safe/uploads/{id}/commit"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(commit.status, 400, "{:?}", commit.body);

        let data_url =
            url::Url::from_directory_path(data.canonicalize().expect("canon")).expect("url");
        for location in [
            "file:///etc".to_string(),
            data_url.as_str().trim_end_matches('/').to_string(),
            format!("{data_url}artifacts/../"),
            "http://169.254.169.254/latest/meta-data".into(),
            "https://example.com/model".into(),
            "s3://unconfigured-bucket/model".into(),
            "gs://elsewhere/model".into(),
        ] {
            let r = app
            .post(
                "/api/v1/models/safe/versions",
                &admin,
                json!({"source": location, "artifact": {"location": location, "digest": "0".repeat(64)}}),
            )
            .await;
            assert_eq!(r.status, 400, "{location}: {:?}", r.body);
        }
        let r = app
            .post(
                "/api/v1/models/safe/uploads",
                &admin,
                json!({"store": "nope"}),
            )
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(
            app.event_count().await,
            before,
            "refused requests write nothing"
        );

        // A bare source elsewhere is recorded as given (as MLflow does) but never fetched.
        let r = app
            .post(
                "/api/v1/models/safe/versions",
                &admin,
                json!({"source": "http://169.254.169.254/latest/meta-data"}),
            )
            .await;
        assert_eq!(r.status, 201);
        let failed = verify(&app, &admin, "safe", 1).await;
        assert_eq!(failed["verified"], false);
        let reason = failed["failures"][0]["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("outside the configured artifact stores")
                && reason.contains("never fetched"),
            "{reason}"
        );
    }
);

both_backends!(
    one_upload_spread_over_two_processes_commits_every_file,
    |backend: Backend| async move {
        // Behind a round-robin balancer each request of one upload may reach another process
        // (CI once failed exactly so): the session has to be shared, not held in one memory.
        let artifacts = tempfile::tempdir().expect("tempdir");
        let store = format!("file://{}", artifacts.path().display());
        let a = spawn_app_with(backend, &["--artifact-store", &store]).await;
        let b = spawn_app_on(
            backend,
            Some(&a.database_url),
            &["--artifact-store", &store],
        )
        .await;
        let (ci_a, ci_b) = (a.admin(), b.admin());
        a.create_model("spread").await;
        let files = model_files();
        let id = start_upload(&a, &ci_a, "spread").await;
        for (i, (path, bytes)) in files.iter().enumerate() {
            let (app, token) = if i % 2 == 0 { (&a, &ci_a) } else { (&b, &ci_b) };
            let (status, body) = put_bytes(
                app,
                &format!("/api/v1/models/spread/uploads/{id}/files/{path}"),
                token,
                bytes.clone(),
            )
            .await;
            assert_eq!(status, 201, "upload {path} through {}: {body:?}", app.url);
        }
        // Another caller of the other process still cannot see or commit the session.
        let stranger = b.token("mallory", &["ml-admins"]);
        let r = b
            .post(
                &format!("/api/v1/models/spread/uploads/{id}/commit"),
                &stranger,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 404, "a stranger's commit: {:?}", r.body);
        let r = b
            .post(
                &format!("/api/v1/models/spread/uploads/{id}/commit"),
                &ci_b,
                json!({}),
            )
            .await;
        assert_eq!(
            r.status, 201,
            "commit through the other process: {:?}",
            r.body
        );
        let recorded: Vec<ManifestFile> =
            serde_json::from_value(r.body["artifact"]["files"].clone()).expect("manifest files");
        assert_eq!(recorded, expected_manifest(&files));
        // Committed, the session is gone for both processes.
        let (status, _) = put_bytes(
            &a,
            &format!("/api/v1/models/spread/uploads/{id}/files/late.txt"),
            &ci_a,
            b"late".to_vec(),
        )
        .await;
        assert_eq!(status, 404);
        let report = verify(&a, &ci_a, "spread", 1).await;
        assert_eq!(report["verified"], true, "{report:?}");
    }
);

both_backends!(
    an_upload_cancelled_mid_body_does_not_block_the_commit,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let token = app.admin();
        app.create_model("cancelled").await;
        let id = start_upload(&app, &token, "cancelled").await;
        let (status, _) = put_bytes(
            &app,
            &format!("/api/v1/models/cancelled/uploads/{id}/files/MLmodel"),
            &token,
            b"flavors: {}\n".to_vec(),
        )
        .await;
        assert_eq!(status, 201);
        // Announce a large body, send a little of it and hang up.
        let addr = app.url.trim_start_matches("http://").to_string();
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "PUT /api/v1/models/cancelled/uploads/{id}/files/data/big.bin HTTP/1.1\r\n\
             Host: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(&[7u8; 65536]).await.expect("some body");
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(conn);
        // The dropped upload ends in the background; the commit then sees only MLmodel.
        let mut committed = None;
        for _ in 0..50 {
            let r = app
                .post(
                    &format!("/api/v1/models/cancelled/uploads/{id}/commit"),
                    &token,
                    json!({}),
                )
                .await;
            if r.status == 201 {
                committed = Some(r.body);
                break;
            }
            assert_eq!(r.status, 409, "{:?}", r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let version = committed.expect("the commit went through once the cancelled upload ended");
        let paths: Vec<&str> = version["artifact"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        assert_eq!(paths, vec!["MLmodel"]);
    }
);
