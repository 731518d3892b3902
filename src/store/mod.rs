//! Storage: the event log, its projections and the outbox, behind a few role traits.
//!
//! An append is one transaction that (1) checks the stream's expected version, (2) rewrites the
//! projection rows the events touch and the model's snapshot, (3) takes the single chain head,
//! numbers the events with gapless global positions and links their hashes, and (4) writes one
//! outbox row per event. PostgreSQL and SQLite run the same SQL (see [`sql`]); a small
//! [`dialect::Dialect`] supplies only what differs between them.
//!
//! Callers see the store through the role they need: [`EventLog`] (the write path and the log),
//! [`RegistryReads`] (projection reads), [`Outbox`] (what the relay publishes, and its leader
//! lease), [`Audit`] (refused requests and signed checkpoints), [`Admin`] (migrations,
//! health, rebuilds), [`UploadSessions`] (artifact uploads in progress, shared by every
//! process), [`ConsoleSessions`] (web console sign-ins) and [`Webhooks`] (webhook
//! subscriptions, their delivery queue and the
//! fan-out cursor). [`Store`] is all of them, so one `Arc<dyn Store>` serves every role, and a
//! function that only reads can say so by taking `&dyn RegistryReads`.
//!
//! Reads come from the projection tables, never from folding events, except `load_model`, which
//! returns the snapshot `decide` needs. Nothing outside this module names the database driver:
//! its errors arrive classified as [`StoreError`].

mod admin;
pub mod commits;
pub mod dialect;
pub mod group;
mod nodelay;
pub mod postgres;
pub mod probe;
pub mod projection;
mod sql;
pub mod sqlite;
pub mod views;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::events::{Actor, EventEnvelope, NewEvent};
use crate::domain::state::ModelState;
use crate::domain::uri::ModelUri;
pub use admin::{Admin, RebuildPause, RebuildReport};
pub use commits::CommitClock;
pub use sql::EventColumns as StoredEvent;
pub use views::{LastChange, ModelView, VersionView};

pub type SharedStore = Arc<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first; the command should be decided again.
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    Conflict {
        stream_id: Uuid,
        expected: i64,
        actual: i64,
    },
    /// A unique projection key (e.g. a live model's name) is taken.
    #[error("unique constraint violated: {0}")]
    Unique(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database cannot be reached right now (pool timed out or closed, I/O or TLS failure,
    /// connection refused or dropped): worth retrying later, answered 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other failure reported by the database driver.
    #[error("database error: {0}")]
    Backend(String),
    #[error("migration failed: {0}")]
    Migrate(String),
    /// The store cannot be opened as configured (e.g. an unsupported URL).
    #[error("store configuration: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Events a model's stored snapshot may lag behind its stream. Loading a model folds at most
/// this many events onto the snapshot; appending rewrites the snapshot (the whole model, every
/// version) only once per this many events, so a write costs the same however large the model.
pub const SNAPSHOT_EVERY: i64 = 32;

/// A live model's identity and stream position (see [`EventLog::model_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHead {
    pub model_id: String,
    pub stream_version: i64,
    /// The stream version the stored snapshot is at.
    pub snapshot_version: i64,
}

/// Everything one command appends, decided and authorized outside the transaction.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub stream_id: Uuid,
    /// The stream version the command was decided against (0 for a new stream).
    pub expected_version: i64,
    /// The model's name after the events (what the events are filed under).
    pub model_name: String,
    pub events: Vec<NewEvent>,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub decision: Option<serde_json::Value>,
    /// The model's state after the events, as decided: the store derives from it (and the
    /// events' payloads) which projection rows to rewrite.
    pub state: Arc<ModelState>,
    /// Whether this append rewrites the model's snapshot (see [`SNAPSHOT_EVERY`]).
    pub write_snapshot: bool,
    pub idempotency: Option<IdempotencyRecord>,
}

/// A stored response for an `Idempotency-Key`, written in the same transaction as the events it
/// answers for, so a retry either finds it or finds nothing was written.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// A refused request, kept in the append-only access-decision log.
#[derive(Debug, Clone)]
pub struct AccessDenial {
    /// Chosen by the caller, so later repeats of the same denial can be added to this row.
    pub id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub actor: Actor,
    pub action: String,
    pub model_name: String,
    pub version: Option<i64>,
    pub decision: serde_json::Value,
    pub request_id: Option<String>,
}

