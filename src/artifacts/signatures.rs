//! OpenSSF model signatures as evidence for a version (issue #16).
//!
//! `model_signing sign` (PyPI `model-signing` 1.x) hashes every file of a model directory and
//! signs the list: the output is a Sigstore bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`)
//! holding a DSSE envelope, whose payload is an in-toto statement with predicate type
//! `https://model_signing/signature/v1.0`. The predicate lists each file as a resource
//! (`name`, `algorithm`, `digest`); the statement's one subject carries a SHA-256 over all the
//! resource digests in order, so the list cannot be edited without the subject changing.
//!
//! Checking a signature here has two halves that must not be confused:
//!
//! 1. **Who signed** ([`TrustedSigners::check`]): the DSSE signature (ECDSA over the DSSE
//!    pre-authentication encoding of the payload) must verify under a key the operator trusts:
//!    either a public key given with `--trusted-signing-key` (the `key` method, found by the
//!    bundle's key hint, a SHA-256 of the key's PEM), or the key of a certificate that chains to
//!    a CA given with `--trusted-signing-ca` (the `certificate` method, validated by webpki at
//!    the certificate's own start of validity, as model-signing does, and usable for signing).
//!    Anything else is refused and nothing is recorded: an unverifiable claim is not evidence.
//! 2. **What was signed** (`domain::signing::bind`, run by `decide`): the signed file digests are compared with the version's
//!    manifest by path and SHA-256 (the signature's ignore list honoured). A trusted signature
//!    over other bytes is recorded, as `mismatch`, so the attempt is in the log and no policy
//!    mistakes it for a signature of this version.
//!
//! Keyless Sigstore bundles (a Fulcio certificate plus a transparency-log entry) are refused as
//! unsupported: checking them soundly needs a trusted root and inclusion-proof verification,
//! and no maintained Rust crate in our dependency set does both offline.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

use crate::domain::signing::{SignatureClaim, SignerIdentity};

/// Largest signature bundle accepted, in bytes (a 10,000-file model signs to about 1.5 MB).
pub const MAX_SIGNATURE_BYTES: usize = 8 * 1024 * 1024;
/// Most files one signature may list: the manifest's own limit.
pub const MAX_SIGNED_FILES: usize = 10_000;
/// Most certificates a bundle's chain may carry.
const MAX_CHAIN_CERTIFICATES: usize = 8;

const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER content octets, for webpki's EKU check.
const CODE_SIGNING_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("not an OpenSSF model signature (model-signing v1.0 bundle): {0}")]
    Malformed(String),
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    #[error("the signature is not by a trusted signer: {0}")]
    Untrusted(String),
    #[error("trusted signing configuration: {0}")]
    Config(String),
}

struct TrustedKey {
    spki_der: Vec<u8>,
    key_id: String,
}

/// The keys and CAs whose signatures count, from `--trusted-signing-key` / `--trusted-signing-ca`.
#[derive(Default)]
pub struct TrustedSigners {
    keys: Vec<TrustedKey>,
    cas: Vec<CertificateDer<'static>>,
}

/// model-signing's key hint: SHA-256 over the key's PEM text as OpenSSL writes it.
fn key_id_of(spki_der: &[u8]) -> String {
    let pem = pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki_der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    hex::encode(Sha256::digest(pem.as_bytes()))
}

fn verify_ecdsa(spki_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ECDSA_P521_SHA512_ASN1, UnparsedPublicKey,
    };
    // model-signing pairs each curve with its hash (P-256/SHA-256, P-384/SHA-384,
    // P-521/SHA-512); a key of one curve does not parse under another's algorithm.
    [
        &ECDSA_P256_SHA256_ASN1,
        &ECDSA_P384_SHA384_ASN1,
        &ECDSA_P521_SHA512_ASN1,
    ]
    .into_iter()
    .any(|alg| {
        UnparsedPublicKey::new(alg, spki_der)
            .verify(message, signature)
            .is_ok()
    })
}

/// DSSE's pre-authentication encoding: what the signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: Option<PublicKeyHint>,
    x509_certificate_chain: Option<CertificateChain>,
    certificate: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PublicKeyHint {
    #[serde(default)]
    hint: String,
}

