//! Artifacts in an S3-compatible object store (a moto server started per test), on both
//! backends. The local-store tests cannot show that uploads, registration of files a training
//! job already wrote to another bucket, verification and download work through the object
//! store API, nor that a bucket outside the configured stores is refused, so these run the
//! same flows against a real S3 endpoint.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::artifacts::{download, expected_manifest, model_files, sha, upload_version, verify};
use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with};

/// A moto S3 server on a free port, killed when dropped.
struct Moto {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MODEL_LEDGER_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let path = crate::helpers::repo_path("target/moto-venv/bin/moto_server");
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(crate::helpers::repo_path("tests/support/ensure_moto.sh"))
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "moto_server is required for the S3 tests and tests/support/ensure_moto.sh could not install it"
        );
    }
    path
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let binary = moto_binary();
    let child = tokio::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let url = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, url };
    let client = reqwest::Client::new();
    for _ in 0..150 {
        if client
            .get(format!("{}/moto-api/", moto.url))
            .send()
            .await
            .is_ok()
        {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on port {port} within 15 s");
}

fn s3_args(endpoint: &str) -> Vec<String> {
    [
        "--artifact-store",
        "s3://ledger-artifacts/registry",
        "--artifact-stores",
        "training=s3://training-output",
        "--s3-endpoint",
        endpoint,
        "--s3-allow-http",
        "--s3-region",
        "us-east-1",
        "--artifact-store-option",
        "aws_access_key_id=testing",
        "--artifact-store-option",
        "aws_secret_access_key=testing",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn s3_store(endpoint: &str, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("s3 store"),
    )
}

both_backends!(
    s3_compatible_store_upload_register_verify_download,
    |backend: Backend| async move {
        use object_store::ObjectStoreExt;
        let moto = start_moto().await;
        let http = reqwest::Client::new();
        for bucket in ["ledger-artifacts", "training-output"] {
            let r = http
                .put(format!("{}/{bucket}", moto.url))
                .send()
                .await
                .expect("create bucket");
            assert!(
                r.status().is_success(),
                "create bucket {bucket}: {}",
                r.status()
            );
        }
        let args = s3_args(&moto.url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let app = spawn_app_with(backend, &args).await;
        let admin = app.admin();
        app.create_model("s3model").await;

        let files = model_files();
        let version = upload_version(&app, &admin, "s3model", &files).await;
        let location = version["artifact"]["location"]
            .as_str()
            .expect("location")
            .to_string();
        assert!(
            location.starts_with("s3://ledger-artifacts/registry/models/s3model/"),
            "{location}"
        );
        assert_eq!(verify(&app, &admin, "s3model", 1).await["verified"], true);
        for (path, bytes) in &files {
            let (status, headers, body) = download(&app, &admin, "s3model", 1, path).await;
            assert_eq!((status, &body), (200, bytes), "{path}");
            assert_eq!(headers["x-content-sha256"], sha(bytes).as_str());
        }

        // Files a training job wrote to another configured bucket.
        let training = s3_store(&moto.url, "training-output");
        let weights = vec![3u8; 50_000];
        training
            .put(
                &object_store::path::Path::from("run-9/model/weights.bin"),
                weights.clone().into(),
            )
            .await
            .expect("put");
        let expected = expected_manifest(&[("weights.bin", weights.clone())]);
        let registered = app
        .post(
            "/api/v1/models/s3model/versions",
            &admin,
            json!({"source": "run-9", "artifact": {"location": "s3://training-output/run-9/model", "files": expected}}),
        )
        .await;
        assert_eq!(registered.status, 201, "{:?}", registered.body);
        assert_eq!(verify(&app, &admin, "s3model", 2).await["verified"], true);

        // Tamper in the bucket: verification names the file.
        training
            .put(
                &object_store::path::Path::from("run-9/model/weights.bin"),
                vec![4u8; 50_000].into(),
            )
            .await
            .expect("overwrite");
        let failed = verify(&app, &admin, "s3model", 2).await;
        assert_eq!(failed["verified"], false);
        assert_eq!(failed["failures"][0]["path"], "weights.bin");

        let before = app.event_count().await;
        let outside = app
        .post(
            "/api/v1/models/s3model/versions",
            &admin,
            json!({"source": "x", "artifact": {"location": "s3://some-other-bucket/run-9", "digest": "0".repeat(64)}}),
        )
        .await;
        assert_eq!(outside.status, 400, "{:?}", outside.body);
        assert_eq!(app.event_count().await, before);
    }
);
