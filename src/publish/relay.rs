//! The outbox relay: moves committed events from the outbox to NATS JetStream, in global
//! position order, one acknowledged publish at a time.
//!
//! Ordering and delivery rules, and why:
//! - An event is marked published only after JetStream acknowledged it. A crash in between
//!   re-publishes it; its `Nats-Msg-Id` (the event id) makes JetStream drop the copy within the
//!   stream's duplicate window, and subscribers deduplicate by position beyond it.
//! - Event `n + 1` is sent only after `n` was acknowledged. Pipelining would be faster, but a
//!   failed `n` with a stored `n + 1` would put the stream out of order.
//! - With PostgreSQL, exactly one process publishes: the one holding a session-level advisory
//!   lock on a dedicated connection. If that process dies its session ends, the lock is freed and
//!   another process's relay (polling `pg_try_advisory_lock` every second) takes over. With
//!   SQLite a single server process per database file is assumed, so no lock is taken.
//! - NATS being down never blocks writes: rows wait in the outbox, the relay retries with
//!   capped exponential backoff and drains everything in order once NATS is back.
//! - The relay wakes on every commit ([`crate::store::EventLog::subscribe`], which for PostgreSQL
//!   includes other processes' commits via LISTEN/NOTIFY) and polls once a second as a fallback.
//! - Signed checkpoints of the chain head travel the same way, from their own outbox table, on
//!   `<prefix>.~checkpoint`: each is sent once every event up to its position is acknowledged,
//!   so subscribers can hold the newest checkpoint outside the registry and later prove that no
//!   event was cut from the tail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck, stream};
use async_nats::{ConnectOptions, Event, ServerAddr};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::cloudevent::{checkpoint_event, cloud_event};
use super::subject::{checkpoint_subject, event_subject};
use super::{PublishError, RelayStatus, Runtime};
use crate::config::{NatsArgs, NatsConnectionArgs};
use crate::domain::events::EventEnvelope;
use crate::store::{CheckpointRecord, RelayLease, SharedStore};

/// Outbox rows read per round.
const BATCH: i64 = 256;
/// Checkpoints published per round (they are rare: one per interval, plus on-demand ones).
const CHECKPOINT_BATCH: i64 = 16;
/// Fallback poll interval, in case a wake-up is lost (e.g. while LISTEN reconnects).
const POLL: Duration = Duration::from_secs(1);
/// How often the leader checks that its lock connection (and so its lock) is still alive.
const LOCK_CHECK: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bound on each JetStream request and publish acknowledgement.
const NATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection and stream settings, from [`NatsArgs`].
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub urls: String,
    pub creds: Option<std::path::PathBuf>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
    pub stream: String,
    pub subject_prefix: String,
    pub duplicate_window: Duration,
    pub max_age: Duration,
    pub max_bytes: i64,
    pub source: String,
    /// Test hook: abort after this many acknowledged publishes, before marking (only with the
    /// test-only `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub crash_after_publish: Option<u64>,
}

impl NatsSettings {
    /// `None` when no NATS URL is configured.
    pub fn from_args(args: &NatsArgs) -> Option<Self> {
        let mut settings = Self::connect_to(&args.connection)?;
        settings.duplicate_window = args.nats_duplicate_window;
        settings.max_age = args.nats_max_age;
        settings.max_bytes = args.nats_max_bytes;
        settings.source = args.event_source.clone();
        #[cfg(feature = "fault-injection")]
        {
            settings.crash_after_publish = args.relay_crash_after_publish;
        }
        Some(settings)
    }

    /// The connection and stream settings alone (what a subscriber needs), with defaults for
    /// the publishing ones; `None` when no NATS URL is configured.
    pub fn connect_to(args: &NatsConnectionArgs) -> Option<Self> {
        let url = args.nats_url.as_deref().filter(|u| !u.trim().is_empty())?;
        let mut settings = Self::local(
            url,
            &args.nats_stream,
            args.nats_subject_prefix.trim_end_matches('.'),
        );
        settings.creds = args.nats_creds.clone();
        settings.token = args.nats_token.clone();
        settings.user = args.nats_user.clone();
        settings.password = args.nats_password.clone();
        settings.tls_ca = args.nats_tls_ca.clone();
        Some(settings)
    }

