//! Manifests: the canonical encoding a manifest digest covers, and checks on manifests that
//! callers send.
//!
//! The digest is the lowercase hex SHA-256 of the UTF-8 text made of one line per file, sorted
//! by path (byte order), each `<sha256 hex>  <size in decimal>  <path>\n` (two spaces between
//! fields, as `sha256sum` output). The location is not covered, so the same files copied to
//! another store keep their digest. Paths cannot contain control characters (see
//! [`super::paths`]), so a line break always ends an entry. docs/artifacts.md repeats this.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ArtifactError;
use super::paths::RelPath;
use crate::domain::events::ManifestFile;

/// The canonical text of a manifest's files (what [`digest`] hashes).
pub fn canonical_text(files: &[ManifestFile]) -> String {
    let mut sorted: Vec<&ManifestFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut text = String::new();
    for f in sorted {
        text.push_str(&format!("{}  {}  {}\n", f.sha256, f.size, f.path));
    }
    text
}

/// The manifest digest over `files`.
pub fn digest(files: &[ManifestFile]) -> String {
    hex::encode(Sha256::digest(canonical_text(files).as_bytes()))
}

/// Sorts files by path, the order every manifest this server records is in.
pub fn sorted(mut files: Vec<ManifestFile>) -> Vec<ManifestFile> {
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    files
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a caller-supplied file list: valid paths, no duplicates, lowercase hex digests.
pub fn check_files(files: &[ManifestFile]) -> Result<(), ArtifactError> {
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        RelPath::parse(&f.path)?;
        if !is_sha256_hex(&f.sha256) {
            return Err(ArtifactError::InvalidManifest(format!(
                "file '{}': sha256 must be 64 lowercase hex digits",
                f.path
            )));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(ArtifactError::InvalidManifest(format!(
                "file '{}' is listed twice",
                f.path
            )));
        }
    }
    Ok(())
}

/// Human-readable differences between an expected and an actual file list (empty when equal).
pub fn differences(expected: &[ManifestFile], actual: &[ManifestFile]) -> Vec<String> {
    let exp: BTreeMap<&str, &ManifestFile> =
        expected.iter().map(|f| (f.path.as_str(), f)).collect();
    let act: BTreeMap<&str, &ManifestFile> = actual.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut out = Vec::new();
    for (path, e) in &exp {
        match act.get(path) {
            None => out.push(format!("'{path}' is missing from the store")),
            Some(a) if a.sha256 != e.sha256 || a.size != e.size => out.push(format!(
                "'{path}': expected sha256 {} ({} bytes), stored {} ({} bytes)",
                e.sha256, e.size, a.sha256, a.size
            )),
            Some(_) => {}
        }
    }
    for path in act.keys().filter(|p| !exp.contains_key(*p)) {
        out.push(format!(
            "'{path}' is stored but not in the expected manifest"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, sha: char) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            size,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn canonical_text_is_sorted_sha256sum_style_lines() {
        let files = vec![file("b", 2, 'b'), file("a/x", 1, 'a')];
        let text = canonical_text(&files);
        assert_eq!(
            text,
            format!("{}  1  a/x\n{}  2  b\n", "a".repeat(64), "b".repeat(64))
        );
        assert_eq!(digest(&files), hex::encode(Sha256::digest(text.as_bytes())));
        let reversed: Vec<_> = files.iter().rev().cloned().collect();
        assert_eq!(digest(&files), digest(&reversed));
    }

    #[test]
    fn empty_manifest_digest_is_sha256_of_nothing() {
        assert_eq!(
            digest(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(check_files(&[file("a", 1, 'a'), file("a", 1, 'b')]).is_err());
        assert!(check_files(&[file("../a", 1, 'a')]).is_err());
        assert!(check_files(&[file("a", 1, 'A')]).is_err());
        assert!(check_files(&[file("a", 1, 'a')]).is_ok());
    }
}
