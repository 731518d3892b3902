//! `model-ledger watch`: a small downstream deployment that follows `models:/NAME/STAGE` or
//! `@ALIAS` over NATS (or the server's event stream), puts each new version in place and serves
//! what it runs on `GET /current`.
//!
//! It exists to show (and test) the consumer side of the event stream: a deployment that swaps
//! models on promotion without polling the registry.

use std::process::ExitCode;

use super::CliError;
use crate::app;
use crate::config::WatchArgs;
use crate::publish::NatsSettings;
use crate::publish::watch::{self, WatchConfig};

pub async fn run(args: WatchArgs) -> Result<ExitCode, CliError> {
    let (model, target) = target_of(&args)?;
    let config = WatchConfig {
        registry_url: args.client.server.clone(),
        token: args.client.token.clone(),
        model,
        target,
        nats: NatsSettings::connect_to(&args.nats),
        download_dir: args.dir.clone(),
        hook: args.hook.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "watching {} on http://{}/current (events from {})",
        config.uri(),
        listener.local_addr()?,
        if config.nats.is_some() {
            "NATS"
        } else {
            "the registry's event stream"
        }
    );
    watch::run(config, listener, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The model and the stage or `@alias` to follow, from a URI or from --model / --target.
fn target_of(args: &WatchArgs) -> Result<(String, String), CliError> {
    let (model, target) = match (&args.uri, &args.model) {
        (Some(uri), _) => split_uri(uri)?,
        (None, Some(model)) => (model.clone(), args.target.clone()),
        (None, None) => {
            return Err(CliError::Invalid(
                "watch needs a URI to follow, e.g. `model-ledger watch models:/churn/Production` \
                 (or --model NAME [--target STAGE|@ALIAS])"
                    .into(),
            ));
        }
    };
    if target.trim_start_matches('@').is_empty() || target.chars().all(|c| c.is_ascii_digit()) {
        return Err(CliError::Invalid(format!(
            "'{target}' names a fixed version, which never changes; follow a stage \
             (models:/{model}/Production) or an alias (models:/{model}@champion)"
        )));
    }
    Ok((model, target))
}

/// `models:/NAME/STAGE` → (NAME, STAGE); `models:/NAME@ALIAS` → (NAME, @ALIAS).
fn split_uri(uri: &str) -> Result<(String, String), CliError> {
    let bad = || {
        CliError::Invalid(format!(
            "'{uri}' is not a URI watch can follow: expected models:/NAME/STAGE or models:/NAME@ALIAS"
        ))
    };
    let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
    if let Some((name, alias)) = rest.rsplit_once('@')
        && !name.is_empty()
        && !alias.is_empty()
        && !alias.contains('/')
    {
        return Ok((name.to_owned(), format!("@{alias}")));
    }
    match rest.rsplit_once('/') {
        Some((name, stage)) if !name.is_empty() && !stage.is_empty() => {
            Ok((name.to_owned(), stage.to_owned()))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_model_and_target() {
        let split = |uri: &str| split_uri(uri).map_err(|e| e.to_string());
        assert_eq!(
            split("models:/churn/Production"),
            Ok(("churn".into(), "Production".into()))
        );
        assert_eq!(
            split("models:/team/churn@champion"),
            Ok(("team/churn".into(), "@champion".into()))
        );
        assert!(split("churn/Production").is_err());
        assert!(split("models:/churn").is_err());
    }
}
