//! model-ledger: an event-sourced, policy-gated ML model registry.
//!
//! Every registry action is an immutable, hash-chained event; current state is a projection of
//! those events written in the same transaction. The modules follow the data flow of a write:
//!
//! - [`domain`]: names, events, state and `decide`; pure, no I/O.
//! - [`auth`]: bearer tokens (OIDC issuers or the dev key) → verified [`auth::Principal`].
//! - [`store`]: the [`store::Store`] trait (append, projections, outbox, reads) with PostgreSQL
//!   and SQLite implementations.
//! - [`service`]: the one command path: load → decide → authorize → append (+ project + outbox).
//! - [`api`]: HTTP (native `/api/v1` and MLflow-compatible) over the service.
//! - [`config`], [`telemetry`]: settings and logs/metrics.

pub mod auth;
pub mod domain;
