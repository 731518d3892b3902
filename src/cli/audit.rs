//! `model-ledger audit …`: verify the hash chain, export events, sign and check checkpoints and
//! reports, and fold a model's state as of a point in history.
//!
//! Everything here reads; none of it appends events, so an auditor can run it against a replica
//! or an export without any write access. A broken chain or report is a finding: it prints
//! `… BROKEN: …` on stdout and exits 1. An error that stops the check from running (an
//! unreadable file, an unreachable database) is returned instead, so "could not check" never
//! looks like "checked and broken".

use std::process::ExitCode;

use super::{CliError, open_store, period, print_json, write_stdout};
use crate::config::{
    AuditCommand, ExportArgs, ExportFormat, ReportArgs, ReportFormat, ReportKind, VerifyArgs,
};
use crate::reports::checkpoint::{self, Checkpoint};
use crate::reports::kinds;
use crate::reports::search::{EventFilter, Exporter, Format, export_to};
use crate::reports::{AsOf, ReportError, history, parse_time, verify};

/// The export encodings are chosen on the command line by the option type in `config` and
/// implemented by `reports`; this is the one place that knows both.
impl From<ExportFormat> for Format {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Json => Format::Json,
            ExportFormat::Ndjson => Format::Ndjson,
            ExportFormat::Csv => Format::Csv,
        }
    }
}

fn print_rows<T: serde::Serialize>(rows: &[T], format: ReportFormat) -> Result<(), CliError> {
    match format {
        ReportFormat::Json => print_json(&rows),
        ReportFormat::Csv => write_stdout(&kinds::rows_to_csv(rows)?),
    }
}

