//! The `model-ledger` binary: parses configuration and dispatches to a subcommand. Everything
//! else lives in the library so tests drive the same code.

use std::process::ExitCode;

use clap::Parser;
use model_ledger::config::{Cli, Commands, LogFormat, PolicyCommand, parse_duration};
use model_ledger::policy::authorizer::resolve_policy_dir;
use model_ledger::store;
use model_ledger::{app, auth, tools};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = model_ledger::config::apply_config_file(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // One process-wide TLS provider, so reqwest, sqlx and async-nats never disagree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Commands::Serve(args) => {
            let built = app::build(&args).await?;
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            let url = format!("http://{}", listener.local_addr()?);
            let data_dir = args.store.data_dir.display().to_string();
            tracing::info!(%url, database = %redact(&built.database_url), "model-ledger is listening");
            println!("model-ledger listening on {url}");
            println!("  store:    {}", redact(&built.database_url));
            println!("  data dir: {data_dir}");
            if built.dev_auth {
                println!(
                    "  get a token: model-ledger token --data-dir {data_dir} --sub alice --group ml-admins"
                );
            }
            app::serve(listener, built.state, app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Migrate(args) => {
            let (url, embedded) = args.resolved_url();
            if embedded {
                std::fs::create_dir_all(&args.data_dir)?;
            }
            store::connect(&url, 2).await?.migrate().await?;
            println!("migrations applied to {}", redact(&url));
            Ok(ExitCode::SUCCESS)
        }
        Commands::Rebuild(args) => {
            let (url, _) = args.resolved_url();
            let store = store::connect(&url, 2).await?;
            store.migrate().await?;
            let started = std::time::Instant::now();
            let count = store.rebuild_projections().await?;
            println!(
                "rebuilt projections from {count} events in {:.2?}",
                started.elapsed()
            );
            Ok(ExitCode::SUCCESS)
        }
        Commands::Token(args) => {
            let ttl = parse_duration(&args.ttl)?;
            auth::dev::ensure_dev_key(&args.data_dir)?;
            let kind = if args.service_account {
                auth::PrincipalKind::ServiceAccount
            } else {
                auth::PrincipalKind::User
            };
            let token = auth::dev::mint_token(&args.data_dir, &args.sub, &args.groups, ttl, kind)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Policy(PolicyCommand::Validate { policy, data_dir }) => {
            let dir = resolve_policy_dir(policy.policies.as_deref(), &data_dir)?;
            match model_ledger::policy::validate_dir(&dir) {
                Ok(report) => {
                    println!(
                        "policies OK: {} policies in {} ({}), digest {}",
                        report.policy_ids.len(),
                        dir.display(),
                        report.policy_files.len(),
                        report.digest
                    );
                    for warning in &report.warnings {
                        println!("warning: {warning}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Commands::Policy(PolicyCommand::Test {
            file,
            policy,
            data_dir,
        }) => {
            let dir = resolve_policy_dir(policy.policies.as_deref(), &data_dir)?;
            let report = model_ledger::policy::run_policy_tests(&dir, &file)?;
            print!("{report}");
            Ok(if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Commands::Watch(args) => {
            let Some(nats) = model_ledger::publish::NatsSettings::from_args(&args.nats) else {
                eprintln!("error: watch needs --nats-url");
                return Ok(ExitCode::from(2));
            };
            let config = model_ledger::publish::watch::WatchConfig {
                registry_url: args.registry_url,
                token: args.token,
                model: args.model,
                target: args.target,
                nats,
            };
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            println!(
                "watching {} on http://{}/current",
                config.uri(),
                listener.local_addr()?
            );
            model_ledger::publish::watch::run(config, listener, app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Push(args) => {
            let client = client(&args.client)?;
            let version = client.push(&args.name, &args.dir).await?;
            println!("{version}");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Pull(args) => {
            let client = client(&args.client)?;
            let (name, version, files) = client.pull(&args.uri, &args.dir).await?;
            eprintln!(
                "pulled {name} version {version}: {files} files into {}, every SHA-256 matched",
                args.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Commands::Verify(args) => {
            let client = client(&args.client)?;
            let report = client.verify(&args.uri).await?;
            if report.verified {
                println!(
                    "verified {}/{}: {} files, digest {}",
                    report.name,
                    report.version,
                    report.body["files"],
                    report.body["digest"].as_str().unwrap_or("")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("NOT verified {}/{}:", report.name, report.version);
            for f in report.body["failures"].as_array().into_iter().flatten() {
                let path = f["path"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("(version)");
                println!(
                    "  {path}: {} (expected {}, actual {})",
                    f["reason"].as_str().unwrap_or(""),
                    f["expected_sha256"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .unwrap_or("-"),
                    f["actual_sha256"].as_str().unwrap_or("-")
                );
            }
            Ok(ExitCode::FAILURE)
        }
        Commands::Audit(command) => Ok(model_ledger::reports::cli::run_audit(command).await?),
        Commands::Policy(PolicyCommand::Replay {
            policy,
            store,
            from,
            to,
        }) => Ok(model_ledger::reports::cli::run_replay(policy, store, from, to).await?),
        Commands::MigrateStore(args) => {
            let source = store::connect(&args.from, 4).await?;
            let target = store::connect(&args.to, 4).await?;
            target.migrate().await?;
            let head = tools::migrate_store(source.as_ref(), target.as_ref()).await?;
            println!(
                "copied {} events to {} (head {}); projections rebuilt",
                head.count,
                redact(&args.to),
                head.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn client(
    args: &model_ledger::config::ClientArgs,
) -> Result<model_ledger::artifacts::client::Client, Box<dyn std::error::Error>> {
    let mut client =
        model_ledger::artifacts::client::Client::new(&args.server, args.token.clone())?;
    client.progress = !args.no_progress;
    Ok(client)
}

/// Hides a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
