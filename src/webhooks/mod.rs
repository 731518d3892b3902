//! Registry webhooks (issue #18): MLflow 3's webhook subscriptions, delivered from the event log.
//!
//! MLflow 3 delivers webhooks from an in-process thread pool, so an event committed just before a
//! crash is never sent. model-ledger instead derives deliveries from committed events (the same
//! log the outbox relay reads), which gives "nothing committed is lost, nothing uncommitted is
//! sent". The parts:
//!
//! - [`signing`]: the signature headers, MLflow's (`X-MLflow-Signature`, `X-MLflow-Timestamp`,
//!   `X-MLflow-Delivery-Id`) and the same HMAC under Standard Webhooks' names, with several
//!   signatures while a secret is being rotated.
//! - [`target`]: which receiver URLs are allowed (the SSRF rules) and MLflow's wording for the
//!   ones that are refused.
//! - [`events`]: the event names and payloads a receiver gets, MLflow's where MLflow has them.
//! - [`retry`]: which failed attempts are retried, the backoff with jitter, `Retry-After`, the window.
//! - [`secrets`]: webhook secrets sealed at rest with AES-256-GCM under a configured key.
//! - [`sender`]: one signed POST to a receiver, with the SSRF rules applied to the addresses
//!   actually dialled, connect and total timeouts, and no redirects.
//! - [`worker`]: the durable delivery loop: fan committed events out into delivery rows (one
//!   transaction with the cursor), lease due rows, send each in its own task, record the outcome.
//!
//! Storage is the store's [`crate::store::Webhooks`] role; the REST API is in
//! `api::mlflow::webhooks`, authorized through `service::webhooks`.

pub mod events;
pub mod retry;
pub mod secrets;
pub mod sender;
pub mod signing;
pub mod target;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

use retry::RetryPolicy;
use secrets::{SecretBox, SecretError};

/// The file in the data directory that holds a generated sealing key when none is configured.
pub const KEY_FILE: &str = "webhook-secret.key";

/// How webhooks are sealed, checked and sent; built once at start from `serve` options.
#[derive(Debug)]
pub struct WebhookSettings {
    /// Seals and opens webhook secrets (`--webhook-secret-key`).
    pub secrets: SecretBox,
    /// `--webhook-allow-private-ips`: receivers on loopback or private networks are allowed.
    pub allow_private_ips: bool,
    /// Longest wait to connect to a receiver.
    pub connect_timeout: Duration,
    /// Longest wait for a whole attempt (connect, send, the receiver's answer).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Deliveries in flight at once in this process.
    pub concurrency: usize,
    /// Of those, at most this many to one webhook, so one slow receiver cannot hold every slot.
    pub per_webhook_concurrency: usize,
    /// How long a replaced secret keeps signing beside the new one.
    pub secret_overlap: Duration,
    /// Deliveries one fan-out window sends and writes at most (see [`worker`]).
    pub window_deliveries: usize,
}

impl WebhookSettings {
    /// Settings with a sealing key of this process's own, for tests and tools that never
    /// restart: secrets sealed under it open nowhere else.
    pub fn ephemeral() -> Self {
        use aws_lc_rs::rand::SecureRandom;
        let mut key = [0u8; 32];
        // A failing system RNG leaves the zero key; nothing sealed with it outlives the process.
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut key);
        let text = hex::encode(key);
        WebhookSettings::new(sealing_keys(&[text.as_str()]).unwrap_or_else(|_| {
            // Unreachable: 64 hex characters always make a key.
            SecretBox::new([("ephemeral", "0".repeat(64).as_str())]).expect("a zero key is valid")
        }))
    }

    /// Default sending options around the given sealing keys.
    pub fn new(secrets: SecretBox) -> Self {
        WebhookSettings {
            secrets,
            allow_private_ips: false,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            concurrency: 256,
            per_webhook_concurrency: 8,
            secret_overlap: Duration::from_secs(24 * 3600),
            window_deliveries: 5_000,
        }
    }
}

/// The key id a sealed secret records: the first 8 hex digits of the key's SHA-256, so the
/// same key gives the same id however it is written and ids never reveal the key.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(key))[..8].to_string()
}

/// A [`SecretBox`] over configured keys (64 hex characters or base64 of 32 bytes each), the
/// sealing key first.
pub fn sealing_keys(keys: &[&str]) -> Result<SecretBox, SecretError> {
    let pairs = keys
        .iter()
        .map(|text| Ok((key_id(&secrets::decode_key(text)?), text.trim().to_string())))
        .collect::<Result<Vec<_>, SecretError>>()?;
    SecretBox::new(pairs.iter().map(|(id, text)| (id.as_str(), text.as_str())))
}

/// The sealing keys `serve` uses: `--webhook-secret-key` (comma-separated; the first seals,
/// all open, so a key can be replaced without losing the secrets sealed under the old one),
/// else a key generated on first start into `<data-dir>/webhook-secret.key` (mode 0600).
/// Several servers on one database must be given the same key: a secret sealed by one opens
/// only where its key is configured.
pub fn load_keys(configured: Option<&str>, data_dir: &Path) -> Result<SecretBox, String> {
    if let Some(list) = configured.filter(|s| !s.trim().is_empty()) {
        let keys: Vec<&str> = list.split(',').filter(|k| !k.trim().is_empty()).collect();
        return sealing_keys(&keys).map_err(|e| format!("--webhook-secret-key: {e}"));
    }
    let path = key_path(data_dir);
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        return sealing_keys(&[text.trim()]).map_err(|e| format!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let mut key = [0u8; 32];
    {
        use aws_lc_rs::rand::SecureRandom;
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "the system random generator failed".to_string())?;
    }
    let text = hex::encode(key);
    write_private(&path, text.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "no --webhook-secret-key: generated one; give every server on this database the same key"
    );
    sealing_keys(&[text.as_str()]).map_err(|e| e.to_string())
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
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
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_keys(None, dir.path()).expect("generated");
        let sealed = first.seal("w", b"s").expect("seal");
        let again = load_keys(None, dir.path()).expect("read back");
        assert_eq!(again.open("w", &sealed).expect("opens"), b"s");
    }

    #[test]
    fn configured_keys_rotate_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let k2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
        let old = load_keys(Some(k1), dir.path()).expect("k1");
        let sealed = old.seal("w", b"s").expect("seal");
        let both = load_keys(Some(&format!("{k2},{k1}")), dir.path()).expect("k2,k1");
        assert_eq!(both.open("w", &sealed).expect("old key opens"), b"s");
        assert!(load_keys(Some("short"), dir.path()).is_err());
        assert!(
            !key_path(dir.path()).exists(),
            "a configured key writes no file"
        );
    }
}
