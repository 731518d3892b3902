//! Webhook secrets at rest: sealed with AES-256-GCM under a key from configuration.
//!
//! A webhook secret is a credential for the receiver, so a database dump or a backup must not
//! reveal it. Each secret is sealed on its own with a fresh random 96-bit nonce; the webhook id
//! is bound in as associated data, so a sealed secret copied onto another webhook's row does not
//! open. The stored form is `v1.<key id>.<base64(nonce || ciphertext || tag)>`: the key id lets
//! the server hold the current key and older ones while secrets are re-sealed after a key change.
//! Secrets are opened only to sign a delivery and are never returned by the API or logged.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a secret could not be sealed or opened. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret key must be 32 bytes, given as 64 hex characters or base64")]
    BadKey,
    #[error("a webhook secret is sealed under key '{0}', which is not configured")]
    UnknownKey(String),
    #[error("a stored webhook secret is malformed or was altered")]
    Corrupt,
    #[error("the system random generator failed")]
    Random,
}

/// The configured sealing keys: the first seals, every one opens.
pub struct SecretBox {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SecretBox").field("key_ids", &ids).finish()
    }
}

impl SecretBox {
    /// `keys` are (key id, key text) with the sealing key first; key text is 64 hex characters
    /// or the base64 of 32 bytes.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SecretError> {
        let keys = keys
            .into_iter()
            .map(|(id, text)| {
                let bytes = decode_key(text)?;
                let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadKey)?;
                Ok((id.to_string(), LessSafeKey::new(key)))
            })
            .collect::<Result<Vec<_>, SecretError>>()?;
        if keys.is_empty() {
            return Err(SecretError::BadKey);
        }
        Ok(SecretBox { keys })
    }

    /// Seals `secret` for the webhook `webhook_id`.
    pub fn seal(&self, webhook_id: &str, secret: &[u8]) -> Result<String, SecretError> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let mut sealed = secret.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(webhook_id.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| SecretError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1.{id}.{}", STANDARD.encode(out)))
    }

    /// Opens a value [`SecretBox::seal`] produced for the same webhook.
    pub fn open(&self, webhook_id: &str, stored: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Corrupt);
        };
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, k)| k)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_string()))?;
        let mut bytes = STANDARD.decode(body).map_err(|_| SecretError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Corrupt);
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SecretError::Corrupt)?;
        let plain = key
            .open_in_place(nonce, Aad::from(webhook_id.as_bytes()), &mut sealed)
            .map_err(|_| SecretError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

pub(crate) fn decode_key(text: &str) -> Result<Vec<u8>, SecretError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| SecretError::BadKey)?
    } else {
        STANDARD.decode(text).map_err(|_| SecretError::BadKey)?
    };
    if bytes.len() != 32 {
        return Err(SecretError::BadKey);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_webhook() {
        let b = SecretBox::new([("k1", K1)]).unwrap();
        let sealed = b.seal("wh-1", b"s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.open("wh-1", &sealed).unwrap(), b"s3cret");
        assert_eq!(b.open("wh-2", &sealed), Err(SecretError::Corrupt));
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let b = SecretBox::new([("k1", K1)]).unwrap();
        assert_ne!(b.seal("w", b"x").unwrap(), b.seal("w", b"x").unwrap());
    }

    #[test]
    fn an_old_key_still_opens_after_the_sealing_key_changes() {
        let old = SecretBox::new([("k1", K1)]).unwrap();
        let sealed = old.seal("w", b"x").unwrap();
        let rotated = SecretBox::new([("k2", K2), ("k1", K1)]).unwrap();
        assert_eq!(rotated.open("w", &sealed).unwrap(), b"x");
        assert!(rotated.seal("w", b"x").unwrap().starts_with("v1.k2."));
        let without = SecretBox::new([("k2", K2)]).unwrap();
        assert_eq!(
            without.open("w", &sealed),
            Err(SecretError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn altered_or_malformed_values_and_bad_keys_are_errors_not_panics() {
        let b = SecretBox::new([("k1", K1)]).unwrap();
        let sealed = b.seal("w", b"x").unwrap();
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(b.open("w", &altered), Err(SecretError::Corrupt));
        for junk in ["", "v1", "v1.k1", "v1.k1.!!", "v1.k1.AAAA", "v2.k1.AAAA"] {
            assert!(b.open("w", junk).is_err(), "{junk}");
        }
        assert_eq!(
            SecretBox::new([("k", "short")]).unwrap_err(),
            SecretError::BadKey
        );
        assert_eq!(
            SecretBox::new(Vec::<(&str, &str)>::new()).unwrap_err(),
            SecretError::BadKey
        );
    }

    #[test]
    fn debug_output_names_key_ids_only() {
        let b = SecretBox::new([("k1", K1)]).unwrap();
        let shown = format!("{b:?}");
        assert!(shown.contains("k1") && !shown.contains("0001020304"));
    }
}
