//! OpenSSF model signatures through the API on both backends: bundles made here in the format
//! `model_signing sign key` writes (the real CLI runs in scripts/suites/model-signing.sh),
//! recorded as `verified` or `mismatch`, refused when the signer is not trusted, and refused
//! before any parsing for a caller who may not record one.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};

const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

struct SigningKey {
    pair: EcdsaKeyPair,
    pem: String,
}

impl SigningKey {
    fn generate() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .expect("generate");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).expect("parse");
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            pair.public_key(),
        )
        .expect("spki");
        let pem = pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        SigningKey { pair, pem }
    }

    fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.pem.as_bytes()))
    }

    /// A model-signing v1.0 bundle over `files` (path, contents).
    fn sign(&self, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut root = Sha256::new();
        let resources: Vec<Value> = files
            .iter()
            .map(|(name, bytes)| {
                let digest = Sha256::digest(bytes);
                root.update(digest);
                json!({"name": name, "algorithm": "sha256", "digest": hex::encode(digest)})
            })
            .collect();
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "model", "digest": {"sha256": hex::encode(root.finalize())}}],
            "predicateType": "https://model_signing/signature/v1.0",
            "predicate": {
                "serialization": {"method": "files", "hash_type": "sha256",
                                  "allow_symlinks": false, "ignore_paths": [".git"]},
                "resources": resources,
            }
        }))
        .expect("statement");
        let mut pae = format!(
            "DSSEv1 {} {PAYLOAD_TYPE} {} ",
            PAYLOAD_TYPE.len(),
            statement.len()
        )
        .into_bytes();
        pae.extend_from_slice(&statement);
        let sig = self.pair.sign(&SystemRandom::new(), &pae).expect("sign");
        serde_json::to_vec(&json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": self.key_id()}, "tlogEntries": []},
            "dsseEnvelope": {"payload": B64.encode(&statement), "payloadType": PAYLOAD_TYPE,
                             "signatures": [{"sig": B64.encode(sig.as_ref()), "keyid": ""}]}
        }))
        .expect("bundle")
    }
}

async fn post_signature(app: &TestApp, token: &str, version: u64, bundle: Vec<u8>) -> (u16, Value) {
    let r = app
        .send_raw(
            reqwest::Method::POST,
            &format!("/api/v1/models/signed/versions/{version}/signatures"),
            token,
            "application/json",
            bundle,
        )
        .await;
    (r.status, r.body)
}

both_backends!(
    trusted_signatures_are_recorded_bound_to_the_files_and_others_refused,
    |backend: Backend| async move {
        let release = SigningKey::generate();
        let keys = tempfile::tempdir().expect("tempdir");
        let key_file = keys.path().join("release.pub");
        std::fs::write(&key_file, &release.pem).expect("write key");
        let app = spawn_app_with(
            backend,
            &["--trusted-signing-key", &key_file.display().to_string()],
        )
        .await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        app.create_model("signed").await;
        // upload_version_with_metrics stores one file, model.pkl = "weights".
        let v1 = app
            .upload_version_with_metrics(&ci, "signed", json!({}))
            .await;

        let (status, body) =
            post_signature(&app, &ci, v1, release.sign(&[("model.pkl", b"weights")])).await;
        assert_eq!(status, 201, "{body:?}");
        assert_eq!(body["status"], "verified");
        assert_eq!(body["signer"]["method"], "key");
        assert_eq!(body["signer"]["key_id"], release.key_id());

        // The same trusted key over other bytes: recorded, as mismatch, naming the file.
        let (status, body) =
            post_signature(&app, &ci, v1, release.sign(&[("model.pkl", b"other")])).await;
        assert_eq!(status, 201, "{body:?}");
        assert_eq!(body["status"], "mismatch");
        assert_eq!(body["differences"], json!(["changed: model.pkl"]));

        // An untrusted key, even naming the trusted key's id: refused, nothing written.
        let before = app.event_count().await;
        let stranger = SigningKey::generate();
        let mut forged: Value =
            serde_json::from_slice(&stranger.sign(&[("model.pkl", b"weights")])).expect("json");
        forged["verificationMaterial"]["publicKey"]["hint"] = release.key_id().into();
        let (status, body) =
            post_signature(&app, &ci, v1, serde_json::to_vec(&forged).expect("json")).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (422, Some("UNTRUSTED_SIGNATURE"))
        );
        let (status, body) = post_signature(&app, &ci, v1, b"not a bundle".to_vec()).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("INVALID_SIGNATURE"))
        );
        assert_eq!(
            app.event_count().await,
            before,
            "a refused signature wrote an event"
        );

        // A reader is refused before the body is even parsed (garbage answers 403, not 400).
        let reader = app.token("rhea", &["ml-readers"]);
        let (status, body) = post_signature(&app, &reader, v1, b"garbage".to_vec()).await;
        assert_eq!(status, 403, "{body:?}");

        // A version without recorded files has nothing a signature could be compared with.
        let bare = app.create_version("signed").await;
        let (status, body) =
            post_signature(&app, &ci, bare, release.sign(&[("model.pkl", b"weights")])).await;
        assert_eq!(status, 400, "{body:?}");

        // The log holds both outcomes, each naming the statement it was about.
        let events = app
            .get(
                "/api/v1/events?type=SignatureRecorded&limit=10",
                &app.admin(),
            )
            .await;
        let statuses: Vec<&str> = events.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["payload"]["status"].as_str())
            .collect();
        assert_eq!(statuses, vec!["verified", "mismatch"], "{:?}", events.body);
    }
);

both_backends!(
    without_configured_trust_every_signature_is_refused,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &[]).await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        app.create_model("signed").await;
        let v = app
            .upload_version_with_metrics(&ci, "signed", json!({}))
            .await;
        let key = SigningKey::generate();
        let (status, body) =
            post_signature(&app, &ci, v, key.sign(&[("model.pkl", b"weights")])).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (422, Some("UNTRUSTED_SIGNATURE"))
        );
    }
);
