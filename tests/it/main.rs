//! The integration test binary: one binary so everything links once (zero2prod's layout).
//!
//! Each test spawns the real server on a random port against a fresh database of its own:
//! a new PostgreSQL database on the machine's server, or a new SQLite file. Tests written with
//! [`both_backends!`] run once per backend (the conformance suite). A missing PostgreSQL makes
//! the PostgreSQL half fail loudly; nothing is skipped.

mod helpers;

mod approvals;
mod artifacts;
mod artifacts_cli;
mod artifacts_s3;
mod bad_input;
mod cli;
mod concurrency;
// the web console (issue #19)
mod console;
mod console_oidc;
mod governance;
mod hostile_input;
mod http_hardening;
mod http_outages;
mod http_tracking_passthrough;
mod mlflow_api;
mod mlflow_audit;
mod mlflow_download_uris;
mod native_api;
mod one_door;
mod operations;
mod policy_http;
mod publish;
mod reports;
mod reports_tampering;
mod serve_process;
mod store_conformance;
mod store_group_commit;
mod tools;
mod tracking;
mod walkthrough;
mod watch;
// run evidence (issue #16)
mod metrics;
mod run_pinning;
mod signatures;
// registry webhooks (issue #18)
mod webhooks;
mod webhooks_api;
mod webhooks_checkpoints;
mod webhooks_processes;
mod webhooks_store;
