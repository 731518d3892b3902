//! Artifact file names: the only way a caller-supplied name becomes an object key.
//!
//! A file name is a relative path of `/`-separated segments. Anything that could leave the
//! version's prefix or mean different things to different stores is refused here, before any
//! byte is written: `..` and `.` segments, absolute paths, empty segments (`a//b`, a trailing
//! `/`), backslashes (a separator on Windows), NUL and other control characters. The accepted
//! segments become an [`object_store::path::Path`] through `Path::from_iter`, which
//! percent-encodes whatever a store treats specially, so even an encoded `%2e%2e` stays a
//! literal name.

use object_store::path::Path;

use super::ArtifactError;

/// Longest accepted relative path, in bytes (S3 keys are limited to 1024 in total).
pub const MAX_PATH_BYTES: usize = 900;

/// A validated relative artifact path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(raw: &str) -> Result<Self, ArtifactError> {
        let bad =
            |why: &str| ArtifactError::InvalidPath(format!("'{}': {why}", raw.escape_debug()));
        if raw.is_empty() {
            return Err(bad("empty file name"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad("file name is too long"));
        }
        if raw.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if raw.contains('\\') {
            return Err(bad("backslashes are not allowed"));
        }
        if raw.chars().any(char::is_control) {
            return Err(bad("NUL and control characters are not allowed"));
        }
        for segment in raw.split('/') {
            match segment {
                "" => return Err(bad("empty path segments are not allowed")),
                "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
                _ => {}
            }
        }
        Ok(RelPath(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The object key of this file under `prefix` (a key prefix inside one store).
    pub fn under(&self, prefix: &Path) -> Path {
        prefix
            .parts()
            .chain(self.segments().map(Into::into))
            .collect()
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_model_files_are_accepted() {
        for ok in [
            "MLmodel",
            "model.pkl",
            "data/model.pt",
            "a b/c-d_e.txt",
            "..hidden",
            "x..y",
        ] {
            assert!(RelPath::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn traversal_and_ambiguous_names_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            ".",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "a\0b",
            "a\nb",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_encoded_under_the_prefix() {
        let p = RelPath::parse("d/%2e%2e/f").unwrap_or_else(|e| panic!("{e}"));
        let key = p.under(&Path::from("models/m/u1"));
        assert_eq!(key.as_ref(), "models/m/u1/d/%252e%252e/f");
    }
}