/// Runs one audit subcommand. Verification failures print `… BROKEN: …` on stdout and exit 1;
/// other errors are returned.
pub async fn run(command: AuditCommand) -> Result<ExitCode, CliError> {
    match command {
        AuditCommand::Verify(args) => run_verify(args).await,
        AuditCommand::Export(args) => run_export(args).await,
        AuditCommand::Checkpoint { store, checkpoint } => {
            let key = existing_key(&store.data_dir)?;
            let db = open_store(&store).await?;
            let record = checkpoint::make_checkpoint(db.as_ref(), &key, &checkpoint.origin).await?;
            print!("{}", record.note);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::PublicKey { data_dir } => {
            let key = existing_key(&data_dir)?;
            print!("{}", checkpoint::public_key_pem(&key.verifying_key())?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Report(args) => run_report(args).await,
        AuditCommand::VerifyReport {
            report,
            file,
            public_key,
        } => {
            let text = std::fs::read_to_string(&report)
                .map_err(|e| ReportError::io(format!("reading {}", report.display()), e))?;
            let signed: kinds::SignedReport = serde_json::from_str(&text)
                .map_err(|e| ReportError::Invalid(format!("{}: {e}", report.display())))?;
            let key = checkpoint::read_public_key(&public_key)?;
            let export = open_file(&file)?;
            match kinds::verify_report(&signed, &key, export) {
                Ok(check) => {
                    println!(
                        "report OK: {} rows, signed, chain verified through position {} (hash {}); export has {} events",
                        check.rows, check.through_position, check.through_hash, check.export_events
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ (ReportError::Io { .. } | ReportError::Store(_))) => Err(e.into()),
                Err(e) => {
                    println!("report BROKEN: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::State { name, as_of, store } => {
            let db = open_store(&store).await?;
            let position = AsOf::parse(&as_of)?.resolve(db.as_ref()).await?;
            match history::model_as_of(db.as_ref(), &name, position).await? {
                Some(state) => {
                    print_json(&state)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no live model named '{name}' at position {position}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// The server's checkpoint signing key. Never created here: a key made in the wrong directory
/// would sign checkpoints that no auditor's copy of the real public key accepts.
fn existing_key(data_dir: &std::path::Path) -> Result<ed25519_dalek::SigningKey, CliError> {
    let path = checkpoint::key_path(data_dir);
    super::data_dir::require_file(data_dir, &path, "the checkpoint signing key")?;
    Ok(checkpoint::load_or_create_key(data_dir)?)
}

fn open_file(path: &std::path::Path) -> Result<std::io::BufReader<std::fs::File>, ReportError> {
    std::fs::File::open(path)
        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(|e| ReportError::io(format!("opening {}", path.display()), e))
}

async fn run_verify(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let checkpoint = match &args.checkpoint {
        None => None,
        Some(path) => {
            let note = std::fs::read_to_string(path)
                .map_err(|e| ReportError::io(format!("reading {}", path.display()), e))?;
            let key = match &args.public_key {
                Some(p) => Some(checkpoint::read_public_key(p)?),
                None => {
                    let own = checkpoint::key_path(&args.store.data_dir);
                    own.is_file()
                        .then(|| checkpoint::read_public_key(&own))
                        .transpose()?
                }
            };
            if key.is_none() {
                eprintln!(
                    "warning: no public key given and none in the data directory; the checkpoint's signature is NOT checked"
                );
            }
            Some(Checkpoint::parse(&note, key.as_ref())?)
        }
    };
    let started = std::time::Instant::now();
    let result = match &args.file {
        Some(file) => verify::verify_ndjson(open_file(file)?, checkpoint),
        None => {
            let db = open_store(&args.store).await?;
            verify::verify_store(db.as_ref(), checkpoint).await
        }
    };
    match result {
        Ok(v) => {
            // The rate goes to stderr: stdout is the verdict scripts match on.
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "verified {} events in {secs:.2}s ({:.0} events/s)",
                v.count,
                v.count as f64 / secs.max(1e-9)
            );
            match v.checkpoint_position {
                Some(p) => println!(
                    "chain OK: {} events, head {}; matches the checkpoint at position {p}",
                    v.count, v.head_hash
                ),
                None => println!("chain OK: {} events, head {}", v.count, v.head_hash),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ReportError::Io { .. } | ReportError::Store(_))) => Err(e.into()),
        Err(broken) => {
            println!("chain BROKEN: {broken}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run_export(args: ExportArgs) -> Result<ExitCode, CliError> {
    let filter = EventFilter {
        model: args.model,
        version: args.version,
        event_types: args.event_types,
        actor: args.actor,
        group: args.group,
        policy_id: args.policy_id,
        from: args.from.as_deref().map(parse_time).transpose()?,
        to: args.to.as_deref().map(parse_time).transpose()?,
        after: args.after,
        before: args.before,
        limit: args.limit,
    };
    let db = open_store(&args.store).await?;
    let exporter = Exporter::new(db, filter, args.format.into())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let count = match export_to(exporter, &mut out).await {
        Ok(count) => count,
        // The export's only I/O is writing to `out`, so this is stdout failing.
        Err(ReportError::Io { source, .. }) => return Err(CliError::stdout(source)),
        Err(other) => return Err(other.into()),
    };
    drop(out);
    eprintln!("exported {count} events");
    Ok(ExitCode::SUCCESS)
}

async fn run_report(args: ReportArgs) -> Result<ExitCode, CliError> {
    let db = open_store(&args.store).await?;
    let period = period(&args.from, &args.to)?;
    match args.kind {
        ReportKind::Promotions if args.sign => {
            let key = existing_key(&args.store.data_dir)?;
            let report = kinds::signed_promotions(
                db.as_ref(),
                period,
                args.production_only,
                &key,
                &args.checkpoint.origin,
            )
            .await?;
            print_json(&report)?;
        }
        ReportKind::Promotions => {
            let rows = kinds::promotions(db.as_ref(), period, args.production_only).await?;
            print_rows(&rows, args.format)?;
        }
        ReportKind::Sod => {
            let rows = kinds::promotions(db.as_ref(), period, args.production_only).await?;
            print_rows(&kinds::sod_rows(&rows, args.violations_only), args.format)?;
        }
        ReportKind::UnverifiedProduction => {
            print_rows(
                &kinds::unverified_in_production(db.as_ref()).await?,
                args.format,
            )?;
        }
        ReportKind::StageDurations => {
            print_rows(
                &kinds::stage_durations(db.as_ref(), period).await?,
                args.format,
            )?;
        }
        ReportKind::Denials => {
            print_rows(&kinds::denials(db.as_ref(), period).await?, args.format)?;
        }
        ReportKind::Requests => {
            print_rows(
                &crate::reports::requests::requests(db.as_ref(), period).await?,
                args.format,
            )?;
        }
        ReportKind::Stages => {
            let position = match &args.as_of {
                Some(raw) => AsOf::parse(raw)?.resolve(db.as_ref()).await?,
                None => db.head().await?.0,
            };
            print_rows(
                &history::stages_as_of(db.as_ref(), position).await?,
                args.format,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