    /// Settings for a local server with defaults for everything else (tests, tools).
    pub fn local(url: &str, stream: &str, subject_prefix: &str) -> Self {
        NatsSettings {
            urls: url.into(),
            creds: None,
            token: None,
            user: None,
            password: None,
            tls_ca: None,
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            max_bytes: -1,
            source: "/model-ledger".into(),
            #[cfg(feature = "fault-injection")]
            crash_after_publish: None,
        }
    }
}

/// A JetStream connection that publishes events as CloudEvents on their subjects.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: NatsSettings,
}

impl Publisher {
    /// Connects in the background: returns at once even if NATS is down, and keeps reconnecting
    /// forever. `status` (if given) tracks connection state.
    pub async fn connect(
        settings: NatsSettings,
        status: Option<Arc<RelayStatus>>,
    ) -> Result<Self, PublishError> {
        let addrs = settings
            .urls
            .split(',')
            .map(|u| u.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PublishError::Connect(format!("bad NATS URL '{}': {e}", settings.urls)))?;
        let mut options = ConnectOptions::new()
            .name("model-ledger relay")
            .retry_on_initial_connect()
            .connection_timeout(NATS_TIMEOUT)
            // The default backoff grows to several seconds; events are waiting, so retry briskly.
            .reconnect_delay_callback(|attempts| {
                BACKOFF_MIN
                    .saturating_mul(1 << attempts.min(5) as u32)
                    .min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let status = status.clone();
                async move {
                    let connected = match event {
                        Event::Connected => Some(true),
                        Event::Disconnected | Event::Closed => Some(false),
                        _ => None,
                    };
                    match event {
                        Event::Connected | Event::Disconnected => {
                            tracing::info!(%event, "NATS connection")
                        }
                        // Errors repeat on every reconnect attempt; the relay's own retry logs
                        // once per distinct error, so these stay at debug.
                        _ => tracing::debug!(%event, "NATS connection event"),
                    }
                    if let (Some(status), Some(connected)) = (status, connected) {
                        status.update(|s| s.connected = connected);
                    }
                }
            });
        if let Some(path) = &settings.creds {
            options = options.credentials_file(path).await.map_err(|e| {
                PublishError::Connect(format!("NATS credentials file {}: {e}", path.display()))
            })?;
        }
        if let Some(token) = &settings.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &settings.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| PublishError::Connect(e.to_string()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(NATS_TIMEOUT)
            .build(client.clone());
        Ok(Publisher {
            client,
            js,
            settings,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn settings(&self) -> &NatsSettings {
        &self.settings
    }

    /// The stream's configuration as this server wants it.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.settings.stream.clone(),
            subjects: vec![format!("{}.>", self.settings.subject_prefix)],
            duplicate_window: self.settings.duplicate_window,
            max_age: self.settings.max_age,
            max_bytes: self.settings.max_bytes,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }

    /// Creates the stream, or updates it to the configured subjects, window and limits.
    pub async fn ensure_stream(&self) -> Result<(), PublishError> {
        self.js
            .create_or_update_stream(self.stream_config())
            .await
            .map_err(|e| PublishError::Stream(e.to_string()))?;
        Ok(())
    }

    /// Publishes one event and waits for JetStream's acknowledgement.
    pub async fn publish(&self, event: &EventEnvelope) -> Result<PublishAck, PublishError> {
        let subject = event_subject(
            &self.settings.subject_prefix,
            &event.model_name,
            &event.event_type,
        );
        let payload = serde_json::to_vec(&cloud_event(&self.settings.source, event))?;
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.event_id.to_string())
            .header("Content-Type", "application/cloudevents+json");
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| PublishError::Publish(e.to_string()))?
            .await
            .map_err(|e| PublishError::Publish(e.to_string()))?;
        Ok(ack)
    }

    /// Publishes one signed checkpoint (deduplicated by its id) and waits for the ack.
    pub async fn publish_checkpoint(
        &self,
        checkpoint: &CheckpointRecord,
    ) -> Result<PublishAck, PublishError> {
        let payload = serde_json::to_vec(&checkpoint_event(&self.settings.source, checkpoint))?;
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(checkpoint.id.clone())
            .header("Content-Type", "application/cloudevents+json");
        self.js
            .send_publish(checkpoint_subject(&self.settings.subject_prefix), message)
            .await
            .map_err(|e| PublishError::Publish(e.to_string()))?
            .await
            .map_err(|e| PublishError::Publish(e.to_string()))
    }
}

/// Starts the relay task; it runs until `runtime` is stopped.
pub fn spawn_relay(
    store: SharedStore,
    settings: NatsSettings,
    runtime: Runtime,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = runtime.stopped();
        tokio::select! {
            () = run(store, settings, runtime.status.clone()) => {}
            () = stopped => {}
        }
        runtime.status.update(|s| s.leader = false);
    })
}

