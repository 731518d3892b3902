//! `models:/…` URIs, as MLflow clients write them.
//!
//! `models:/NAME/3` (a version), `models:/NAME/Production` (the latest version in a stage),
//! `models:/NAME/latest` (the highest live version) and `models:/NAME@champion` (an alias).
//! Names may themselves contain `/`, so the reference is what follows the *last* `/` (or `@`).

use super::names::{AliasName, ModelName, NameError, Stage};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRef {
    Number(u64),
    Stage(Stage),
    Latest,
    Alias(AliasName),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelUri {
    pub name: ModelName,
    pub reference: VersionRef,
}

pub fn parse_model_uri(raw: &str) -> Result<ModelUri, NameError> {
    let path = raw
        .strip_prefix("models:/")
        .ok_or_else(|| NameError(format!("'{raw}' is not a models:/ URI")))?;
    let path = path.trim_start_matches('/');
    if let Some((name, alias)) = path.rsplit_once('@')
        && !alias.contains('/')
    {
        return Ok(ModelUri {
            name: ModelName::parse(name)?,
            reference: VersionRef::Alias(AliasName::parse(alias)?),
        });
    }
    let (name, reference) = path.rsplit_once('/').ok_or_else(|| {
        NameError(format!(
            "'{raw}' must look like models:/NAME/VERSION, models:/NAME/STAGE, models:/NAME/latest or models:/NAME@ALIAS"
        ))
    })?;
    let reference = if reference.eq_ignore_ascii_case("latest") {
        VersionRef::Latest
    } else if let Ok(n) = reference.parse::<u64>() {
        VersionRef::Number(n)
    } else {
        VersionRef::Stage(Stage::parse(reference)?)
    };
    Ok(ModelUri {
        name: ModelName::parse(name)?,
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses() {
        let p = |s| parse_model_uri(s).unwrap();
        assert_eq!(p("models:/churn/3").reference, VersionRef::Number(3));
        assert_eq!(
            p("models:/churn/Production").reference,
            VersionRef::Stage(Stage::Production)
        );
        assert_eq!(p("models:/churn/latest").reference, VersionRef::Latest);
        let alias = p("models:/churn@champion");
        assert_eq!(alias.name.as_str(), "churn");
        assert_eq!(
            alias.reference,
            VersionRef::Alias(AliasName::parse("champion").unwrap())
        );
        assert_eq!(p("models:/team/churn/2").name.as_str(), "team/churn");
    }

    #[test]
    fn malformed_uris_are_refused() {
        for bad in [
            "runs:/abc/model",
            "models:/churn",
            "models:/churn/Prod",
            "models:/@x",
            "models:/churn@latest",
        ] {
            assert!(parse_model_uri(bad).is_err(), "{bad}");
        }
    }
}