#[derive(Deserialize)]
struct CertificateChain {
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    statement_type: String,
    subject: Vec<Subject>,
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Deserialize)]
struct Subject {
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Serialization {
    method: String,
    #[serde(default)]
    hash_type: Option<String>,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

fn malformed(what: impl Into<String>) -> SignatureError {
    SignatureError::Malformed(what.into())
}

fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, SignatureError> {
    B64.decode(value.trim())
        .map_err(|_| malformed(format!("{field} is not base64")))
}

impl TrustedSigners {
    /// Trust from PEM texts: each key a `PUBLIC KEY` (an EC key on P-256, P-384 or P-521), each
    /// CA one or more `CERTIFICATE`s.
    pub fn from_pem(keys: &[String], cas: &[String]) -> Result<Self, SignatureError> {
        let mut trusted = TrustedSigners::default();
        for (i, text) in keys.iter().enumerate() {
            let block = pem::parse(text)
                .map_err(|e| SignatureError::Config(format!("trusted key {}: {e}", i + 1)))?;
            if block.tag() != "PUBLIC KEY" {
                return Err(SignatureError::Config(format!(
                    "trusted key {}: expected a PEM 'PUBLIC KEY', found '{}'",
                    i + 1,
                    block.tag()
                )));
            }
            let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(block.contents())
                .map_err(|e| SignatureError::Config(format!("trusted key {}: {e}", i + 1)))?;
            if spki.algorithm.oid != x509_cert::der::oid::db::rfc5912::ID_EC_PUBLIC_KEY {
                return Err(SignatureError::Config(format!(
                    "trusted key {}: only elliptic-curve keys sign model signatures",
                    i + 1
                )));
            }
            trusted.keys.push(TrustedKey {
                key_id: key_id_of(block.contents()),
                spki_der: block.contents().to_vec(),
            });
        }
        for (i, text) in cas.iter().enumerate() {
            let blocks = pem::parse_many(text)
                .map_err(|e| SignatureError::Config(format!("trusted CA {}: {e}", i + 1)))?;
            let certs: Vec<_> = blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .collect();
            if certs.is_empty() {
                return Err(SignatureError::Config(format!(
                    "trusted CA {}: no PEM 'CERTIFICATE' in it",
                    i + 1
                )));
            }
            for cert in certs {
                let der = CertificateDer::from(cert.into_contents());
                webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| SignatureError::Config(format!("trusted CA {}: {e}", i + 1)))?;
                trusted.cas.push(der);
            }
        }
        Ok(trusted)
    }

    /// Reads the files given on the command line.
    pub fn load(
        key_files: &[std::path::PathBuf],
        ca_files: &[std::path::PathBuf],
    ) -> Result<Self, SignatureError> {
        let read = |p: &std::path::PathBuf| {
            std::fs::read_to_string(p)
                .map_err(|e| SignatureError::Config(format!("{}: {e}", p.display())))
        };
        let keys = key_files.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        let cas = ca_files.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        Self::from_pem(&keys, &cas)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cas.is_empty()
    }

    /// The ids of the trusted keys (what `Signer::key_id` holds for them).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    /// Checks who made the signature in `bundle` and returns what it signed.
    pub fn check(&self, bundle: &[u8]) -> Result<SignatureClaim, SignatureError> {
        if bundle.len() > MAX_SIGNATURE_BYTES {
            return Err(malformed(format!(
                "larger than {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
        let bundle: Bundle =
            serde_json::from_slice(bundle).map_err(|e| malformed(format!("bundle: {e}")))?;
        if bundle.media_type != BUNDLE_MEDIA_TYPE {
            return Err(malformed(format!(
                "media type '{}', expected '{BUNDLE_MEDIA_TYPE}'",
                bundle.media_type
            )));
        }
        let envelope = bundle
            .dsse_envelope
            .ok_or_else(|| malformed("no DSSE envelope"))?;
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(malformed(format!(
                "payload type '{}', expected '{PAYLOAD_TYPE}'",
                envelope.payload_type
            )));
        }
        let payload = decode_b64("the payload", &envelope.payload)?;
        let [signature] = envelope.signatures.as_slice() else {
            return Err(malformed("expected exactly one signature in the envelope"));
        };
        let signature = decode_b64("the signature", &signature.sig)?;
        let signed = pae(&envelope.payload_type, &payload);
        let material = bundle.verification_material;
        let signer = if let Some(chain) = material.x509_certificate_chain {
            self.check_certificate(&chain, &signed, &signature)?
        } else if let Some(hint) = material.public_key {
            self.check_key(&hint.hint, &signed, &signature)?
        } else if material.certificate.is_some() {
            return Err(SignatureError::Unsupported(
                "keyless Sigstore bundles (Fulcio certificate and transparency log) are not \
                 accepted; sign with `model_signing sign key` or `sign certificate`"
                    .into(),
            ));
        } else {
            return Err(malformed("no verification material"));
        };
        let (files, ignore_paths) = read_statement(&payload)?;
        Ok(SignatureClaim {
            signer,
            statement_digest: hex::encode(Sha256::digest(&payload)),
            files,
            ignore_paths,
        })
    }

    fn check_key(
        &self,
        hint: &str,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<SignerIdentity, SignatureError> {
        // A hint names the key; without one (older signers) every trusted key is tried.
        let candidates: Vec<&TrustedKey> = self
            .keys
            .iter()
            .filter(|k| hint.is_empty() || k.key_id == hint.to_ascii_lowercase())
            .collect();
        if candidates.is_empty() {
            return Err(SignatureError::Untrusted(if hint.is_empty() {
                "no trusted signing key is configured".into()
            } else {
                format!("signed by key {hint}, which is not a trusted signing key")
            }));
        }
        candidates
            .into_iter()
            .find(|k| verify_ecdsa(&k.spki_der, signed, signature))
            .map(|k| SignerIdentity {
                method: "key".into(),
                key_id: k.key_id.clone(),
                subject: None,
                san: Vec::new(),
                issuer: None,
            })
            .ok_or_else(|| {
                SignatureError::Untrusted(
                    "the signature does not verify under the trusted key it names".into(),
                )
            })
    }

    fn check_certificate(
        &self,
        chain: &CertificateChain,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<SignerIdentity, SignatureError> {
        if chain.certificates.is_empty() || chain.certificates.len() > MAX_CHAIN_CERTIFICATES {
            return Err(malformed(format!(
                "the certificate chain must hold 1 to {MAX_CHAIN_CERTIFICATES} certificates"
            )));
        }
        if self.cas.is_empty() {
            return Err(SignatureError::Untrusted(
                "no trusted signing CA is configured".into(),
            ));
        }
        let ders = chain
            .certificates
            .iter()
            .map(|c| decode_b64("a certificate", &c.raw_bytes).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = x509_cert::Certificate::from_der(&ders[0])
            .map_err(|e| malformed(format!("signing certificate: {e}")))?;
        let tbs = &leaf.tbs_certificate;
        // Validated at the start of the certificate's validity, as model-signing does: the
        // signature was made then or later, and a short-lived signing certificate may since
        // have expired without the signature becoming any less genuine.
        let not_before = tbs.validity.not_before.to_unix_duration();
        let anchors = self
            .cas
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SignatureError::Config(e.to_string()))?;
        let end_entity = webpki::EndEntityCert::try_from(&ders[0])
            .map_err(|e| malformed(format!("signing certificate: {e}")))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &ders[1..],
                UnixTime::since_unix_epoch(not_before + Duration::from_secs(1)),
                webpki::KeyUsage::required_if_present(CODE_SIGNING_EKU),
                None,
                None,
            )
            .map_err(|e| {
                SignatureError::Untrusted(format!(
                    "the signing certificate does not chain to a trusted CA: {e}"
                ))
            })?;
        let mut san = Vec::new();
        let mut may_sign = false;
        for ext in tbs.extensions.iter().flatten() {
            use x509_cert::der::oid::AssociatedOid;
            use x509_cert::ext::pkix::{
                ExtendedKeyUsage, KeyUsage, SubjectAltName, name::GeneralName,
            };
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == SubjectAltName::OID {
                let names = SubjectAltName::from_der(value)
                    .map_err(|e| malformed(format!("subject alternative names: {e}")))?;
                for name in names.0 {
                    match name {
                        GeneralName::Rfc822Name(n)
                        | GeneralName::DnsName(n)
                        | GeneralName::UniformResourceIdentifier(n) => {
                            san.push(n.as_str().to_string())
                        }
                        _ => {}
                    }
                }
            } else if ext.extn_id == KeyUsage::OID {
                let usage =
                    KeyUsage::from_der(value).map_err(|e| malformed(format!("key usage: {e}")))?;
                may_sign |= usage.digital_signature();
            } else if ext.extn_id == ExtendedKeyUsage::OID {
                let usage = ExtendedKeyUsage::from_der(value)
                    .map_err(|e| malformed(format!("extended key usage: {e}")))?;
                may_sign |= usage
                    .0
                    .contains(&x509_cert::der::oid::db::rfc5280::ID_KP_CODE_SIGNING);
            }
        }
        if !may_sign {
            return Err(SignatureError::Untrusted(
                "the signing certificate is not for signing (neither digitalSignature key usage \
                 nor the codeSigning extended key usage)"
                    .into(),
            ));
        }
        let spki_der = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| malformed(format!("signing certificate key: {e}")))?;
        if !verify_ecdsa(&spki_der, signed, signature) {
            return Err(SignatureError::Untrusted(
                "the signature does not verify under the signing certificate's key".into(),
            ));
        }
        Ok(SignerIdentity {
            method: "certificate".into(),
            key_id: key_id_of(&spki_der),
            subject: Some(tbs.subject.to_string()),
            san,
            issuer: Some(tbs.issuer.to_string()),
        })
    }
}

/// The signed files and ignore list, once the statement's own consistency is checked: its types,
/// and that the subject's digest is the hash over the listed resource digests.
fn read_statement(
    payload: &[u8],
) -> Result<(BTreeMap<String, String>, Vec<String>), SignatureError> {
    let statement: Statement =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("statement: {e}")))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(malformed(format!(
            "statement type '{}', expected '{STATEMENT_TYPE}'",
            statement.statement_type
        )));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(SignatureError::Unsupported(format!(
            "predicate type '{}' (only '{PREDICATE_TYPE}' is accepted)",
            statement.predicate_type
        )));
    }
    let [subject] = statement.subject.as_slice() else {
        return Err(malformed("expected exactly one subject"));
    };
    let predicate = statement.predicate;
    if predicate.resources.len() > MAX_SIGNED_FILES {
        return Err(malformed(format!(
            "more than {MAX_SIGNED_FILES} signed files"
        )));
    }
    let mut root = Sha256::new();
    let mut files = BTreeMap::new();
    for resource in &predicate.resources {
        let digest = hex::decode(&resource.digest)
            .map_err(|_| malformed(format!("digest of '{}' is not hex", resource.name)))?;
        root.update(&digest);
        if files
            .insert(resource.name.clone(), resource.digest.to_ascii_lowercase())
            .is_some()
        {
            return Err(malformed(format!("'{}' is listed twice", resource.name)));
        }
        // Per-file SHA-256 is what the version's manifest records; a shard-wise or other hash
        // cannot be compared with it, so such a signature cannot be bound to the version.
        if resource.algorithm != "sha256" {
            return Err(SignatureError::Unsupported(format!(
                "'{}' is hashed with '{}'; sign with the default per-file sha256 hashing",
                resource.name, resource.algorithm
            )));
        }
    }
    if predicate.serialization.method != "files"
        || predicate
            .serialization
            .hash_type
            .as_deref()
            .is_some_and(|h| h != "sha256")
    {
        return Err(SignatureError::Unsupported(format!(
            "serialization '{}' (only per-file sha256 'files' can be compared with a manifest)",
            predicate.serialization.method
        )));
    }
    let expected_root = subject
        .digest
        .get("sha256")
        .ok_or_else(|| malformed("the subject has no sha256 digest"))?;
    if hex::encode(root.finalize()) != expected_root.to_ascii_lowercase() {
        return Err(malformed(
            "the subject digest does not match the listed file digests",
        ));
    }
    Ok((files, predicate.serialization.ignore_paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    use crate::domain::events::{ArtifactManifest, ManifestFile};
    use crate::domain::signing::bind;

    fn key_pair() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("generate");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).expect("parse");
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            pair.public_key(),
        )
        .expect("spki");
        // As OpenSSL writes it: 64-character lines, LF.
        let pem = pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        (pair, pem)
    }

