//! Finding the state an offline command reads, without ever creating it.
//!
//! `token`, the `audit` commands, `policy replay` and `rebuild` work on what a server left in
//! its data directory (the dev signing key, the checkpoint key, the embedded SQLite file).
//! Run from the wrong directory, each used to create a fresh copy of what it looked for: a new
//! key that mints tokens the server refuses, an empty database that fails with `no such table`.
//! These checks run first and stop with a message naming the place looked in and how to
//! point the command at the right one.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::config::{DEFAULT_DATA_DIR, StoreArgs};

/// How to point a command at the data directory, appended to every "not found" message.
const HINT: &str = "run this in the directory where `model-ledger serve` was started, or pass \
                    the data directory the server printed at start (its `data dir:` line) \
                    with --data-dir DIR or MODEL_LEDGER_DATA_DIR=DIR";

/// Something an offline command needs is not where it looked.
#[derive(Debug, thiserror::Error)]
#[error("{what} not found at {} ({origin}); {hint}", path.display())]
pub struct NotFound {
    /// What was looked for, e.g. "the dev signing key".
    pub what: &'static str,
    /// Where, as an absolute path, so the message is useful whatever the current directory.
    pub path: PathBuf,
    /// Why that place: which option chose the data directory or the database.
    pub origin: String,
    pub hint: &'static str,
}

/// `path` made absolute without touching the file system (it may not exist).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Which option chose `data_dir`, in words. The config file's keys arrive as environment
/// variables (see [`crate::config::apply_config_file`]), so they share the environment's
/// wording.
fn data_dir_origin(data_dir: &Path) -> String {
    let from_env =
        std::env::var_os("MODEL_LEDGER_DATA_DIR").is_some_and(|v| Path::new(&v) == data_dir);
    if from_env {
        "data directory from MODEL_LEDGER_DATA_DIR or the config file".into()
    } else if data_dir == Path::new(DEFAULT_DATA_DIR) {
        format!(
            "the default data directory {DEFAULT_DATA_DIR}, under the current directory {}",
            absolute(Path::new(".")).display()
        )
    } else {
        "data directory from --data-dir".into()
    }
}

/// Fails unless `path`, a file the server keeps in `data_dir`, exists.
pub fn require_file(data_dir: &Path, path: &Path, what: &'static str) -> Result<(), CliError> {
    if path.is_file() {
        return Ok(());
    }
    Err(NotFound {
        what,
        path: absolute(path),
        origin: data_dir_origin(data_dir),
        hint: HINT,
    }
    .into())
}

/// The policy directory `policy validate` and `policy test` read: `--policies`, else
/// `./policies`, else the server's copy in the data directory. Unlike the server, these
/// commands never write the shipped defaults there.
pub fn existing_policy_dir(
    configured: Option<&Path>,
    data_dir: &Path,
) -> Result<PathBuf, CliError> {
    const SCHEMA: &str = "model_ledger.cedarschema";
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    let copy = data_dir.join("policies");
    if Path::new("policies").join(SCHEMA).is_file() || copy.join(SCHEMA).is_file() {
        return Ok(crate::policy::authorizer::resolve_policy_dir(
            None, data_dir,
        )?);
    }
    Err(NotFound {
        what: "the policies",
        path: absolute(&copy),
        origin: format!("no ./policies here, and {}", data_dir_origin(data_dir)),
        hint: "pass the policy directory with --policies DIR (or MODEL_LEDGER_POLICIES), run \
               this where ./policies is, or point --data-dir at a server's data directory",
    }
    .into())
}

/// The file a SQLite URL names, or `None` for an in-memory database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    (!in_memory).then(|| PathBuf::from(path))
}

/// Fails unless the store `args` name already exists. Only SQLite can be checked this way
/// (and needs to be: opening a missing file creates it); a PostgreSQL URL is left to the
/// connection, whose error names the server.
pub fn require_store(args: &StoreArgs) -> Result<(), CliError> {
    let (url, embedded) = args.resolved_url();
    let Some(path) = sqlite_path(&url) else {
        return Ok(());
    };
    if path.is_file() {
        return Ok(());
    }
    let (origin, hint) = if embedded {
        (data_dir_origin(&args.data_dir), HINT)
    } else {
        (
            "from --database-url, MODEL_LEDGER_DATABASE_URL or DATABASE_URL".into(),
            "check the URL: it must name the file the server uses",
        )
    };
    Err(NotFound {
        what: "the SQLite database",
        path: absolute(&path),
        origin,
        hint,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://./d/model-ledger.db"),
            Some(PathBuf::from("./d/model-ledger.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:/tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_path("postgres://db/ledger"), None);
    }

    #[test]
    fn a_missing_file_names_the_absolute_path_and_the_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = require_file(dir.path(), &dir.path().join("key.pem"), "the key")
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains(&dir.path().join("key.pem").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains("--data-dir") && err.contains("MODEL_LEDGER_DATA_DIR"),
            "{err}"
        );
        assert!(!dir.path().join("key.pem").exists());
    }
}
