//! The registry's rules, with no I/O.
//!
//! Everything here is pure: commands come in, events go out, and state is a fold over events.
//! The store, the policy engine and the HTTP layers all depend on this module and never the
//! other way round, which is what lets the invariants be unit-tested without a database and lets
//! the same rules run against PostgreSQL and SQLite.
//!
//! - [`action`]: the closed set of actions a caller is authorized for.
//! - [`names`]: validated names (model, alias, tag key) and the [`Stage`] enum, parsed at the edge.
//! - [`events`]: the immutable facts we record, and the envelope that carries them.
//! - [`state`]: [`ModelState`], the fold of one model's stream; also what projections are built from.
//! - [`command`]: what a caller asks for.
//! - [`decide`]: `decide(state, command) -> events`, where every invariant is enforced.
//! - [`chain`]: canonical event bytes and the SHA-256 hash chain.
//! - [`uri`]: `models:/…` URIs.
//! - [`approval`]: the transition-request rules of the approval workflow (#17): binding,
//!   expiry, no self-approval, one principal counts once.
//! - [`signing`]: how a trusted model signature is bound to a version's files (#16).

pub mod action;
// Approval workflow (#17).
pub mod approval;
pub mod chain;
pub mod command;
pub mod decide;
pub mod events;
pub mod names;
// Model signatures as evidence (#16).
pub mod signing;
pub mod state;
pub mod uri;

pub use action::Action;
pub use command::Command;
pub use decide::{DecideContext, DomainError, decide, decide_in};
pub use events::{Actor, EventEnvelope, EventPayload, NewEvent};
pub use names::{AliasName, ModelName, Stage, TagKey};
pub use state::{ModelState, VersionState};