async fn run(store: SharedStore, settings: NatsSettings, status: Arc<RelayStatus>) {
    status.update(|s| s.enabled = true);
    tracing::info!(
        url = %settings.urls,
        stream = %settings.stream,
        prefix = %settings.subject_prefix,
        "publishing events to NATS JetStream"
    );
    let publisher = match Publisher::connect(settings, Some(status.clone())).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "the event relay cannot start; events stay in the outbox");
            status.update(|s| s.last_error = Some(e.to_string()));
            return;
        }
    };
    let mut lag = LagGauges::default();
    loop {
        let mut lock = acquire_lock(&store, &status, &mut lag).await;
        status.update(|s| s.leader = true);
        tracing::info!("this process is the event relay leader");
        let lost = lead(&store, &publisher, &status, lock.as_mut(), &mut lag).await;
        status.update(|s| {
            s.leader = false;
            s.last_error = Some(lost.to_string());
        });
        tracing::warn!(error = %lost, "relay lock lost; waiting to lead again");
    }
}

/// Waits until this process may publish, and returns the lease that makes it so.
async fn acquire_lock(
    store: &SharedStore,
    status: &RelayStatus,
    lag: &mut LagGauges,
) -> Box<dyn RelayLease> {
    loop {
        match store.try_acquire_relay_lease().await {
            Ok(Some(lease)) => return lease,
            Ok(None) => {}
            Err(e) => status.update(|s| s.last_error = Some(format!("relay lock: {e}"))),
        }
        lag.update(store).await;
        tokio::time::sleep(POLL).await;
    }
}