/// How a string field is matched in searches. `Ne` also matches a missing tag, as MLflow does.
#[derive(Debug, Clone, PartialEq)]
pub enum TextMatch {
    Eq(String),
    Ne(String),
    Like(String),
    ILike(String),
    Prefix(String),
    Contains(String),
    In(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelFilter {
    Name(TextMatch),
    Tag { key: String, matcher: TextMatch },
}

#[derive(Debug, Clone, PartialEq)]
pub enum VersionFilter {
    Name(TextMatch),
    Version(i64),
    /// `version_number` compared with `!=`, `<`, `<=`, `>` or `>=` (MLflow's numeric
    /// comparators), or `IN` a list of numbers.
    VersionCompare(NumberMatch),
    RunId(TextMatch),
    Source(TextMatch),
    Stage(TextMatch),
    Tag {
        key: String,
        matcher: TextMatch,
    },
    Alias(String),
}

/// A numeric condition on an integer column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberMatch {
    Ne(i64),
    Lt(i64),
    Le(i64),
    Gt(i64),
    Ge(i64),
    In(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Version,
    CreatedAt,
    UpdatedAt,
}

/// Keyset pages (native API: stable under concurrent inserts) or offsets (MLflow page tokens).
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// After the row with this sort key (native cursor: name, or `name\u{0}version`).
    After(String),
    Offset(i64),
}

#[derive(Debug, Clone)]
pub struct ModelQuery {
    pub filters: Vec<ModelFilter>,
    pub order: Vec<(SortKey, bool)>,
    pub paging: Paging,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct VersionQuery {
    pub filters: Vec<VersionFilter>,
    pub order: Vec<(SortKey, bool)>,
    pub paging: Paging,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more rows follow; pass back as the next `Paging`.
    pub next: Option<Paging>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub stream_id: Option<Uuid>,
    pub after_position: Option<i64>,
    pub before_position: Option<i64>,
    pub event_types: Vec<String>,
    pub model_name: Option<String>,
    pub version: Option<i64>,
    /// Events that occurred at or after this time (microseconds since the epoch).
    pub occurred_from_us: Option<i64>,
    /// Events that occurred strictly before this time (microseconds since the epoch).
    pub occurred_before_us: Option<i64>,
    /// Only events by this actor subject.
    pub actor_subject: Option<String>,
    pub descending: bool,
    pub limit: i64,
}

/// Which refused requests to read from the access-decision log, oldest first.
#[derive(Debug, Clone, Default)]
pub struct DenialQuery {
    pub occurred_from_us: Option<i64>,
    pub occurred_before_us: Option<i64>,
    /// Keyset cursor: rows after this `(occurred_at_us, id)`.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// One row of the access-decision log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DenialRecord {
    pub id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub actor: Actor,
    pub action: String,
    pub model_name: String,
    pub version: Option<i64>,
    pub decision: serde_json::Value,
    pub request_id: Option<String>,
    /// How many identical refusals this row stands for (1 unless repeats were coalesced).
    pub repeats: i64,
    /// When the last of them happened (`None` when there was only one).
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A signed chain head as stored in the `checkpoints` table (see `reports::checkpoint`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub id: String,
    pub position: i64,
    pub hash: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub origin: String,
    pub key_id: String,
    /// The signed-note text, exactly as signed.
    pub note: String,
}

/// The event log: the write path (append, idempotency) and reading the log back.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The snapshot of the live model with this name, for `decide`.
    async fn load_model(&self, name: &str) -> Result<Option<ModelState>, StoreError>;
    /// Where the live model with this name stands, without loading it: enough to tell whether
    /// a state held in memory is still current.
    async fn model_head(&self, name: &str) -> Result<Option<ModelHead>, StoreError>;
    /// Appends a batch atomically; returns the stored envelopes with positions and hashes.
    async fn append(&self, batch: AppendBatch) -> Result<Vec<EventEnvelope>, StoreError>;
    /// Appends several commands' batches in one transaction (group commit), each atomically:
    /// one outcome per batch, in order, as if each had been appended alone.
    async fn append_group(
        &self,
        batches: Vec<AppendBatch>,
    ) -> Vec<Result<Vec<EventEnvelope>, StoreError>>;
    async fn find_idempotency(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    async fn read_events(&self, query: &EventQuery) -> Result<Vec<EventEnvelope>, StoreError>;
    /// Events after a position in order, as stored (JSON columns undecoded): what
    /// verification reads.
    async fn read_stored_events(
        &self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// `(position, hash)` of the newest event; `(0, GENESIS_HASH)` when empty.
    async fn head(&self) -> Result<(i64, String), StoreError>;
    /// Appends already-hashed events verbatim (positions, ids, hashes kept), for copying a log
    /// between stores. They must continue the target's chain exactly; their outbox rows are
    /// marked published, since subscribers of the source already had the chance to see them.
    async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError>;
    /// Positions of newly committed events, as they commit (in this process, and for PostgreSQL
    /// in every process through LISTEN/NOTIFY).
    fn subscribe(&self) -> broadcast::Receiver<i64>;
    /// The clock that advances on every commit this process can learn of: what a cache of
    /// read answers above the store checks its entries against.
    fn commit_clock(&self) -> Arc<CommitClock>;
}

/// Reads of the registry as the projections hold it.
#[async_trait]
pub trait RegistryReads: Send + Sync + 'static {
    async fn get_model(&self, name: &str) -> Result<Option<ModelView>, StoreError>;
    /// The current name of the live model with this id (ids survive renames; names do not).
    async fn model_name_by_id(&self, model_id: &str) -> Result<Option<String>, StoreError>;
    /// The model (stream id) other than `except_model_id` that most recently had an event under
    /// `name`, live or not: whether a rename to `name` would take over a name used before.
    async fn last_model_named(
        &self,
        name: &str,
        except_model_id: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn search_models(&self, query: &ModelQuery) -> Result<Page<ModelView>, StoreError>;
    async fn get_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<VersionView>, StoreError>;
    async fn search_versions(&self, query: &VersionQuery) -> Result<Page<VersionView>, StoreError>;
    /// The single version a `models:/` URI names, if any.
    async fn resolve(&self, uri: &ModelUri) -> Result<Option<VersionView>, StoreError>;
    /// For each stage, the newest live version of the model in it (MLflow's latest_versions).
    async fn latest_versions(&self, model_id: &str) -> Result<Vec<VersionView>, StoreError>;
    /// [`RegistryReads::latest_versions`] of several models in one query: grouped by model in
    /// the order given (each id once), each model's versions in ascending order.
    async fn latest_versions_many(
        &self,
        model_ids: &[String],
    ) -> Result<Vec<VersionView>, StoreError>;
    /// Each live model's newest event (the projection's stream version, looked up in the log
    /// by its unique key), for several models in one query; models not found are left out.
    async fn last_changes_many(&self, model_ids: &[String]) -> Result<Vec<LastChange>, StoreError>;
}

/// What the relay publishes, and the lease that makes one process the publisher.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Events not yet published, oldest first.
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<EventEnvelope>, StoreError>;
    async fn mark_published(&self, positions: &[i64]) -> Result<(), StoreError>;
    /// `(count, oldest created_at)` of unpublished outbox rows.
    async fn outbox_lag(&self) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), StoreError>;
    /// Checkpoints not yet published whose every event up to their position has been, oldest
    /// first: the relay sends them after the events they cover.
    async fn checkpoints_to_publish(&self, limit: i64)
    -> Result<Vec<CheckpointRecord>, StoreError>;
    async fn mark_checkpoint_published(&self, id: &str) -> Result<(), StoreError>;
    /// Tries once to become the process that publishes: `Some` lease if this process now holds
    /// it, `None` if another one does. Hold the lease while publishing and check it with
    /// [`RelayLease::still_held`]; dropping it gives leadership up.
    async fn try_acquire_relay_lease(&self) -> Result<Option<Box<dyn RelayLease>>, StoreError>;
}

/// Leadership of the outbox relay, held for as long as this value lives.
#[async_trait]
pub trait RelayLease: Send {
    /// `Ok` while the lease is still held; an error says why it was lost (for PostgreSQL, the
    /// session holding the advisory lock ended).
    async fn still_held(&mut self) -> Result<(), StoreError>;
}

/// The append-only audit records kept beside the event log.
#[async_trait]
pub trait Audit: Send + Sync + 'static {
    async fn record_denial(&self, denial: AccessDenial) -> Result<(), StoreError>;
    /// Records `more` coalesced repeats of denial `id`, the last at `last_at` (appended to
    /// `access_decision_repeats`; the denial row itself is never rewritten).
    async fn add_denial_repeats(
        &self,
        id: &str,
        more: i64,
        last_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// Refused requests from the access-decision log, oldest first.
    async fn read_denials(&self, query: &DenialQuery) -> Result<Vec<DenialRecord>, StoreError>;
    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError>;
    /// The checkpoint with the highest position (newest first among equals).
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;
}

/// A new artifact upload session (see [`UploadSessions`]).
#[derive(Debug, Clone)]
pub struct NewUploadSession {
    pub id: Uuid,
    pub model: String,
    pub owner: Actor,
    /// The name of the configured artifact store the files go to.
    pub store: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Whether a file upload may begin ([`UploadSessions::begin_file_upload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileUploadStart {
    /// The path is now marked as streaming; the files go to this store.
    Started { store: String },
    /// No open session with this id, model and owner.
    NoSession,
    /// A commit has frozen the session.
    Committing,
    /// The same path is streaming in another request.
    PathBusy,
}

/// Whether a commit may freeze a session ([`UploadSessions::begin_upload_commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadCommitStart {
    /// Frozen: these are its stored files, in path order, in this store.
    Frozen {
        store: String,
        files: Vec<crate::domain::events::ManifestFile>,
    },
    NoSession,
    /// Uploads are still streaming, or another commit holds it.
    Busy,
}

/// Open artifact upload sessions, shared by every process on the database, so the requests of
/// one upload may land on any of them (a load balancer spreads connections). Working state,
/// not history: nothing here is part of the event log.
#[async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    async fn create_upload_session(&self, session: &NewUploadSession) -> Result<(), StoreError>;
    /// Marks `path` as streaming in the session, unless the session is frozen, missing (or not
    /// this owner's, for this model), or the path is already streaming.
    async fn begin_file_upload(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
        path: &str,
    ) -> Result<FileUploadStart, StoreError>;
    /// Ends a streaming upload begun by `begin_file_upload`: `Some` records the stored file,
    /// `None` (it failed) forgets the path.
    async fn finish_file_upload(
        &self,
        id: Uuid,
        path: &str,
        stored: Option<&crate::domain::events::ManifestFile>,
    ) -> Result<(), StoreError>;
    /// Freezes the session for a commit if nothing is streaming.
    async fn begin_upload_commit(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<UploadCommitStart, StoreError>;
    /// Ends a commit: a created version removes the session, a failed one unfreezes it.
    async fn finish_upload_commit(&self, id: Uuid, created: bool) -> Result<(), StoreError>;
    /// Removes an open (unfrozen) session and returns the paths it had stored, so their objects
    /// can be deleted; `None` when there is no such session.
    async fn remove_upload_session(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<Option<(String, Vec<String>)>, StoreError>;
}

/// Whether a webhook fires (MLflow's `WebhookStatus`; deletion is a separate mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "ACTIVE",
            WebhookStatus::Disabled => "DISABLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(WebhookStatus::Active),
            "DISABLED" => Some(WebhookStatus::Disabled),
            _ => None,
        }
    }
}

/// A webhook subscription as stored. The secret stays sealed here; only the delivery worker
/// opens it, to sign.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    /// Event names (`model_version.created`, `ledger.…`), in the order given.
    pub events: Vec<String>,
    pub secret_sealed: Option<String>,
    /// The secret this one replaced, still signing until `previous_secret_until_us`.
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until_us: Option<i64>,
    pub status: WebhookStatus,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// One committed event as the webhook fan-out offers it (see [`Webhooks::fan_out_webhook_events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEventRow {
    pub position: i64,
    pub event_name: String,
    /// Deliveries with the same key go out in position order, per webhook (the model's stream).
    pub order_key: String,
    pub occurred_at_us: i64,
    /// The body, exactly as it will be signed and sent.
    pub payload: String,
    /// Set for a signed checkpoint (then `position` is the position it vouches for).
    pub checkpoint_id: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One delivery as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub position: i64,
    pub event_name: String,
    /// The checkpoint a `ledger.checkpoint.created` delivery carries.
    pub checkpoint_id: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at_us: i64,
    pub first_attempt_at_us: Option<i64>,
    pub last_response_code: Option<i32>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// A leased delivery with what sending it needs: the webhook's current URL, secret and status.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryJob {
    pub id: String,
    pub webhook_id: String,
    pub position: i64,
    pub event_name: String,
    /// Shared by every delivery of one event in a window (see the worker).
    pub payload: bytes::Bytes,
    /// Attempts made before this one.
    pub attempts: i64,
    pub first_attempt_at_us: Option<i64>,
    pub url: String,
    pub secret_sealed: Option<String>,
    /// The replaced secret and until when it still signs (the rotation overlap).
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until_us: Option<i64>,
    /// `None` when the webhook was deleted.
    pub webhook_status: Option<WebhookStatus>,
}

/// What the fan-out's leader already did with one (webhook, event) delivery before the
/// transaction that records it (see [`Webhooks::fan_out_webhook_events`]). The leader sends
/// first and writes after: on the healthy path a delivery is one row inserted with its outcome,
/// instead of a row queued, leased and then updated. It is safe because the cursor moves in the
/// same transaction: a leader that dies before it commits leaves the events after the cursor,
/// and the next leader sends them again under the same delivery ids
/// ([`event_delivery_id`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Attempted once: recorded with its outcome (delivered, failed for good, or pending until
    /// its retry is due).
    Attempted(AttemptRecord),
    /// Still on the wire when the transaction began: recorded pending, leased to `owner` until
    /// `lease_until_us`, and finished later by [`Webhooks::finish_webhook_deliveries`].
    InFlight { owner: String, lease_until_us: i64 },
}

/// The leader's deliveries by (webhook id, event position). A delivery the fan-out writes that
/// is not in it is queued pending and unleased, for the lease to send.
pub type SettledDeliveries = std::collections::HashMap<(String, i64), Settled>;

/// A queue the fan-out's leader took over from the lease (see
/// [`Webhooks::adopt_webhook_queues`]): its pending deliveries, oldest first, leased to the
/// leader, which sends them ahead of the queue's new events.
#[derive(Debug, Clone, PartialEq)]
pub struct AdoptedQueue {
    pub webhook_id: String,
    pub order_key: String,
    pub jobs: Vec<DeliveryJob>,
    /// Every pending delivery of the queue is in `jobs`: once they are delivered, the queue's
    /// new events may follow at once. Otherwise the rest (a delivery not yet due, or leased
    /// by another process) keeps the queue pending.
    pub whole: bool,
}

/// What the leader did with the deliveries it adopted, recorded in the fan-out's transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdoptedOutcomes {
    /// The leader the adopted deliveries are leased to.
    pub owner: String,
    /// Attempts that ended, by delivery id.
    pub attempted: Vec<(String, AttemptRecord)>,
    /// Adopted and never started (their queue closed first): their leases are released.
    pub unstarted: Vec<String>,
}

