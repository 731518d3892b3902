//! model-ledger: an event-sourced, policy-gated ML model registry.
//!
//! Every registry action is an immutable, hash-chained event; current state is a projection of
//! those events written in the same transaction. The modules follow the data flow of a write:
//!
//! - [`domain`]: names, events, state and `decide`; pure, no I/O.
//! - [`store`]: the [`store::Store`] trait (append, projections, outbox, reads) with PostgreSQL
//!   and SQLite implementations.
//! - [`policy`]: Cedar authorization: loads `policies/`, builds entities, records decisions.
//! - [`service`]: the one command path: load → decide → authorize → append (+ project + outbox).
//! - [`api`]: HTTP (native `/api/v1` and MLflow-compatible) over the service.
//! - [`config`], [`telemetry`]: settings and logs/metrics.

pub mod domain;
pub mod policy;
