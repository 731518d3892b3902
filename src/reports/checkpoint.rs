//! Signed checkpoints of the chain head, so a truncated tail is detectable.
//!
//! A hash chain shows any change in the middle of the log but not the removal of its newest
//! events. A checkpoint is the head `(position, hash)` signed with the server's Ed25519 key, in
//! the signed-note form of transparency logs (C2SP `signed-note`/`tlog-checkpoint`):
//!
//! ```text
//! model-ledger                       <- origin
//! 1234                               <- position (number of events)
//! 6f1c…e2                            <- head hash, lowercase hex
//! 2026-01-31T12:00:00.000000Z        <- time it was made
//!
//! — model-ledger q2LqYW…             <- base64(key id (4 bytes) ‖ Ed25519 signature)
//! ```
//!
//! The signature covers the body (the four lines and their newlines). The key id is the first
//! four bytes of SHA-256(origin ‖ "\n" ‖ 0x01 ‖ public key), as in C2SP notes. Held outside the
//! database (a file, NATS, object storage), the newest checkpoint lets `audit verify
//! --checkpoint` fail on a log that is shorter than it or differs at its position.

use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::ReportError;
use crate::domain::chain::canonical_time;
use crate::store::{CheckpointRecord, Store};

/// The key file in the data directory.
pub const KEY_FILE: &str = "checkpoint-ed25519.pem";
/// The default origin line.
pub const DEFAULT_ORIGIN: &str = "model-ledger";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Loads the server's signing key, creating it (mode 0600) on first use.
pub fn load_or_create_key(data_dir: &Path) -> Result<SigningKey, ReportError> {
    let path = key_path(data_dir);
    if path.is_file() {
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| ReportError::io(format!("reading {}", path.display()), e))?;
        return SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| ReportError::Signature(format!("{}: {e}", path.display())));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ReportError::io(format!("creating {}", data_dir.display()), e))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| ReportError::Signature(format!("encoding the new key: {e}")))?;
    write_private(&path, pem.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| ReportError::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| ReportError::io(format!("writing {}", path.display()), e))
}

/// The public key as SPKI PEM, for auditors (`audit public-key`).
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, ReportError> {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| ReportError::Signature(format!("encoding the public key: {e}")))
}

/// Reads a public key from SPKI PEM, or from a private-key PEM (its public half).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, ReportError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| ReportError::io(format!("reading {}", path.display()), e))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map(|k| k.verifying_key())
        .map_err(|e| ReportError::Signature(format!("{}: not an Ed25519 key: {e}", path.display())))
}

/// The C2SP key id: first four bytes of SHA-256(origin ‖ "\n" ‖ 0x01 ‖ key).
pub fn key_id(origin: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update(b"\n\x01");
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub origin: String,
    pub position: i64,
    pub hash: String,
    pub time: DateTime<Utc>,
}

impl Checkpoint {
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.origin,
            self.position,
            self.hash,
            canonical_time(&self.time)
        )
    }

    /// The signed-note text.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let signature = key.sign(body.as_bytes());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a signed note and, when a key is given, checks its signature.
    pub fn parse(note: &str, key: Option<&VerifyingKey>) -> Result<Self, ReportError> {
        let bad = |m: &str| ReportError::Invalid(format!("checkpoint: {m}"));
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line between body and signature"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines
            .next()
            .ok_or_else(|| bad("no origin line"))?
            .to_string();
        let position: i64 = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| bad("second line is not a position"))?;
        let hash = lines.next().ok_or_else(|| bad("no hash line"))?.to_string();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("third line is not a SHA-256 hex hash"));
        }
        let time = lines
            .next()
            .and_then(|l| DateTime::parse_from_rfc3339(l).ok())
            .ok_or_else(|| bad("fourth line is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        let checkpoint = Checkpoint {
            origin,
            position,
            hash,
            time,
        };
        if checkpoint.body() != body {
            return Err(bad("body is not in canonical form"));
        }
        if let Some(key) = key {
            let expected_id = key_id(&checkpoint.origin, key);
            let verified = signatures.lines().any(|line| {
                let Some(rest) = line.strip_prefix("\u{2014} ") else {
                    return false;
                };
                let Some((name, blob)) = rest.split_once(' ') else {
                    return false;
                };
                let Ok(blob) = B64.decode(blob.trim()) else {
                    return false;
                };
                if name != checkpoint.origin || blob.len() != 68 || blob[..4] != expected_id {
                    return false;
                }
                let Ok(sig) = Signature::from_slice(&blob[4..]) else {
                    return false;
                };
                key.verify(body.as_bytes(), &sig).is_ok()
            });
            if !verified {
                return Err(ReportError::Signature(
                    "the checkpoint carries no valid signature by the given key".into(),
                ));
            }
        }
        Ok(checkpoint)
    }
}

/// Signs the current chain head and records it in the `checkpoints` table. Publishing it
/// elsewhere (NATS, a file) is the caller's business: read it back with
/// `Store::latest_checkpoint`.
pub async fn make_checkpoint(
    store: &dyn Store,
    key: &SigningKey,
    origin: &str,
) -> Result<CheckpointRecord, ReportError> {
    let (position, hash) = store.head().await?;
    let checkpoint = Checkpoint {
        origin: origin.to_string(),
        position,
        hash: hash.clone(),
        time: crate::domain::chain::truncate_to_micros(Utc::now()),
    };
    let record = CheckpointRecord {
        id: uuid::Uuid::now_v7().to_string(),
        position,
        hash,
        created_at: checkpoint.time,
        origin: origin.to_string(),
        key_id: hex::encode(key_id(origin, &key.verifying_key())),
        note: checkpoint.sign(key),
    };
    store.append_checkpoint(&record).await?;
    Ok(record)
}

/// Every `interval`, checkpoints the head if it moved since the last checkpoint. Runs until the
/// process ends; failures are logged and retried at the next tick.
pub fn spawn_periodic(
    store: crate::store::SharedStore,
    key: SigningKey,
    origin: String,
    interval: std::time::Duration,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let moved = match (store.head().await, store.latest_checkpoint().await) {
                (Ok((position, _)), Ok(last)) => {
                    position > 0 && last.is_none_or(|c| c.position < position)
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "checkpoint: cannot read the chain head");
                    false
                }
            };
            if moved {
                match make_checkpoint(store.as_ref(), &key, &origin).await {
                    Ok(c) => {
                        tracing::info!(position = c.position, hash = %c.hash, "checkpoint signed")
                    }
                    Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_parses_and_verifies_only_with_its_key() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        let c = Checkpoint {
            origin: "model-ledger".into(),
            position: 42,
            hash: "ab".repeat(32),
            time: crate::domain::chain::truncate_to_micros(Utc::now()),
        };
        let note = c.sign(&key);
        assert_eq!(
            Checkpoint::parse(&note, Some(&key.verifying_key())).ok(),
            Some(c.clone())
        );
        assert!(Checkpoint::parse(&note, Some(&other.verifying_key())).is_err());
        let forged = note.replace("\n42\n", "\n41\n");
        assert!(Checkpoint::parse(&forged, Some(&key.verifying_key())).is_err());
        assert_eq!(
            Checkpoint::parse(&forged, None).map(|c| c.position).ok(),
            Some(41)
        );
    }
}
