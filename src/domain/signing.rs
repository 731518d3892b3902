//! Model signatures as version evidence (issue #16), with no I/O.
//!
//! A signature is checked for *who* made it at the edge (`artifacts::signatures`, which needs
//! the configured trust), and for *what* it covers here: [`bind`] compares the signed file
//! digests with the version's manifest as `decide` sees it, inside the same command that records
//! the outcome. Doing the comparison in `decide` means the outcome is computed against exactly
//! the state the event is appended to, so a manifest that changes between the check and the
//! append (a pin landing, say) cannot be recorded as signed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::events::ArtifactManifest;

/// Lines of difference kept in a `SignatureRecorded` event; the rest are counted.
pub const MAX_RECORDED_DIFFERENCES: usize = 20;

/// Who made a signature, as established from trusted keys or CAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerIdentity {
    /// `key` or `certificate`.
    pub method: String,
    /// SHA-256 (hex) of the signing public key's PEM: model-signing's key hint.
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub san: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// A signature whose signer is trusted: who, what statement, which files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureClaim {
    pub signer: SignerIdentity,
    /// SHA-256 (hex) of the signed in-toto statement.
    pub statement_digest: String,
    /// Signed SHA-256 digests by path.
    pub files: BTreeMap<String, String>,
    /// Paths the signer left out (a file, or a directory and everything under it).
    pub ignore_paths: Vec<String>,
}

/// What a version's signature state is, as policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    /// A trusted signer signed exactly the version's files.
    Verified,
    /// A trusted signer signed other files.
    Mismatch,
}

impl SignatureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Verified => "verified",
            SignatureStatus::Mismatch => "mismatch",
        }
    }
}

fn ignored(path: &str, ignore_paths: &[String]) -> bool {
    ignore_paths.iter().any(|p| {
        let p = p.trim_end_matches('/');
        !p.is_empty()
            && (path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// Compares the signed files with the manifest by path and SHA-256. Empty: they are the same
/// files. Otherwise one line per difference, changed files first.
pub fn bind(claim: &SignatureClaim, manifest: &ArtifactManifest) -> Vec<String> {
    let mut changed = Vec::new();
    let mut unsigned = Vec::new();
    for file in &manifest.files {
        if ignored(&file.path, &claim.ignore_paths) {
            continue;
        }
        match claim.files.get(&file.path) {
            None => unsigned.push(format!("not signed: {}", file.path)),
            Some(d) if *d != file.sha256 => changed.push(format!("changed: {}", file.path)),
            Some(_) => {}
        }
    }
    let in_manifest: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for path in claim.files.keys() {
        if !in_manifest.contains(path.as_str()) {
            changed.push(format!("missing from the version: {path}"));
        }
    }
    changed.extend(unsigned);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::ManifestFile;

    fn manifest(files: &[(&str, &str)]) -> ArtifactManifest {
        ArtifactManifest {
            location: "memory://m".into(),
            digest: "0".repeat(64),
            files: files
                .iter()
                .map(|(p, d)| ManifestFile {
                    path: p.to_string(),
                    size: 1,
                    sha256: d.to_string(),
                })
                .collect(),
        }
    }

    fn claim(files: &[(&str, &str)], ignore: &[&str]) -> SignatureClaim {
        SignatureClaim {
            signer: SignerIdentity {
                method: "key".into(),
                key_id: "k".into(),
                subject: None,
                san: Vec::new(),
                issuer: None,
            },
            statement_digest: "s".into(),
            files: files
                .iter()
                .map(|(p, d)| (p.to_string(), d.to_string()))
                .collect(),
            ignore_paths: ignore.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn same_files_bind_and_every_difference_is_named() {
        let signed = claim(&[("MLmodel", "a"), ("data/w", "b")], &["model.sig", ".git"]);
        let same = manifest(&[
            ("MLmodel", "a"),
            ("data/w", "b"),
            ("model.sig", "z"),
            (".git/HEAD", "y"),
        ]);
        assert!(bind(&signed, &same).is_empty());
        let other = manifest(&[(".github/x", "d"), ("MLmodel", "A"), ("extra", "c")]);
        assert_eq!(
            bind(&signed, &other),
            vec![
                "changed: MLmodel",
                "missing from the version: data/w",
                "not signed: .github/x",
                "not signed: extra",
            ]
        );
    }

    #[test]
    fn an_ignored_directory_does_not_hide_a_sibling_with_a_longer_name() {
        let signed = claim(&[("a", "1")], &["data"]);
        let m = manifest(&[("a", "1"), ("data/x", "2"), ("database.bin", "3")]);
        assert_eq!(bind(&signed, &m), vec!["not signed: database.bin"]);
    }
}
