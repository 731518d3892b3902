//! The `--config` TOML file: its keys become `MODEL_LEDGER_*` environment defaults.
//!
//! Keys are checked against the options before anything is exported. A misspelt key
//! (`listen_adress`) or a `[section]` used to be exported as a variable nothing reads, so
//! the setting silently did not apply; now it is an error naming the key and the nearest
//! valid one.

use std::collections::BTreeSet;

use clap::CommandFactory as _;

use super::Cli;

/// Why the config file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error(
        "config file {path}: unknown key `{key}`; did you mean `{nearest}`? (keys are the \
         options of `model-ledger <command> --help`, with `_` for `-`)"
    )]
    UnknownKey {
        path: String,
        key: String,
        nearest: String,
    },
    #[error(
        "config file {path}: unknown section `[{name}]`; options are top-level keys, not \
         sections (the nearest key is `{nearest}`)"
    )]
    Section {
        path: String,
        name: String,
        nearest: String,
    },
}

/// The keys a config file may set: every option that has a `MODEL_LEDGER_*` variable (the
/// file works by exporting those), in file spelling (`database_url`). Options without one
/// (`--sub`, `--ttl`) cannot come from the file, so they are not keys.
pub fn valid_keys() -> BTreeSet<String> {
    fn walk(command: &clap::Command, keys: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|e| e.to_str())
                && let Some(name) = env.strip_prefix("MODEL_LEDGER_")
                && name != "CONFIG"
            {
                keys.insert(name.to_ascii_lowercase());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, keys);
        }
    }
    let mut keys = BTreeSet::new();
    walk(&Cli::command(), &mut keys);
    keys
}

/// `key` as the file's key and as its variable suffix: `database-url` and `database_url`
/// are the same key.
fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// The valid key closest to `key` by edit distance.
fn nearest(key: &str, keys: &BTreeSet<String>) -> String {
    keys.iter()
        .min_by_key(|k| strsim::levenshtein(key, k))
        .cloned()
        .unwrap_or_default()
}

/// Refuses the first key no option reads, and any section.
pub fn check_keys(path: &str, table: &toml::Table) -> Result<(), ConfigFileError> {
    let keys = valid_keys();
    for (key, value) in table {
        let normalized = normalize(key);
        if value.is_table() {
            return Err(ConfigFileError::Section {
                path: path.into(),
                name: key.clone(),
                nearest: nearest(&normalized, &keys),
            });
        }
        if !keys.contains(&normalized) {
            return Err(ConfigFileError::UnknownKey {
                path: path.into(),
                key: key.clone(),
                nearest: nearest(&normalized, &keys),
            });
        }
    }
    Ok(())
}

/// Exports the TOML file's keys as `MODEL_LEDGER_*` variables unless already set, so the file
/// ranks below flags and the environment. Must run before any thread starts.
pub fn apply_config_file(args: &[String]) -> Result<(), ConfigFileError> {
    let from_args = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let Some(path) = from_args.or_else(|| std::env::var("MODEL_LEDGER_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
    check_keys(&path, &table)?;
    for (key, value) in table {
        let var = format!("MODEL_LEDGER_{}", normalize(&key).to_ascii_uppercase());
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        if std::env::var_os(&var).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread exists.
            unsafe { std::env::set_var(&var, text) };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), ConfigFileError> {
        check_keys("ledger.toml", &text.parse().expect("valid TOML"))
    }

    #[test]
    fn known_keys_pass_in_either_spelling() {
        check("listen = \"127.0.0.1:9000\"\ndatabase-url = \"sqlite://x.db\"\nnats_url = \"nats://n\"")
            .expect("known keys");
    }

    #[test]
    fn a_typo_names_the_key_and_the_nearest_option() {
        let err = check("listen_adress = \"x\"")
            .expect_err("typo")
            .to_string();
        assert!(
            err.contains("`listen_adress`") && err.contains("`listen`"),
            "{err}"
        );
        let err = check("data_dri = \"x\"").expect_err("typo").to_string();
        assert!(err.contains("`data_dir`"), "{err}");
    }

    #[test]
    fn sections_are_refused() {
        let err = check("[server]\nlisten = \"x\"")
            .expect_err("section")
            .to_string();
        assert!(
            err.contains("`[server]`") && err.contains("top-level"),
            "{err}"
        );
    }

    #[test]
    fn options_without_a_variable_are_not_keys() {
        assert!(valid_keys().contains("oidc_groups_claim"));
        assert!(!valid_keys().contains("ttl"));
        assert!(!valid_keys().contains("config"));
    }
}
