//! Signing a delivery so the receiver can tell it came from us and was not replayed.
//!
//! MLflow 3 signs `"{delivery_id}.{timestamp}.{payload}"` with HMAC-SHA256 keyed by the webhook's
//! secret (its UTF-8 bytes) and sends `X-MLflow-Signature: v1,<base64>`, with the timestamp (Unix
//! seconds) and delivery id in their own headers. Standard Webhooks signs exactly the same
//! string with the same algorithm and header layout (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>`), so we send the one signature under both sets of names.
//! The only difference is how the key is written down: `standardwebhooks` libraries take
//! `whsec_<base64 of the key bytes>`, which [`standard_webhooks_secret`] produces for a receiver.
//!
//! While a secret is being rotated both the new and the old secret are valid: the signature
//! headers then carry one space-separated `v1,<sig>` per secret (newest first), which both
//! MLflow-style and Standard Webhooks verifiers accept as "any signature matches".

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The signature scheme's version prefix, shared by MLflow and Standard Webhooks.
pub const SIGNATURE_VERSION: &str = "v1";

/// One signed delivery's headers, as (name, value) pairs in the order they are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders(pub Vec<(&'static str, String)>);

impl SignatureHeaders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The signing key of one secret. Made once per webhook and kept by the worker: setting up
/// an HMAC key hashes the secret's padded blocks, work every attempt would otherwise repeat.
pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// `base64(HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{payload}"))`.
pub fn signature(secret: &[u8], delivery_id: &str, timestamp: i64, payload: &[u8]) -> String {
    signature_with(&key(secret), delivery_id, timestamp, payload)
}

fn signature_with(key: &hmac::Key, delivery_id: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(delivery_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(payload);
    STANDARD.encode(ctx.sign().as_ref())
}

/// The headers for one delivery, signed with every key in `keys` (newest first; more
/// than one only during a rotation's overlap window). With no secret the delivery is sent
/// unsigned, as MLflow does for a webhook created without one.
pub fn sign(
    keys: &[&hmac::Key],
    delivery_id: &str,
    timestamp: i64,
    payload: &[u8],
) -> SignatureHeaders {
    let mut headers = vec![
        ("X-MLflow-Delivery-Id", delivery_id.to_string()),
        ("X-MLflow-Timestamp", timestamp.to_string()),
        ("webhook-id", delivery_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    if !keys.is_empty() {
        let value = keys
            .iter()
            .map(|k| {
                format!(
                    "{SIGNATURE_VERSION},{}",
                    signature_with(k, delivery_id, timestamp, payload)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        headers.push(("X-MLflow-Signature", value.clone()));
        headers.push(("webhook-signature", value));
    }
    SignatureHeaders(headers)
}

/// The secret as a `standardwebhooks` receiver is configured with it.
pub fn standard_webhooks_secret(secret: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(secret))
}

/// Whether `header` (a `webhook-signature` / `X-MLflow-Signature` value) holds a valid
/// signature for the delivery under `secret`: the check a receiver does, used by tests and by
/// `test_webhook` diagnostics. Compares in constant time.
pub fn verify(
    secret: &[u8],
    header: &str,
    delivery_id: &str,
    timestamp: i64,
    payload: &[u8],
) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(delivery_id.len() + payload.len() + 24);
    signed.extend_from_slice(delivery_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(payload);
    header.split(' ').any(|part| {
        part.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value Python computes for MLflow's scheme (run on this machine):
    /// `base64.b64encode(hmac.new(b"s3cret", b"d1.1700000000.{}", hashlib.sha256).digest())`.
    #[test]
    fn signature_matches_mlflows_construction() {
        let python = "zanuGVyPdkCH5t63rF48cWGMLFZ3sNRiNHn6qebAxZ8=";
        assert_eq!(signature(b"s3cret", "d1", 1_700_000_000, b"{}"), python);
    }

    #[test]
    fn both_header_sets_carry_the_same_signature() {
        let h = sign(&[&key(b"k")], "id-1", 42, b"{\"a\":1}");
        assert_eq!(h.get("X-MLflow-Signature"), h.get("webhook-signature"));
        assert_eq!(h.get("x-mlflow-delivery-id"), Some("id-1"));
        assert_eq!(h.get("webhook-timestamp"), Some("42"));
        assert!(verify(
            b"k",
            h.get("webhook-signature").unwrap(),
            "id-1",
            42,
            b"{\"a\":1}"
        ));
    }

    #[test]
    fn a_tampered_payload_id_or_timestamp_does_not_verify() {
        let h = sign(&[&key(b"k")], "id-1", 42, b"{}");
        let sig = h.get("X-MLflow-Signature").unwrap();
        assert!(!verify(b"k", sig, "id-1", 42, b"{ }"));
        assert!(!verify(b"k", sig, "id-2", 42, b"{}"));
        assert!(!verify(b"k", sig, "id-1", 43, b"{}"));
        assert!(!verify(b"other", sig, "id-1", 42, b"{}"));
    }

    #[test]
    fn during_rotation_either_secret_verifies() {
        let h = sign(&[&key(b"new"), &key(b"old")], "d", 7, b"x");
        let sig = h.get("webhook-signature").unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        assert!(verify(b"new", sig, "d", 7, b"x"));
        assert!(verify(b"old", sig, "d", 7, b"x"));
        assert!(!verify(b"neither", sig, "d", 7, b"x"));
    }

    #[test]
    fn without_a_secret_nothing_is_signed() {
        let h = sign(&[], "d", 7, b"x");
        assert_eq!(h.get("X-MLflow-Signature"), None);
        assert_eq!(h.get("webhook-id"), Some("d"));
    }

    #[test]
    fn standard_webhooks_secret_is_whsec_base64() {
        assert_eq!(standard_webhooks_secret(b"abc"), "whsec_YWJj");
    }
}
