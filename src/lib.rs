//! model-ledger: an event-sourced, policy-gated ML model registry.
//!
//! Every registry action is an immutable, hash-chained event; current state is a projection of
//! those events written in the same transaction. The modules follow the data flow of a write:
//!
//! - [`domain`]: names, events, state and `decide`; pure, no I/O.
//! - [`store`]: the [`store::Store`] trait (append, projections, outbox, reads) with PostgreSQL
//!   and SQLite implementations.
//! - [`auth`]: OIDC bearer tokens (and local dev tokens) into principals.
//! - [`policy`]: Cedar policies from `policies/` decide every action.
//! - [`artifacts`]: artifact stores (object_store), uploads, manifests and verification.
//! - [`service`]: the one command path: load → decide → authorize → append (+ project + outbox).
//! - [`publish`]: the outbox relay to NATS JetStream and the SSE event stream.
//! - [`api`]: HTTP (native `/api/v1` and MLflow-compatible) over the service.
//! - [`console`]: the web console at `/`: server-rendered pages over the same service.
//! - [`app`], [`config`]: wiring and configuration of the `model-ledger` binary.
//! - [`cli`]: the binary's subcommands, one file each, over the modules above.
//! - [`tracking`]: the MLflow tracking server behind model-ledger (pass-through, run evidence).
//! - [`reports`]: compliance reporting: audit search and export, time travel, reports, signed
//!   checkpoints, offline verification and policy what-if.

pub mod api;
pub mod app;
pub mod artifacts;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod policy;
pub mod publish;
pub mod reports;
pub mod service;
pub mod store;
pub mod tracking;
// Registry webhooks (issue #18).
pub mod webhooks;
