//! Command-line and environment configuration.
//!
//! Every option has a flag and an environment variable of the same name
//! (`--database-url` / `MODEL_LEDGER_DATABASE_URL`) and may also come from a TOML file named by
//! `--config`: its keys are the option names with `_` (`database_url = "…"`). Precedence is
//! flag, then environment, then file, then default. The file is applied by exporting its keys
//! as environment variables before clap parses, so one mechanism serves all three sources.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "model-ledger",
    version,
    about = "Event-sourced, policy-gated ML model registry"
)]
pub struct Cli {
    /// TOML file with option values (keys as in `--help`, with `_` for `-`).
    #[arg(long, env = "MODEL_LEDGER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "MODEL_LEDGER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up; boxing the serve options would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(StoreArgs),
    /// Rebuild every projection table from the event log.
    Rebuild(StoreArgs),
    /// Copy the whole event log from one store to another (verifying the chain), then rebuild
    /// the target's projections: turns a trial SQLite install into a PostgreSQL one.
    MigrateStore(MigrateStoreArgs),
    /// Print a development token signed with the data directory's dev key (for `serve --dev-auth`).
    Token(TokenArgs),
    /// Validate or test the Cedar policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit tools: verify the hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Where the store is: a database URL, or SQLite inside the data directory.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://…`) URL. Without one, SQLite in the data
    /// directory is used. `DATABASE_URL` is read too.
    #[arg(long, env = "MODEL_LEDGER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the embedded database, artifacts and the dev signing key.
    #[arg(
        long,
        env = "MODEL_LEDGER_DATA_DIR",
        default_value = "./model-ledger-data"
    )]
    pub data_dir: PathBuf,
    /// Maximum database connections in the pool.
    #[arg(long, env = "MODEL_LEDGER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StoreArgs {
    /// The effective database URL and whether it is the embedded default.
    pub fn resolved_url(&self) -> (String, bool) {
        if let Some(url) = self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
        {
            return (url, false);
        }
        let path = self.data_dir.join("model-ledger.db");
        (format!("sqlite://{}", path.display()), true)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "MODEL_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "MODEL_LEDGER_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Accept tokens signed by a local key in the data directory (development only; see
    /// `model-ledger token`). On by default for the embedded store when no issuer is set.
    #[arg(long, env = "MODEL_LEDGER_DEV_AUTH")]
    pub dev_auth: bool,
    /// OIDC issuer URL whose tokens are accepted (repeat for several; comma-separated in env).
    #[arg(
        long = "oidc-issuer",
        env = "MODEL_LEDGER_OIDC_ISSUER",
        value_delimiter = ','
    )]
    pub oidc_issuers: Vec<String>,
    /// Accepted token audience(s) for the OIDC issuers.
    #[arg(
        long = "oidc-audience",
        env = "MODEL_LEDGER_OIDC_AUDIENCE",
        value_delimiter = ',',
        default_value = "model-ledger"
    )]
    pub oidc_audiences: Vec<String>,
    /// Claim holding the caller's groups, as a dotted path (`groups`, `roles`, `realm_access.roles`).
    #[arg(long, env = "MODEL_LEDGER_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Clock-skew leeway for `exp` and `nbf`, in seconds.
    #[arg(long, env = "MODEL_LEDGER_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Largest accepted request body, in bytes (413 above).
    #[arg(long, env = "MODEL_LEDGER_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// The MLflow tracking server that model-ledger forwards tracking calls to and reads run
