//! Validated identifiers, parsed once at the edge ("parse, don't validate").
//!
//! Every value that reaches [`super::decide`] has already passed these checks, so the rules live
//! in exactly one place and the API layers only translate a [`NameError`] into a 400.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name or stage was refused. The message is shown to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A registered model's name: 1–256 characters, no control characters. Case-sensitive, as in
/// MLflow, so `Churn` and `churn` are two models.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: impl Into<String>) -> Result<Self, NameError> {
        let raw = raw.into();
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(NameError("model name must not be empty".into()));
        }
        if chars > Self::MAX_CHARS {
            return Err(NameError(format!(
                "model name is {chars} characters long; the limit is {}",
                Self::MAX_CHARS
            )));
        }
        if has_control_chars(&raw) {
            return Err(NameError(
                "model name must not contain control characters".into(),
            ));
        }
        // URL parsers resolve a path segment `.` or `..` (encoded as `%2E%2E` too, per the URL
        // standard) before it is sent, so such a model could never be addressed by the native
        // API or pulled; refusing the name keeps every valid name usable everywhere.
        if raw == "." || raw == ".." {
            return Err(NameError(format!(
                "model name must not be '{raw}' (URLs cannot carry it as a path segment)"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How recorded names are read back (events, snapshots). The dot-segment rule is newer than
/// the log, so it is not applied here: a model created as `..` before the rule stays readable.
/// Requests never deserialize into `ModelName`; handlers call [`ModelName::parse`].
impl TryFrom<String> for ModelName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "." | ".." => Ok(Self(value)),
            _ => Self::parse(value),
        }
    }
}

impl From<ModelName> for String {
    fn from(value: ModelName) -> Self {
        value.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An alias such as `champion`. MLflow's rules: letters, digits, `_` and `-`, at most 255
/// characters, and not `latest` or `v<digits>`, which would be ambiguous with `models:/name/latest`
/// and version references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AliasName(String);

impl AliasName {
    pub fn parse(raw: impl Into<String>) -> Result<Self, NameError> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > 255 {
            return Err(NameError("alias must be 1 to 255 characters long".into()));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(NameError(format!(
                "alias '{raw}' may contain only letters, digits, '_' and '-'"
            )));
        }
        let lower = raw.to_ascii_lowercase();
        let looks_like_version = lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].chars().all(|c| c.is_ascii_digit());
        if lower == "latest" || looks_like_version {
            return Err(NameError(format!(
                "alias '{raw}' is reserved: 'latest' and 'v<number>' would be ambiguous with version references"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AliasName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<AliasName> for String {
    fn from(value: AliasName) -> Self {
        value.0
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag key: 1–250 characters (MLflow's limit), no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagKey(String);

/// Model tags with this prefix declare a quality gate: `gate.f1 = "0.78"` requires metric `f1`
/// to be at least 0.78 for Production. Such tags are rules, not labels, so changing one is the
/// governed `ChangeGate` action rather than an ordinary update.
pub const GATE_TAG_PREFIX: &str = "gate.";

impl TagKey {
    /// Whether the policies read this model tag as a rule (see [`GATE_TAG_PREFIX`]).
    pub fn is_gate(&self) -> bool {
        self.0.starts_with(GATE_TAG_PREFIX)
    }

    pub fn parse(raw: impl Into<String>) -> Result<Self, NameError> {
        let raw = raw.into();
        let chars = raw.chars().count();
        if chars == 0 || chars > 250 {
            return Err(NameError("tag key must be 1 to 250 characters long".into()));
        }
        if has_control_chars(&raw) {
            return Err(NameError(
                "tag key must not contain control characters".into(),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TagKey {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<TagKey> for String {
    fn from(value: TagKey) -> Self {
        value.0
    }
}

/// Tag values may be long (MLflow allows 5000 characters) but are bounded so a tag cannot be
/// used to smuggle a large blob into every event and projection row.
pub const MAX_TAG_VALUE_CHARS: usize = 5000;

/// The four MLflow stages. Parsing is case-insensitive (MLflow accepts `production`), the
/// canonical spelling is what we store and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn parse(raw: &str) -> Result<Self, NameError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Stage::None),
            "staging" => Ok(Stage::Staging),
            "production" => Ok(Stage::Production),
            "archived" => Ok(Stage::Archived),
            _ => Err(NameError(format!(
                "invalid stage '{raw}': expected one of None, Staging, Production, Archived"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_the_documented_rules() {
        assert!(ModelName::parse("churn-model").is_ok());
        assert!(ModelName::parse("a/b with spaces ünïcode").is_ok());
        assert!(ModelName::parse("").is_err());
        assert!(ModelName::parse("x".repeat(256)).is_ok());
        assert!(ModelName::parse("x".repeat(257)).is_err());
        assert!(ModelName::parse("tab\there").is_err());
        assert!(ModelName::parse("nul\0").is_err());
        assert_ne!(
            ModelName::parse("Churn").unwrap(),
            ModelName::parse("churn").unwrap()
        );
    }

    #[test]
    fn aliases_reject_reserved_and_odd_characters() {
        assert!(AliasName::parse("champion").is_ok());
        assert!(AliasName::parse("blue_green-2").is_ok());
        assert!(AliasName::parse("latest").is_err());
        assert!(AliasName::parse("V12").is_err());
        assert!(AliasName::parse("v").is_ok());
        assert!(AliasName::parse("has space").is_err());
        assert!(AliasName::parse("").is_err());
    }

    #[test]
    fn stages_parse_case_insensitively_to_canonical_names() {
        assert_eq!(Stage::parse("production").unwrap(), Stage::Production);
        assert_eq!(Stage::parse("STAGING").unwrap().as_str(), "Staging");
        assert_eq!(Stage::parse("None").unwrap(), Stage::None);
        assert!(Stage::parse("prod").is_err());
    }
}