/// Publishes while holding the lock; returns why leadership ended.
async fn lead(
    store: &SharedStore,
    publisher: &Publisher,
    status: &RelayStatus,
    lock: &mut dyn RelayLease,
    lag: &mut LagGauges,
) -> PublishError {
    // Subscribed before the first read, so no commit between a read and the wait is missed.
    let mut commits = store.subscribe();
    let mut stream_ready = false;
    let mut backoff = BACKOFF_MIN;
    let mut last_check = Instant::now();
    loop {
        if last_check.elapsed() >= LOCK_CHECK {
            if let Err(e) = lock.still_held().await {
                return PublishError::Lock(e);
            }
            last_check = Instant::now();
        }
        // Coalesce wake-ups already queued: the read below covers their commits.
        while !matches!(
            commits.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        match drain_once(store, publisher, status, &mut stream_ready).await {
            Ok(more) => {
                backoff = BACKOFF_MIN;
                if status.snapshot().last_error.is_some() {
                    status.update(|s| s.last_error = None);
                    tracing::info!("event relay recovered");
                }
                if more {
                    lag.update_if_due(store).await;
                    continue;
                }
            }
            Err(e) => {
                stream_ready = false;
                let message = e.to_string();
                if status.snapshot().last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, retry_in = ?backoff, "event relay cannot publish; retrying");
                }
                status.update(|s| s.last_error = Some(message));
                lag.update_if_due(store).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        lag.update_if_due(store).await;
        tokio::select! {
            r = commits.recv() => {
                if let Err(RecvError::Closed) = r {
                    tokio::time::sleep(POLL).await;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Publishes one batch of pending events; `Ok(true)` if more may be waiting.
async fn drain_once(
    store: &SharedStore,
    publisher: &Publisher,
    status: &RelayStatus,
    stream_ready: &mut bool,
) -> Result<bool, PublishError> {
    if !publisher.is_connected() {
        return Err(PublishError::Publish("NATS is not connected".into()));
    }
    // Checkpoints first: one is eligible only once every event up to its position is
    // published, so it always follows the events it covers on the stream.
    let checkpoints = store.checkpoints_to_publish(CHECKPOINT_BATCH).await?;
    let batch = store.outbox_pending(BATCH).await?;
    if batch.is_empty() && checkpoints.is_empty() {
        return Ok(false);
    }
    if !*stream_ready {
        publisher.ensure_stream().await?;
        *stream_ready = true;
    }
    for checkpoint in &checkpoints {
        publisher.publish_checkpoint(checkpoint).await?;
        store.mark_checkpoint_published(&checkpoint.id).await?;
        metrics::counter!("model_ledger_checkpoints_published_total").increment(1);
    }
    if batch.is_empty() {
        return Ok(checkpoints.len() as i64 == CHECKPOINT_BATCH);
    }
    let mut acked = Vec::with_capacity(batch.len());
    let mut failure = None;
    for event in &batch {
        match publisher.publish(event).await {
            Ok(ack) => {
                acked.push(event.position);
                record_ack(status, event, &ack);
                #[cfg(feature = "fault-injection")]
                if publisher.settings.crash_after_publish == Some(status.snapshot().published) {
                    tracing::error!(
                        position = event.position,
                        "test hook: aborting between publish and mark"
                    );
                    // `exit`, not `abort`: equally abrupt for the outbox (no destructor or
                    // pending task runs), without leaving core files in CI.
                    std::process::exit(134);
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !acked.is_empty() {
        store.mark_published(&acked).await?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(batch.len() as i64 == BATCH),
    }
}

fn record_ack(status: &RelayStatus, event: &EventEnvelope, ack: &PublishAck) {
    status.update(|s| {
        s.published += 1;
        s.duplicates += u64::from(ack.duplicate);
        s.last_published_position = Some(event.position);
    });
    metrics::counter!("model_ledger_events_published_total").increment(1);
    if ack.duplicate {
        metrics::counter!("model_ledger_events_published_duplicate_total").increment(1);
    }
    let age = chrono::Utc::now() - event.occurred_at;
    metrics::histogram!("model_ledger_publish_delay_seconds")
        .record(age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
}

/// The outbox lag gauges, refreshed at most once a second (one COUNT query each time).
#[derive(Default)]
struct LagGauges {
    last: Option<Instant>,
}

impl LagGauges {
    async fn update_if_due(&mut self, store: &SharedStore) {
        if self.last.is_none_or(|t| t.elapsed() >= POLL) {
            self.update(store).await;
        }
    }

    async fn update(&mut self, store: &SharedStore) {
        self.last = Some(Instant::now());
        if let Ok((pending, oldest)) = store.outbox_lag().await {
            metrics::gauge!("model_ledger_outbox_pending").set(pending as f64);
            let age = oldest
                .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("model_ledger_outbox_oldest_age_seconds").set(age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_credentials_file_is_refused_naming_the_file() {
        let mut settings = NatsSettings::local("nats://127.0.0.1:4222", "S", "p");
        settings.creds = Some("/nonexistent/relay.creds".into());
        let err = Publisher::connect(settings, None)
            .await
            .err()
            .expect("must fail");
        assert!(
            err.to_string().contains("/nonexistent/relay.creds"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_malformed_credentials_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.creds");
        std::fs::write(&path, "not a creds file").expect("write");
        let mut settings = NatsSettings::local("nats://127.0.0.1:4222", "S", "p");
        settings.creds = Some(path);
        assert!(Publisher::connect(settings, None).await.is_err());
    }
}