/// evidence from (see docs/mlflow.md, "Tracking pass-through").
#[derive(Debug, Clone, Args)]
pub struct TrackingArgs {
    /// Base URL of the MLflow tracking server (e.g. `http://mlflow:5000`). Without it, tracking
    /// endpoints answer a JSON error naming this option.
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM")]
    pub mlflow_upstream: Option<String>,
    /// Bearer token model-ledger presents to the upstream.
    #[arg(
        long,
        env = "MODEL_LEDGER_MLFLOW_UPSTREAM_TOKEN",
        hide_env_values = true
    )]
    pub mlflow_upstream_token: Option<String>,
    /// Basic-auth user model-ledger presents to the upstream (with the password).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_USERNAME")]
    pub mlflow_upstream_username: Option<String>,
    /// Basic-auth password for `--mlflow-upstream-username`.
    #[arg(
        long,
        env = "MODEL_LEDGER_MLFLOW_UPSTREAM_PASSWORD",
        hide_env_values = true
    )]
    pub mlflow_upstream_password: Option<String>,
    /// Forward the caller's own `Authorization` (and cookies) to the upstream instead of the
    /// credentials above. Off by default: a model-ledger token is not meant for another server.
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_FORWARD_AUTH")]
    pub mlflow_upstream_forward_auth: bool,
    /// Connection timeout to the upstream (`5s`, `1m`).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub mlflow_upstream_connect_timeout: std::time::Duration,
    /// Longest silence from the upstream before a forwarded call fails with 502 (a transfer
    /// that keeps moving is never cut).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub mlflow_upstream_timeout: std::time::Duration,
    /// Largest request body forwarded to the upstream, in bytes (artifact uploads stream, so
    /// this is not held in memory).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub mlflow_upstream_max_body_bytes: u64,
}

/// Where the Cedar policies are and what the IdP calls the four roles they use.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Directory with `model_ledger.cedarschema` and `*.cedar`. Default: `./policies` if present,
    /// else the shipped defaults copied to `<data-dir>/policies`.
    #[arg(long, env = "MODEL_LEDGER_POLICIES")]
    pub policies: Option<PathBuf>,
    /// IdP group whose members get the readers' role.
    #[arg(long, env = "MODEL_LEDGER_GROUP_READERS", default_value = "ml-readers")]
    pub group_readers: String,
    /// IdP group of CI service accounts.
    #[arg(long, env = "MODEL_LEDGER_GROUP_CI", default_value = "ml-ci")]
    pub group_ci: String,
    /// IdP group of administrators.
    #[arg(long, env = "MODEL_LEDGER_GROUP_ADMINS", default_value = "ml-admins")]
    pub group_admins: String,
    /// IdP group allowed to promote to Production.
    #[arg(
        long,
        env = "MODEL_LEDGER_GROUP_RELEASE_MANAGERS",
        default_value = "ml-release-managers"
    )]
    pub group_release_managers: String,
}

impl PolicyArgs {
    pub fn group_names(&self) -> crate::policy::GroupNames {
        crate::policy::GroupNames {
            readers: self.group_readers.clone(),
            ci: self.group_ci.clone(),
            admins: self.group_admins.clone(),
            release_managers: self.group_release_managers.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the policies against the schema (file, line and Cedar's message on error).
    Validate {
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(
            long,
            env = "MODEL_LEDGER_DATA_DIR",
            default_value = "./model-ledger-data"
        )]
        data_dir: PathBuf,
    },
    /// Run a file of (principal, action, resource, context -> expected) cases.
    Test {
        /// The cases file, e.g. policies/tests/default_policies.json.
        file: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(
            long,
            env = "MODEL_LEDGER_DATA_DIR",
            default_value = "./model-ledger-data"
        )]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The data directory of the server that should accept the token.
    #[arg(
        long,
        env = "MODEL_LEDGER_DATA_DIR",
        default_value = "./model-ledger-data"
    )]
    pub data_dir: PathBuf,
    /// Subject (user or service account id).
    #[arg(long)]
    pub sub: String,
    /// Group membership (repeat for several).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Lifetime, e.g. `1h`, `30m`, `3600s`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Mint a service-account token instead of a user token.
    #[arg(long)]
    pub service_account: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateStoreArgs {
    /// Source store URL, e.g. `sqlite://./model-ledger-data/model-ledger.db`.
    #[arg(long)]
    pub from: String,
    /// Target store URL, e.g. `postgres://…`; its event log must be empty.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain over the database; exit non-zero at the first bad event.
    Verify(StoreArgs),
}

/// Parses `90s`, `30m`, `1h`, `2d` or plain seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{raw}'"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in '{raw}' (use s, m, h or d)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Exports the TOML file's keys as `MODEL_LEDGER_*` variables unless already set, so the file
/// ranks below flags and the environment. Must run before any thread starts.
pub fn apply_config_file(args: &[String]) -> Result<(), String> {
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
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {path}: {e}"))?;
    for (key, value) in table {
        let var = format!(
            "MODEL_LEDGER_{}",
            key.to_ascii_uppercase().replace('-', "_")
        );
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

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
