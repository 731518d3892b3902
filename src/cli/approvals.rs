//! `model-ledger request`, `approve`, `reject` and `requests`: the approval workflow (issue #17)
//! from a shell or a CI job.
//!
//! These are thin clients of the native API (`/api/v1/.../requests`): the server decides, under
//! its policies, and records every step. `approve` and `reject` name the request the way people
//! think of it, by version and target stage (there is at most one open request per pair), and
//! `requests` is the caller's inbox: open requests whose `available_actions` (computed by the
//! server's authorizer) are not empty, oldest first.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::{CliError, client, client_failure, print_json};
use crate::artifacts::client::{Client, ClientError};
use crate::config::{DecideRequestArgs, InboxArgs, RequestArgs};

fn requests_path(name: &str, version: u64) -> String {
    format!(
        "/models/{}/versions/{version}/requests",
        Client::segment(name)
    )
}

pub async fn request(args: RequestArgs) -> Result<ExitCode, CliError> {
    let c = client(&args.client)?;
    let run = async {
        let (name, version) = c.resolve(&args.uri).await?;
        c.call(
            Method::POST,
            &requests_path(&name, version),
            Some(&json!({"stage": args.stage, "comment": args.comment})),
        )
        .await
    };
    let body = run.await.map_err(|e| client_failure(&args.client, e))?;
    println!("{}", body["id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub async fn decide(args: DecideRequestArgs, verb: &str) -> Result<ExitCode, CliError> {
    let c = client(&args.client)?;
    let run = async {
        let (name, version) = c.resolve(&args.uri).await?;
        let path = requests_path(&name, version);
        let open = c
            .call(Method::GET, &format!("{path}?status=pending"), None)
            .await?;
        let wanted = args.stage.to_ascii_lowercase();
        let id = open["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["to_stage"].as_str().map(str::to_ascii_lowercase) == Some(wanted.clone()))
            .and_then(|r| r["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "no open request to move {name} version {version} to {}",
                    args.stage
                ))
            })?;
        let mut body = json!({"comment": args.comment});
        if verb == "approve" {
            body["archive_existing_versions"] = Value::Bool(args.archive_existing_versions);
        }
        c.call(Method::POST, &format!("{path}/{id}/{verb}"), Some(&body))
            .await
            .map(|r| (name, version, r))
    };
    let (name, version, body) = run.await.map_err(|e| client_failure(&args.client, e))?;
    let status = body["status"].as_str().unwrap_or_default();
    match status {
        "approved" => println!(
            "approved: {name} version {version} is now in {}",
            body["to_stage"].as_str().unwrap_or_default()
        ),
        "pending" => println!(
            "approval recorded ({} so far); the request waits for another approver",
            body["approvals"].as_array().map_or(0, Vec::len)
        ),
        other => println!(
            "request {}: {other}",
            body["id"].as_str().unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn inbox(args: InboxArgs) -> Result<ExitCode, CliError> {
    let c = client(&args.client)?;
    let body = c
        .call(Method::GET, "/requests?status=pending", None)
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    let requests: Vec<&Value> = body["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            args.all
                || r["available_actions"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        })
        .collect();
    if args.json {
        print_json(&requests)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in requests {
        let actions: Vec<&str> = r["available_actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{}  models:/{}/{}  {} -> {}  by {}  {}h old  [{}]",
            r["id"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["version"],
            r["current_stage"].as_str().unwrap_or_default(),
            r["to_stage"].as_str().unwrap_or_default(),
            r["requester"]["subject"].as_str().unwrap_or_default(),
            r["age_seconds"].as_i64().unwrap_or(0) / 3600,
            actions.join(", "),
        );
    }
    Ok(ExitCode::SUCCESS)
}