/// What one fan-out transaction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FannedOut {
    /// Delivery rows written, settled or not.
    pub written: u64,
    /// Of those, the ones pending and unleased: work for the lease.
    pub waiting: u64,
}

/// The delivery id of `webhook_id`'s delivery of the event at `position`: the same in every
/// process, so a delivery sent by a leader that died before recording it is sent again by the
/// next under the id receivers already saw (and deduplicate on). A version 8 UUID made of the
/// first 16 bytes of a SHA-256 of both.
pub fn event_delivery_id(webhook_id: &str, position: i64) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"model-ledger webhook delivery\0");
    hash.update(webhook_id.as_bytes());
    hash.update(b"\0");
    hash.update(position.to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// An active webhook as the fan-out needs it: what it receives and what sending to it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSubscription {
    pub id: String,
    pub events: Vec<String>,
    pub created_at_us: i64,
    pub url: String,
    pub secret_sealed: Option<String>,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until_us: Option<i64>,
}

impl WebhookSubscription {
    /// Whether it receives `event`: subscribed to its name, and created before it happened (a
    /// server that was down catches up, yet a webhook never receives what happened before it
    /// existed).
    pub fn receives(&self, event: &WebhookEventRow) -> bool {
        self.created_at_us <= event.occurred_at_us && self.events.contains(&event.event_name)
    }
}