    fn statement(files: &[(&str, &str)], ignore: &[&str]) -> Vec<u8> {
        let mut root = Sha256::new();
        for (_, d) in files {
            root.update(hex::decode(d).expect("hex"));
        }
        serde_json::to_vec(&serde_json::json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "model", "digest": {"sha256": hex::encode(root.finalize())}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false,
                                  "ignore_paths": ignore},
                "resources": files.iter().map(|(n, d)| serde_json::json!(
                    {"name": n, "algorithm": "sha256", "digest": d})).collect::<Vec<_>>(),
            }
        }))
        .expect("json")
    }

    fn bundle(pair: &EcdsaKeyPair, hint: &str, payload: &[u8]) -> Vec<u8> {
        let sig = pair
            .sign(&SystemRandom::new(), &pae(PAYLOAD_TYPE, payload))
            .expect("sign");
        serde_json::to_vec(&serde_json::json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
            "dsseEnvelope": {"payload": B64.encode(payload), "payloadType": PAYLOAD_TYPE,
                             "signatures": [{"sig": B64.encode(sig.as_ref()), "keyid": ""}]}
        }))
        .expect("json")
    }

    fn sha(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    fn manifest(files: &[(&str, &str)]) -> ArtifactManifest {
        let files: Vec<ManifestFile> = files
            .iter()
            .map(|(p, c)| ManifestFile {
                path: p.to_string(),
                size: c.len() as u64,
                sha256: sha(c),
            })
            .collect();
        ArtifactManifest {
            location: "memory://x".into(),
            digest: crate::artifacts::manifest::digest(&files),
            files,
        }
    }

    #[test]
    fn a_trusted_key_signature_binds_to_the_same_files_only() {
        let (pair, pem) = key_pair();
        let trusted = TrustedSigners::from_pem(&[pem], &[]).expect("trust");
        let id = trusted.key_ids()[0].clone();
        let signed = statement(&[("MLmodel", &sha("a")), ("w.bin", &sha("b"))], &[".git"]);
        let checked = trusted
            .check(&bundle(&pair, &id, &signed))
            .expect("trusted");
        assert_eq!(checked.signer.method, "key");
        assert_eq!(checked.signer.key_id, id);
        assert_eq!(
            checked.statement_digest,
            hex::encode(Sha256::digest(&signed))
        );
        let same = manifest(&[("MLmodel", "a"), ("w.bin", "b"), (".git/HEAD", "x")]);
        assert!(bind(&checked, &same).is_empty());
        let changed = manifest(&[("MLmodel", "a"), ("w.bin", "B"), ("extra", "c")]);
        assert_eq!(
            bind(&checked, &changed),
            vec!["changed: w.bin", "not signed: extra"]
        );
    }

    #[test]
    fn untrusted_forged_and_edited_signatures_are_refused() {
        let (pair, _) = key_pair();
        let (_, other_pem) = key_pair();
        let trusted = TrustedSigners::from_pem(&[other_pem], &[]).expect("trust");
        let signed = statement(&[("MLmodel", &sha("a"))], &[]);
        // A key that is not trusted, named by its own hint or by the trusted key's.
        let own_hint = bundle(&pair, &"0".repeat(64), &signed);
        assert!(matches!(
            trusted.check(&own_hint),
            Err(SignatureError::Untrusted(_))
        ));
        let stolen_hint = bundle(&pair, &trusted.key_ids()[0], &signed);
        assert!(matches!(
            trusted.check(&stolen_hint),
            Err(SignatureError::Untrusted(_))
        ));
        // A statement edited after signing: the subject no longer matches the resources.
        let (pair, pem) = key_pair();
        let trusted = TrustedSigners::from_pem(&[pem], &[]).expect("trust");
        let mut edited: serde_json::Value = serde_json::from_slice(&signed).expect("json");
        edited["predicate"]["resources"][0]["digest"] = sha("evil").into();
        let edited = serde_json::to_vec(&edited).expect("json");
        let hint = trusted.key_ids()[0].clone();
        assert!(matches!(
            trusted.check(&bundle(&pair, &hint, &edited)),
            Err(SignatureError::Malformed(_))
        ));
        // Bytes that are not a bundle at all.
        assert!(matches!(
            trusted.check(b"{"),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            trusted.check(&vec![b' '; MAX_SIGNATURE_BYTES + 1]),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn the_key_id_is_model_signings_hint() {
        // model-signing's hint is the SHA-256 of the PEM text OpenSSL writes for the key.
        let (_, pem) = key_pair();
        let trusted = TrustedSigners::from_pem(std::slice::from_ref(&pem), &[]).expect("trust");
        assert_eq!(
            trusted.key_ids(),
            vec![hex::encode(Sha256::digest(pem.as_bytes()))]
        );
    }

    #[test]
    fn non_ec_keys_and_empty_ca_files_are_configuration_errors() {
        let ed = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
            &ed.verifying_key(),
            ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
        )
        .expect("pem");
        assert!(matches!(
            TrustedSigners::from_pem(&[pem], &[]),
            Err(SignatureError::Config(_))
        ));
        assert!(matches!(
            TrustedSigners::from_pem(&[], &["nothing here".into()]),
            Err(SignatureError::Config(_))
        ));
    }
}
