//! Registry webhooks (issue #18): MLflow 3's webhook subscriptions, delivered from the event log.
//!
//! MLflow 3 delivers webhooks from an in-process thread pool, so an event committed just before a
//! crash is never sent. model-ledger instead derives deliveries from committed events (the same
//! log the outbox relay reads), which gives "nothing committed is lost, nothing uncommitted is
//! sent". This module holds the parts that do not depend on storage or HTTP wiring:
//!
//! - [`signing`]: the signature headers, MLflow's (`X-MLflow-Signature`, `X-MLflow-Timestamp`,
//!   `X-MLflow-Delivery-Id`) and the same HMAC under Standard Webhooks' names, with several
//!   signatures while a secret is being rotated.
//! - [`target`]: which receiver URLs are allowed (the SSRF rules) and MLflow's wording for the
//!   ones that are refused.
//! - [`events`]: the event names and payloads a receiver gets, MLflow's where MLflow has them.
//! - [`retry`]: which failed attempts are retried, the backoff with jitter, `Retry-After`, the window.
//! - [`secrets`]: webhook secrets sealed at rest with AES-256-GCM under a configured key.

pub mod events;
pub mod retry;
pub mod secrets;
pub mod signing;
pub mod target;