/// How one attempt ended, to be recorded by [`Webhooks::finish_webhook_deliveries`].
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// `Pending` means "try again at `next_attempt_at_us`".
    pub status: DeliveryStatus,
    pub next_attempt_at_us: i64,
    pub attempted_at_us: i64,
    pub response_code: Option<i32>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
}

/// Webhook subscriptions and their durable delivery queue, shared by every process on the
/// database. Working state, not history: nothing here is part of the event log, and the event
/// log is the only source of what is delivered.
#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    /// Stores a new webhook. When it is the only active one, the fan-out cursor first moves to
    /// the log's head (in the same transaction): nobody needed the events it passes over, and
    /// the fan-out never reads the history that piled up while no webhook was active.
    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;
    /// The webhook with this id, unless it was deleted.
    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError>;
    /// Live webhooks, newest first, `limit` from `offset`.
    async fn list_webhooks(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Rewrites a live webhook (moving the cursor like [`Webhooks::insert_webhook`] when it
    /// becomes the only active one); `false` when there is none with this id.
    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<bool, StoreError>;
    /// Marks a live webhook deleted and fails its pending deliveries; `false` when there is none.
    async fn delete_webhook(&self, id: &str, at_us: i64) -> Result<bool, StoreError>;
    /// The position up to which events have been fanned out, and whether any webhook is active
    /// (with none, the fan-out has nothing to do and writes nothing).
    async fn webhook_cursor(&self) -> Result<(i64, bool), StoreError>;
    /// Takes the fan-out's lead for `owner` until `lease_until_us`, or renews it: `true` when
    /// `owner` leads (it did, or nobody did, or the last leader's lease ran out before
    /// `now_us`). Only the leader sends from the cursor, so several processes never send the
    /// same new event; the others lease what is queued.
    async fn lead_webhook_fan_out(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
    ) -> Result<bool, StoreError>;
    /// Gives up `owner`'s lead (a process that stops), so another process takes it at once
    /// instead of when the lease runs out.
    async fn release_webhook_fan_out(&self, owner: &str) -> Result<(), StoreError>;
    /// The active webhooks, as the fan-out's leader sends to them.
    async fn active_webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>, StoreError>;
    /// The (webhook id, order key) queues with a pending event delivery, of those `among` (or
    /// of all): a new event of such a queue waits behind it (queued, not sent at once), so one
    /// receiver gets one model's events in order.
    async fn pending_webhook_queues(
        &self,
        among: Option<&[(String, String)]>,
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError>;
    /// In one transaction: moves the cursor from `expected` to `advance_to` and writes one
    /// delivery per event for every webhook that is active, subscribed to its name and existed
    /// when it happened, as `settled` says (see [`Settled`]; also the settled deliveries of a
    /// webhook that stopped being active meanwhile, since they were sent) or else queued.
    /// The outcomes of the deliveries the leader adopted from the queue are recorded in the
    /// same transaction (see [`AdoptedOutcomes`]).
    /// `None` (nothing written) when the cursor was no longer at `expected`: another process
    /// fanned these events out first.
    async fn fan_out_webhook_events(
        &self,
        expected: i64,
        advance_to: i64,
        events: &[WebhookEventRow],
        now_us: i64,
        settled: &SettledDeliveries,
        adopted: &AdoptedOutcomes,
    ) -> Result<Option<FannedOut>, StoreError>;
    /// Leases to `owner`, for each of `queues` (webhook id, order key), its pending event
    /// deliveries from the oldest on while each is due and unleased (or its lease ran out),
    /// stopping at the first that is not, at most `limit` in all. The rows are locked while
    /// they are picked, so a concurrent lease of a queue's head leaves that queue to it.
    async fn adopt_webhook_queues(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        queues: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<AdoptedQueue>, StoreError>;
    /// Signed checkpoints not yet fanned out whose position the event fan-out has passed
    /// (so their events' deliveries are queued first), oldest first; none while no webhook is
    /// active.
    async fn webhook_checkpoints_due(
        &self,
        limit: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError>;
    /// In one transaction: marks each checkpoint fanned out (skipping any another process
    /// marked first) and queues, for each one this call marked, a delivery to every active
    /// webhook subscribed to its name that existed when it was made. The deliveries queued.
    async fn fan_out_webhook_checkpoints(
        &self,
        checkpoints: &[WebhookEventRow],
        now_us: i64,
    ) -> Result<u64, StoreError>;
    /// Leases up to `limit` due deliveries to `owner` until `lease_until_us`: pending, due, not
    /// leased by anyone else (or their lease expired), each the oldest pending delivery of its
    /// webhook and order key, and not of a webhook in `busy_webhooks`. A checkpoint delivery
    /// also waits until its webhook has no pending event delivery at or before its position.
    async fn lease_webhook_deliveries(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        busy_webhooks: &[String],
    ) -> Result<Vec<DeliveryJob>, StoreError>;
    /// Records attempts made under `owner`'s leases and releases them, all in one statement
    /// (a worker records outcomes in batches: one commit per delivery would make the commit
    /// rate, not the receivers, the limit). Returns the ids recorded; an id missing from the
    /// answer had lost its lease (expired and taken over), and nothing was written for it.
    async fn finish_webhook_deliveries(
        &self,
        owner: &str,
        attempts: &[(String, AttemptRecord)],
    ) -> Result<Vec<String>, StoreError>;
    /// A webhook's deliveries, newest first.
    async fn list_webhook_deliveries(
        &self,
        webhook_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Queues a delivery again (same delivery id, due now, its attempt budget restarted);
    /// `None` when the webhook has no such delivery.
    async fn redeliver_webhook_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now_us: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
    /// When the earliest pending delivery is due, if any (how long the worker may sleep).
    async fn next_webhook_delivery_due(&self) -> Result<Option<i64>, StoreError>;
}

/// One signed-in console browser (see [`ConsoleSessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    /// SHA-256 (hex) of the cookie value; the value itself is never stored.
    pub id_sha256: String,
    pub csrf_token: String,
    /// The identity, as JSON (the console owns its shape).
    pub principal: String,
    pub created_at_us: i64,
    pub expires_at_us: i64,
}

/// Web console sign-ins, shared by every process on the database (a balancer may send each
/// page of one browser to another process). Working state, not history.
#[async_trait]
pub trait ConsoleSessions: Send + Sync + 'static {
    /// Stores a new session (and forgets the expired ones).
    async fn create_console_session(
        &self,
        session: &ConsoleSessionRecord,
    ) -> Result<(), StoreError>;
    /// The session with this id hash, unless missing or expired at `now_us`.
    async fn console_session(
        &self,
        id_sha256: &str,
        now_us: i64,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError>;
    /// Sign-out: the session is gone, whichever process it was created on.
    async fn delete_console_session(&self, id_sha256: &str) -> Result<(), StoreError>;
}

/// Every role at once: what [`SharedStore`] holds.
pub trait Store:
    EventLog + RegistryReads + Outbox + Audit + Admin + UploadSessions + Webhooks + ConsoleSessions
{
}

impl<
    T: EventLog + RegistryReads + Outbox + Audit + Admin + UploadSessions + Webhooks + ConsoleSessions,
> Store for T
{
}

/// Opens the store a URL names: `postgres://…` or `sqlite://…` (file created if missing).
pub async fn connect(url: &str, max_connections: u32) -> Result<SharedStore, StoreError> {
    connect_with(url, max_connections, postgres::DEFAULT_ACQUIRE_TIMEOUT).await
}

/// [`connect`] with the longest wait for a pooled PostgreSQL connection before a request
/// fails with `Unavailable` (503): what a request costs while the database cannot be reached.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
) -> Result<SharedStore, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect_with_timeout(url, max_connections, acquire_timeout).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL '{url}': use postgres://… or sqlite://…"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::event_delivery_id;

    #[test]
    fn an_event_delivery_id_is_the_same_in_every_process_and_differs_per_pair() {
        let id = event_delivery_id("wh-1", 42);
        assert_eq!(id, event_delivery_id("wh-1", 42));
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(id, event_delivery_id("wh-1", 43));
        assert_ne!(id, event_delivery_id("wh-2", 42));
    }
}
