//! Webhook subscriptions, the fan-out cursor and the delivery queue (see [`Webhooks`]).
//!
//! Delivery is derived from the event log, never from the request that wrote an event: a
//! worker reads the events after `webhook_cursor` and, in one transaction, moves the cursor and
//! writes one `webhook_deliveries` row per matching subscription (the body itself is stored
//! once per event, in `webhook_payloads`). The cursor moves with a
//! compare-and-set (`UPDATE … WHERE position = expected`), so when two processes fan out the
//! same events the second finds the cursor moved and writes nothing: every event is fanned out
//! exactly once, and none is skipped, because the cursor never passes an event whose rows were
//! not written in the same commit. One process leads the fan-out (a lease on the cursor's row)
//! and sends what it can before that transaction, which then writes those rows with their
//! outcomes ([`Settled`]); the rest are queued pending. Event deliveries have ids derived
//! from (webhook, position), so a leader that dies before its commit and the one after it send
//! the same event under the same id.
//!
//! The queue is sent by leases, row by row. A lease is a single `UPDATE … WHERE` that re-checks
//! on the row itself that it is still pending, due and unleased: in PostgreSQL the second of
//! two racing updates waits for the first and re-evaluates those conditions on the row the
//! first wrote (so it skips it), and SQLite runs one write at a time. A lease expires, so the
//! deliveries of a process that died are taken over, under the same delivery id. Only the
//! oldest pending delivery of each (webhook, model) is ever leased, which keeps a receiver's
//! events of one model in commit order even across retries; the leader keeps the same order by
//! sending nothing of a queue with a pending row ([`Webhooks::pending_webhook_queues`]).
//!
//! Signed checkpoints are delivered the same way from their own fan-out marker on
//! `checkpoint_outbox` (set by compare-and-set in the transaction that queues their rows), and
//! only once the event cursor has passed their position. A checkpoint delivery is leased only
//! when its webhook has no pending event delivery at or before that position, so a receiver
//! gets a checkpoint after the events it vouches for that it subscribed to.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::rows::{CHECKPOINT_COLUMNS, CheckpointRow};
use super::{Args, Conn, Db, RowOf, SqlStore};
use crate::store::dialect::{Dialect, NewBody, NewDelivery};
use crate::store::{
    AdoptedOutcomes, AdoptedQueue, AttemptRecord, CheckpointRecord, DeliveryJob, DeliveryRecord,
    DeliveryStatus, FannedOut, Settled, SettledDeliveries, StoreError, WebhookEventRow,
    WebhookRecord, WebhookStatus, WebhookSubscription, Webhooks, event_delivery_id,
};

const WEBHOOK_COLUMNS: &str = "id, name, description, url, events, secret_sealed, \
     previous_secret_sealed, previous_secret_until_us, status, created_at_us, updated_at_us";

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    name: String,
    description: Option<String>,
    url: String,
    events: String,
    secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_until_us: Option<i64>,
    status: String,
    created_at_us: i64,
    updated_at_us: i64,
}

impl WebhookRow {
    fn into_record(self) -> Result<WebhookRecord, StoreError> {
        let events: Vec<String> = serde_json::from_str(&self.events)
            .map_err(|e| StoreError::Corrupt(format!("webhook {} events: {e}", self.id)))?;
        let status = WebhookStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!("webhook {} status '{}'", self.id, self.status))
        })?;
        Ok(WebhookRecord {
            id: self.id,
            name: self.name,
            description: self.description,
            url: self.url,
            events,
            secret_sealed: self.secret_sealed,
            previous_secret_sealed: self.previous_secret_sealed,
            previous_secret_until_us: self.previous_secret_until_us,
            status,
            created_at_us: self.created_at_us,
            updated_at_us: self.updated_at_us,
        })
    }
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, position, event_name, checkpoint_id, status, attempts, next_attempt_at_us, first_attempt_at_us, last_response_code, last_latency_ms, last_error, created_at_us, updated_at_us";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    webhook_id: String,
    position: i64,
    event_name: String,
    checkpoint_id: Option<String>,
    status: String,
    attempts: i64,
    next_attempt_at_us: i64,
    first_attempt_at_us: Option<i64>,
    last_response_code: Option<i32>,
    last_latency_ms: Option<i64>,
    last_error: Option<String>,
    created_at_us: i64,
    updated_at_us: i64,
}

impl DeliveryRow {
    fn into_record(self) -> Result<DeliveryRecord, StoreError> {
        let status = DeliveryStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {} status '{}'", self.id, self.status))
        })?;
        Ok(DeliveryRecord {
            id: self.id,
            webhook_id: self.webhook_id,
            position: self.position,
            event_name: self.event_name,
            checkpoint_id: self.checkpoint_id,
            status,
            attempts: self.attempts,
            next_attempt_at_us: self.next_attempt_at_us,
            first_attempt_at_us: self.first_attempt_at_us,
            last_response_code: self.last_response_code,
            last_latency_ms: self.last_latency_ms,
            last_error: self.last_error,
            created_at_us: self.created_at_us,
            updated_at_us: self.updated_at_us,
        })
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    webhook_id: String,
    position: i64,
    event_name: String,
    payload: String,
    attempts: i64,
    first_attempt_at_us: Option<i64>,
    url: String,
    secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_until_us: Option<i64>,
    status: String,
    deleted_at_us: Option<i64>,
}

/// An active webhook's row, as [`WebhookSubscription`] is read.
#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    /// The stored JSON list of event names.
    events: String,
    created_at_us: i64,
    url: String,
    secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_until_us: Option<i64>,
}

impl SubscriptionRow {
    fn into_subscription(self) -> Result<WebhookSubscription, StoreError> {
        let events = serde_json::from_str(&self.events)
            .map_err(|e| StoreError::Corrupt(format!("webhook {} events: {e}", self.id)))?;
        Ok(WebhookSubscription {
            id: self.id,
            events,
            created_at_us: self.created_at_us,
            url: self.url,
            secret_sealed: self.secret_sealed,
            previous_secret_sealed: self.previous_secret_sealed,
            previous_secret_until_us: self.previous_secret_until_us,
        })
    }
}

const SUBSCRIPTIONS: &str = "SELECT id, events, created_at_us, url, secret_sealed, \
     previous_secret_sealed, previous_secret_until_us FROM webhooks \
     WHERE status = 'ACTIVE' AND deleted_at_us IS NULL";

/// Rows per multi-row INSERT in SQLite: 18 binds each, far below its bind limit.
const INSERT_CHUNK: usize = 200;
/// PostgreSQL's SQLSTATE for a `NOWAIT` lock that another transaction holds.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// Outcomes recorded per statement (7 bound values each, far below either database's limit).
const FINISH_CHUNK: usize = 500;

fn events_json(events: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(events).map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))
}

/// Moves the fan-out cursor to the log's head if no webhook is active yet (see
/// [`Webhooks::insert_webhook`]; run before the webhook is written, so a webhook that already
/// was active, and may still need events behind the cursor, never moves it). Events up to the head are all committed (positions are
/// taken under the chain head's lock, in commit order), so none that an active webhook needs
/// is passed over.
async fn skip_idle_history<D>(tx: &mut sqlx::Transaction<'static, Db<D>>) -> Result<(), StoreError>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
{
    sqlx::query(
        "UPDATE webhook_cursor SET position = (SELECT COALESCE(MAX(position), 0) FROM events) \
         WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM webhooks \
         WHERE status = 'ACTIVE' AND deleted_at_us IS NULL)",
    )
    .execute(&mut **tx)
    .await?;
    // Likewise the checkpoints made while nobody listened: 0 marks them passed over.
    sqlx::query(
        "UPDATE checkpoint_outbox SET webhooks_fanned_out_at_us = 0 \
         WHERE webhooks_fanned_out_at_us IS NULL AND NOT EXISTS (SELECT 1 FROM webhooks \
         WHERE status = 'ACTIVE' AND deleted_at_us IS NULL)",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The active subscriptions, read inside a fan-out transaction.
async fn active_subscriptions<D>(
    tx: &mut sqlx::Transaction<'static, Db<D>>,
) -> Result<Vec<WebhookSubscription>, StoreError>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    for<'q> i64: Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Decode<'q, Db<D>> + Type<Db<D>>,
{
    let rows: Vec<SubscriptionRow> = sqlx::query_as(SUBSCRIPTIONS).fetch_all(&mut **tx).await?;
    rows.into_iter()
        .map(SubscriptionRow::into_subscription)
        .collect()
}

/// The key a body is stored under in `webhook_payloads`: an event's position, or a
/// checkpoint's id (several checkpoints may vouch for one position).
fn payload_key(event: &WebhookEventRow) -> String {
    match &event.checkpoint_id {
        Some(id) => format!("checkpoint:{id}"),
        None => format!("event:{}", event.position),
    }
}

/// One delivery row about to be written.
struct Queued<'a> {
    id: String,
    webhook_id: &'a str,
    event: &'a WebhookEventRow,
    /// What the leader already did with it; `None`: queued for the lease.
    settled: Option<&'a Settled>,
}

/// Writes one delivery per (webhook, event) pair for every subscription that receives the
/// event ([`WebhookSubscription::receives`]), as `settled` says or else queued, and the
/// settled ones of webhooks no longer active (they were sent before the webhook changed).
async fn queue_deliveries<D>(
    tx: &mut sqlx::Transaction<'static, Db<D>>,
    events: &[&WebhookEventRow],
    now_us: i64,
    settled: &SettledDeliveries,
) -> Result<FannedOut, StoreError>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> i32: Encode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>>,
    for<'q> Option<i32>: Encode<'q, Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
    usize: ColumnIndex<RowOf<D>>,
{
    if events.is_empty() {
        return Ok(FannedOut::default());
    }
    let subscriptions = active_subscriptions::<D>(tx).await?;
    let mut rows: Vec<Queued> = Vec::new();
    let mut covered: HashSet<(&str, i64)> = HashSet::new();
    for event in events.iter().copied() {
        for subscription in &subscriptions {
            if !subscription.receives(event) {
                continue;
            }
            let row = match &event.checkpoint_id {
                // Several checkpoints may vouch for one position, and they are never sent
                // before they are queued: a fresh id each.
                Some(_) => Queued {
                    id: uuid::Uuid::now_v7().to_string(),
                    webhook_id: &subscription.id,
                    event,
                    settled: None,
                },
                None => {
                    covered.insert((&subscription.id, event.position));
                    Queued {
                        id: event_delivery_id(&subscription.id, event.position),
                        webhook_id: &subscription.id,
                        event,
                        settled: settled.get(&(subscription.id.clone(), event.position)),
                    }
                }
            };
            rows.push(row);
        }
    }
    if !settled.is_empty() {
        // Sent by the leader to a webhook that was disabled or deleted before this
        // transaction: what was sent is still recorded.
        let by_position: HashMap<i64, &WebhookEventRow> = events
            .iter()
            .filter(|e| e.checkpoint_id.is_none())
            .map(|e| (e.position, *e))
            .collect();
        for ((webhook_id, position), outcome) in settled {
            if covered.contains(&(webhook_id.as_str(), *position)) {
                continue;
            }
            if let Some(event) = by_position.get(position) {
                rows.push(Queued {
                    id: event_delivery_id(webhook_id, *position),
                    webhook_id,
                    event,
                    settled: Some(outcome),
                });
            }
        }
    }
    // Each body once, however many webhooks receive it (migration 0012): only for the events
    // that some webhook receives.
    let mut keys: HashSet<String> = HashSet::new();
    let bodies: Vec<NewBody<'_>> = rows
        .iter()
        .filter_map(|row| {
            let key = payload_key(row.event);
            keys.insert(key.clone()).then_some(NewBody {
                key,
                payload: &row.event.payload,
            })
        })
        .collect();
    let mut waiting = 0;
    let deliveries: Vec<NewDelivery<'_>> = rows
        .iter()
        .map(|row| {
            let event = row.event;
            let mut delivery = NewDelivery {
                id: &row.id,
                webhook_id: row.webhook_id,
                position: event.position,
                event_name: &event.event_name,
                order_key: &event.order_key,
                payload_key: payload_key(event),
                status: DeliveryStatus::Pending.as_str(),
                next_attempt_at_us: now_us,
                created_at_us: now_us,
                updated_at_us: now_us,
                checkpoint_id: event.checkpoint_id.as_deref(),
                lease_owner: None,
                lease_until_us: None,
                attempts: 0,
                first_attempt_at_us: None,
                last_response_code: None,
                last_latency_ms: None,
                last_error: None,
            };
            match row.settled {
                None => waiting += 1,
                Some(Settled::InFlight {
                    owner,
                    lease_until_us,
                }) => {
                    delivery.lease_owner = Some(owner);
                    delivery.lease_until_us = Some(*lease_until_us);
                }
                Some(Settled::Attempted(attempt)) => {
                    if attempt.status == DeliveryStatus::Pending {
                        waiting += 1;
                    }
                    delivery.status = attempt.status.as_str();
                    delivery.next_attempt_at_us = attempt.next_attempt_at_us;
                    delivery.updated_at_us = attempt.attempted_at_us;
                    delivery.attempts = 1;
                    delivery.first_attempt_at_us = Some(attempt.attempted_at_us);
                    delivery.last_response_code = attempt.response_code;
                    delivery.last_latency_ms = attempt.latency_ms;
                    delivery.last_error = attempt.error.as_deref();
                }
            }
            delivery
        })
        .collect();
    D::insert_fan_out_rows(tx, &bodies, &deliveries).await?;
    Ok(FannedOut {
        written: deliveries.len() as u64,
        waiting,
    })
}

const INSERT_DELIVERY_COLUMNS: &str = "INSERT INTO webhook_deliveries (id, webhook_id, position, \
     event_name, order_key, payload_key, status, next_attempt_at_us, created_at_us, updated_at_us, \
     checkpoint_id, lease_owner, lease_until_us, attempts, first_attempt_at_us, \
     last_response_code, last_latency_ms, last_error) ";

// The cursor and the checkpoint marker fan each body out once, so no key is written twice;
// were one, its body is the same, and the first is kept.
const KEEP_FIRST_BODY: &str = " ON CONFLICT (payload_key) DO NOTHING";

/// The fan-out's rows in PostgreSQL: one statement per table, each column bound as an array
/// and turned back into rows by `unnest`. The statement text never changes, so it is parsed
/// and planned once per connection; multi-row `VALUES` lists (200 rows of 18 parameters each,
/// whose text changed with every mix of settled and queued rows) were parsed and planned every
/// time, and cost PostgreSQL about as much as the inserts themselves (docs/performance.md,
/// 2026-12-07 afternoon).
pub(crate) async fn insert_fan_out_rows_postgres(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    bodies: &[NewBody<'_>],
    deliveries: &[NewDelivery<'_>],
) -> Result<(), sqlx::Error> {
    if !bodies.is_empty() {
        let keys: Vec<&str> = bodies.iter().map(|b| b.key.as_str()).collect();
        let payloads: Vec<&str> = bodies.iter().map(|b| b.payload).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhook_payloads (payload_key, payload) \
             SELECT * FROM unnest($1::text[], $2::text[]){KEEP_FIRST_BODY}"
        )))
        .bind(keys)
        .bind(payloads)
        .execute(&mut **tx)
        .await?;
    }
    if deliveries.is_empty() {
        return Ok(());
    }
    fn column<'r, 'a, T>(
        rows: &'r [NewDelivery<'a>],
        field: impl Fn(&'r NewDelivery<'a>) -> T,
    ) -> Vec<T> {
        rows.iter().map(field).collect()
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INSERT_DELIVERY_COLUMNS} SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], \
         $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], \
         $11::text[], $12::text[], $13::int8[], $14::int8[], $15::int8[], $16::int4[], \
         $17::int8[], $18::text[])"
    )))
    .bind(column(deliveries, |r| r.id))
    .bind(column(deliveries, |r| r.webhook_id))
    .bind(column(deliveries, |r| r.position))
    .bind(column(deliveries, |r| r.event_name))
    .bind(column(deliveries, |r| r.order_key))
    .bind(column(deliveries, |r| r.payload_key.as_str()))
    .bind(column(deliveries, |r| r.status))
    .bind(column(deliveries, |r| r.next_attempt_at_us))
    .bind(column(deliveries, |r| r.created_at_us))
    .bind(column(deliveries, |r| r.updated_at_us))
    .bind(column(deliveries, |r| r.checkpoint_id))
    .bind(column(deliveries, |r| r.lease_owner))
    .bind(column(deliveries, |r| r.lease_until_us))
    .bind(column(deliveries, |r| r.attempts))
    .bind(column(deliveries, |r| r.first_attempt_at_us))
    .bind(column(deliveries, |r| r.last_response_code))
    .bind(column(deliveries, |r| r.last_latency_ms))
    .bind(column(deliveries, |r| r.last_error))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The fan-out's rows in SQLite, which has no arrays: multi-row `VALUES`, [`INSERT_CHUNK`]
/// rows per statement.
pub(crate) async fn insert_fan_out_rows_sqlite(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    bodies: &[NewBody<'_>],
    deliveries: &[NewDelivery<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in bodies.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO webhook_payloads (payload_key, payload) ",
        );
        qb.push_values(chunk, |mut b, body| {
            b.push_bind(body.key.clone())
                .push_bind(body.payload.to_string());
        });
        qb.push(KEEP_FIRST_BODY);
        qb.build().execute(&mut **tx).await?;
    }
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(INSERT_DELIVERY_COLUMNS);
        qb.push_values(chunk, |mut b, row| {
            b.push_bind(row.id.to_string())
                .push_bind(row.webhook_id.to_string())
                .push_bind(row.position)
                .push_bind(row.event_name.to_string())
                .push_bind(row.order_key.to_string())
                .push_bind(row.payload_key.clone())
                .push_bind(row.status)
                .push_bind(row.next_attempt_at_us)
                .push_bind(row.created_at_us)
                .push_bind(row.updated_at_us)
                .push_bind(row.checkpoint_id.map(str::to_string))
                .push_bind(row.lease_owner.map(str::to_string))
                .push_bind(row.lease_until_us)
                .push_bind(row.attempts)
                .push_bind(row.first_attempt_at_us)
                .push_bind(row.last_response_code)
                .push_bind(row.last_latency_ms)
                .push_bind(row.last_error.map(str::to_string));
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows queued after which the fan-out refreshes the queue's statistics, at most once per
/// [`REFRESH_AT_MOST_EVERY`].
const REFRESH_AFTER_ROWS: u64 = 5_000;
const REFRESH_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`refresh_queue_statistics`] needs to know between fan-outs.
#[derive(Default)]
pub(crate) struct QueueStatistics {
    queued_since: u64,
    refreshed_at: Option<std::time::Instant>,
    running: bool,
}

/// Refreshes PostgreSQL's statistics of the delivery queue once enough rows were queued.
///
/// The lease's plan depends on them, and autovacuum refreshes them at most once a minute (its
/// naptime) and only after a tenth of the table changed, so a queue that grows from nothing
/// to a backlog of hundreds of thousands of rows in seconds (a surge, a receiver that was down,
/// a young database) is planned as if it held one row: a lease then filtered the whole queue
/// for every row it checked, 33-110 ms per lease instead of a few (auto_explain, 2026-12-06),
/// which capped delivery. `ANALYZE` samples a bounded number of rows and does not block
/// writers; it runs in a task of its own, one at a time, so the fan-out never waits for it.
/// The first refresh after a quiet spell comes after 5,000 rows (a fraction of a second into
/// a surge); later ones at most every 10 s, because on a table of millions of rows each one
/// reads its sample from disk.
fn refresh_queue_statistics<D: Dialect>(store: &SqlStore<D>, queued: u64)
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
{
    let Some(statement) = D::REFRESH_QUEUE_STATISTICS else {
        return;
    };
    {
        let Ok(mut stats) = store.queue_statistics.lock() else {
            return;
        };
        stats.queued_since += queued;
        let recent = stats
            .refreshed_at
            .is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY);
        if stats.running || recent || stats.queued_since < REFRESH_AFTER_ROWS {
            return;
        }
        stats.running = true;
        stats.queued_since = 0;
    }
    let pool = store.pool.clone();
    let stats = store.queue_statistics.clone();
    tokio::spawn(async move {
        let result = sqlx::query(statement).execute(&pool).await;
        if let Err(e) = result {
            // The lease still works on stale statistics, only slower.
            tracing::debug!(error = %e, "refreshing the webhook queue's statistics failed");
        }
        if let Ok(mut stats) = stats.lock() {
            stats.running = false;
            stats.refreshed_at = Some(std::time::Instant::now());
        }
    });
}

/// Queues at most per statement looking for pending deliveries (two bound values each).
const QUEUE_CHECK_CHUNK: usize = 250;

/// Helpers shared by the fan-out's statements.
impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> Option<i64>: Decode<'q, Db<D>>,
    for<'q> Option<String>: Decode<'q, Db<D>>,
{
    /// The deliveries `ids` leased to `owner`, with what sending them needs, by position.
    async fn jobs_leased_to(
        &self,
        owner: &str,
        ids: &[String],
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let mut jobs = Vec::with_capacity(ids.len());
        // Chunked: an adoption may lease as many as `--webhook-window-deliveries`, which is
        // configurable, and each id is a bound value.
        for chunk in ids.chunks(FINISH_CHUNK) {
            jobs.extend(self.jobs_leased_to_chunk(owner, chunk).await?);
        }
        jobs.sort_by_key(|job| job.position);
        Ok(jobs)
    }

    async fn jobs_leased_to_chunk(
        &self,
        owner: &str,
        ids: &[String],
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let mut qb = QueryBuilder::<Db<D>>::new(
            // Rows queued before migration 0012 carry their own body.
            "SELECT d.id, d.webhook_id, d.position, d.event_name, \
             COALESCE(d.payload, p.payload) AS payload, d.attempts, \
             d.first_attempt_at_us, w.url, w.secret_sealed, w.previous_secret_sealed, \
             w.previous_secret_until_us, w.status, w.deleted_at_us \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             LEFT JOIN webhook_payloads p ON p.payload_key = d.payload_key \
             WHERE d.lease_owner = ",
        );
        qb.push_bind(owner.to_string());
        qb.push(" AND d.id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.clone());
        }
        sep.push_unseparated(") ORDER BY d.position");
        let rows: Vec<JobRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|r| {
                let webhook_status = match r.deleted_at_us {
                    Some(_) => None,
                    None => Some(WebhookStatus::parse(&r.status).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "webhook {} status '{}'",
                            r.webhook_id, r.status
                        ))
                    })?),
                };
                Ok(DeliveryJob {
                    id: r.id,
                    webhook_id: r.webhook_id,
                    position: r.position,
                    event_name: r.event_name,
                    payload: bytes::Bytes::from(r.payload),
                    attempts: r.attempts,
                    first_attempt_at_us: r.first_attempt_at_us,
                    url: r.url,
                    secret_sealed: r.secret_sealed,
                    previous_secret_sealed: r.previous_secret_sealed,
                    previous_secret_until_us: r.previous_secret_until_us,
                    webhook_status,
                })
            })
            .collect()
    }
}

/// Leases the pending deliveries `ids` to `lease` (owner, until), or releases them (`None`);
/// with `held_by`, only those still leased to that owner.
async fn set_leases<D>(
    tx: &mut sqlx::Transaction<'static, Db<D>>,
    ids: &[String],
    lease: Option<(&str, i64)>,
    held_by: Option<&str>,
) -> Result<(), StoreError>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>> + Type<Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Type<Db<D>>,
{
    for chunk in ids.chunks(FINISH_CHUNK) {
        let mut qb = QueryBuilder::<Db<D>>::new("UPDATE webhook_deliveries SET lease_owner = ");
        qb.push_bind(lease.map(|(owner, _)| owner.to_string()));
        qb.push(", lease_until_us = ");
        qb.push_bind(lease.map(|(_, until)| until));
        qb.push(" WHERE status = 'pending'");
        if let Some(holder) = held_by {
            qb.push(" AND lease_owner = ");
            qb.push_bind(holder.to_string());
        }
        qb.push(" AND id IN (");
        let mut separated = qb.separated(", ");
        for id in chunk {
            separated.push_bind(id.clone());
        }
        separated.push_unseparated(")");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records attempts made under `owner`'s leases and releases them (see
/// [`Webhooks::finish_webhook_deliveries`]), on `conn`: alone, or in the fan-out's transaction
/// for the deliveries its leader adopted.
async fn record_attempts<D>(
    conn: &mut Conn<D>,
    owner: &str,
    attempts: &[(String, AttemptRecord)],
) -> Result<Vec<String>, StoreError>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Type<Db<D>>,
    for<'q> i32: Encode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>>,
    for<'q> Option<i32>: Encode<'q, Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
{
    let mut recorded = Vec::with_capacity(attempts.len());
    for chunk in attempts.chunks(FINISH_CHUNK) {
        // A CTE of the outcomes joined to the rows (`UPDATE … FROM`, which both
        // PostgreSQL and SQLite 3.33+ have): one statement and one commit for the batch.
        // Every row is still re-checked on itself, as a single finish was: recorded only
        // while this owner holds its lease and it is pending.
        let mut qb = QueryBuilder::<Db<D>>::new(
            "WITH outcome (d_id, d_status, d_next_at, d_at, d_code, d_latency, d_error) AS (",
        );
        qb.push_values(chunk, |mut b, (id, attempt)| {
            b.push_bind(id.clone())
                .push_bind(attempt.status.as_str())
                .push_bind(attempt.next_attempt_at_us)
                .push_bind(attempt.attempted_at_us)
                .push_bind(attempt.response_code)
                .push_bind(attempt.latency_ms)
                .push_bind(attempt.error.clone());
        });
        qb.push(
                ") UPDATE webhook_deliveries SET status = outcome.d_status, \
                 attempts = webhook_deliveries.attempts + 1, \
                 next_attempt_at_us = outcome.d_next_at, \
                 first_attempt_at_us = COALESCE(webhook_deliveries.first_attempt_at_us, outcome.d_at), \
                 last_response_code = outcome.d_code, last_latency_ms = outcome.d_latency, \
                 last_error = outcome.d_error, lease_owner = NULL, lease_until_us = NULL, \
                 updated_at_us = outcome.d_at \
                 FROM outcome WHERE webhook_deliveries.id = outcome.d_id \
                 AND webhook_deliveries.status = 'pending' AND webhook_deliveries.lease_owner = ",
            );
        qb.push_bind(owner.to_string());
        qb.push(" RETURNING webhook_deliveries.id");
        let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        recorded.extend(ids.into_iter().map(|(id,)| id));
    }
    Ok(recorded)
}

#[async_trait]
impl<D> Webhooks for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> i32: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>>,
    for<'q> Option<i32>: Encode<'q, Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>>,
    for<'q> Option<&'q str>: Encode<'q, Db<D>>,
{
    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        if webhook.status == WebhookStatus::Active {
            skip_idle_history::<D>(&mut tx).await?;
        }
        sqlx::query(
            "INSERT INTO webhooks (id, name, description, url, events, secret_sealed, status, \
             created_at_us, updated_at_us, previous_secret_sealed, previous_secret_until_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&webhook.id)
        .bind(&webhook.name)
        .bind(webhook.description.as_deref())
        .bind(&webhook.url)
        .bind(events_json(&webhook.events)?)
        .bind(webhook.secret_sealed.as_deref())
        .bind(webhook.status.as_str())
        .bind(webhook.created_at_us)
        .bind(webhook.updated_at_us)
        .bind(webhook.previous_secret_sealed.as_deref())
        .bind(webhook.previous_secret_until_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let row: Option<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND deleted_at_us IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(WebhookRow::into_record).transpose()
    }

    async fn list_webhooks(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows: Vec<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE deleted_at_us IS NULL \
             ORDER BY created_at_us DESC, id DESC LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(WebhookRow::into_record).collect()
    }

    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<bool, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        if webhook.status == WebhookStatus::Active {
            skip_idle_history::<D>(&mut tx).await?;
        }
        let done = sqlx::query(
            "UPDATE webhooks SET name = $2, description = $3, url = $4, events = $5, \
             secret_sealed = $6, status = $7, updated_at_us = $8, previous_secret_sealed = $9, \
             previous_secret_until_us = $10 WHERE id = $1 AND deleted_at_us IS NULL",
        )
        .bind(&webhook.id)
        .bind(&webhook.name)
        .bind(webhook.description.as_deref())
        .bind(&webhook.url)
        .bind(events_json(&webhook.events)?)
        .bind(webhook.secret_sealed.as_deref())
        .bind(webhook.status.as_str())
        .bind(webhook.updated_at_us)
        .bind(webhook.previous_secret_sealed.as_deref())
        .bind(webhook.previous_secret_until_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn delete_webhook(&self, id: &str, at_us: i64) -> Result<bool, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE webhooks SET deleted_at_us = $2, updated_at_us = $2 \
             WHERE id = $1 AND deleted_at_us IS NULL",
        )
        .bind(id)
        .bind(at_us)
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&done) == 0 {
            return Ok(false);
        }
        // What was still queued will not be sent; the history says why.
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook was deleted', \
             lease_owner = NULL, lease_until_us = NULL, updated_at_us = $2 \
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(at_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn webhook_cursor(&self) -> Result<(i64, bool), StoreError> {
        let (position, active): (i64, i64) = sqlx::query_as(
            "SELECT position, (SELECT COUNT(*) FROM webhooks \
             WHERE status = 'ACTIVE' AND deleted_at_us IS NULL) FROM webhook_cursor WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((position, active > 0))
    }

    async fn lead_webhook_fan_out(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let taken = sqlx::query(
            "UPDATE webhook_cursor SET leader_owner = $1, leader_until_us = $3 WHERE id = 1 \
             AND (leader_owner = $1 OR leader_owner IS NULL OR leader_until_us < $2)",
        )
        .bind(owner)
        .bind(now_us)
        .bind(lease_until_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(D::rows_affected(&taken) > 0)
    }

    async fn release_webhook_fan_out(&self, owner: &str) -> Result<(), StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        sqlx::query(
            "UPDATE webhook_cursor SET leader_owner = NULL, leader_until_us = NULL \
             WHERE id = 1 AND leader_owner = $1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn active_webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>, StoreError> {
        let rows: Vec<SubscriptionRow> =
            sqlx::query_as(SUBSCRIPTIONS).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(SubscriptionRow::into_subscription)
            .collect()
    }

    async fn pending_webhook_queues(
        &self,
        among: Option<&[(String, String)]>,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let Some(queues) = among else {
            let all: Vec<(String, String)> = sqlx::query_as(
                "SELECT DISTINCT webhook_id, order_key FROM webhook_deliveries \
                 WHERE status = 'pending' AND checkpoint_id IS NULL",
            )
            .fetch_all(&self.pool)
            .await?;
            return Ok(all.into_iter().collect());
        };
        // One probe of the queue index per queue asked about (`column1`, `column2` are what
        // both databases name a `VALUES` list's columns). Written as `DISTINCT … WHERE (w = …
        // AND k = …) OR …`, PostgreSQL matched every pending row against every pair: the
        // fan-out's costliest read while queues were on the lease (docs/performance.md,
        // 2026-12-07 afternoon).
        let mut pending = HashSet::new();
        for chunk in queues.chunks(QUEUE_CHECK_CHUNK) {
            let mut qb = QueryBuilder::<Db<D>>::new("SELECT q.column1, q.column2 FROM (");
            qb.push_values(chunk, |mut b, (webhook_id, order_key)| {
                b.push_bind(webhook_id.clone()).push_bind(order_key.clone());
            });
            qb.push(
                ") AS q WHERE EXISTS (SELECT 1 FROM webhook_deliveries d \
                 WHERE d.webhook_id = q.column1 AND d.order_key = q.column2 \
                 AND d.status = 'pending')",
            );
            let found: Vec<(String, String)> = qb.build_query_as().fetch_all(&self.pool).await?;
            pending.extend(found);
        }
        Ok(pending)
    }

    async fn fan_out_webhook_events(
        &self,
        expected: i64,
        advance_to: i64,
        events: &[WebhookEventRow],
        now_us: i64,
        settled: &SettledDeliveries,
        adopted: &AdoptedOutcomes,
    ) -> Result<Option<FannedOut>, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        // The compare-and-set: in PostgreSQL a second process waits here for the first's
        // commit, then finds the position changed and moves nothing.
        let moved =
            sqlx::query("UPDATE webhook_cursor SET position = $2 WHERE id = 1 AND position = $1")
                .bind(expected)
                .bind(advance_to)
                .execute(&mut *tx)
                .await?;
        if D::rows_affected(&moved) == 0 {
            return Ok(None);
        }
        let events: Vec<&WebhookEventRow> = events.iter().collect();
        let fanned_out = queue_deliveries::<D>(&mut tx, &events, now_us, settled).await?;
        // An adopted delivery whose lease ran out and was taken over meanwhile is recorded by
        // the process that took it (this attempt was then a duplicate under the same id).
        record_attempts::<D>(&mut tx, &adopted.owner, &adopted.attempted).await?;
        set_leases::<D>(&mut tx, &adopted.unstarted, None, Some(&adopted.owner)).await?;
        tx.commit().await?;
        // Only what is left pending counts: a delivery written with its outcome never enters
        // the lease's (partial) indexes, and at thousands a second it would refresh every 10 s
        // for nothing.
        refresh_queue_statistics(self, fanned_out.waiting);
        Ok(Some(fanned_out))
    }

    async fn adopt_webhook_queues(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        queues: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<AdoptedQueue>, StoreError> {
        if queues.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = D::begin_write(&self.pool).await?;
        // Every pending row of the queues, locked (PostgreSQL) as it is read: a lease of a
        // queue's head that commits first is seen here, and one that comes after waits for
        // this commit and then finds the head leased. So a queue is adopted from its head or
        // not at all, and the lease never sends a row behind one the leader holds.
        let mut pending: Vec<(String, String, String, i64, Option<i64>)> = Vec::new();
        for chunk in queues.chunks(QUEUE_CHECK_CHUNK) {
            let mut qb = QueryBuilder::<Db<D>>::new(
                "SELECT d.id, d.webhook_id, d.order_key, d.next_attempt_at_us, d.lease_until_us \
                 FROM (",
            );
            qb.push_values(chunk, |mut b, (webhook_id, order_key)| {
                b.push_bind(webhook_id.clone()).push_bind(order_key.clone());
            });
            qb.push(
                ") AS q JOIN webhook_deliveries d ON d.webhook_id = q.column1 \
                 AND d.order_key = q.column2 \
                 WHERE d.status = 'pending' AND d.checkpoint_id IS NULL \
                 ORDER BY d.webhook_id, d.order_key, d.position",
            );
            qb.push(D::LOCK_DELIVERIES_READ);
            let rows: Result<Vec<(String, String, String, i64, Option<i64>)>, sqlx::Error> =
                qb.build_query_as().fetch_all(&mut *tx).await;
            match rows {
                Ok(rows) => pending.extend(rows),
                // A lease is writing one of these rows: they stay the lease's this time.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Each queue's run from its head while rows are due and free.
        let mut picked: Vec<String> = Vec::new();
        let mut adopted: Vec<AdoptedQueue> = Vec::new();
        let mut queue_of: HashMap<String, usize> = HashMap::new();
        let mut i = 0;
        while i < pending.len() {
            let (webhook_id, order_key) = (pending[i].1.clone(), pending[i].2.clone());
            let end = pending[i..]
                .iter()
                .position(|r| r.1 != webhook_id || r.2 != order_key)
                .map_or(pending.len(), |n| i + n);
            let mut taken = 0;
            for (id, _, _, next_at, lease_until) in &pending[i..end] {
                let free = *next_at <= now_us && lease_until.is_none_or(|until| until < now_us);
                if !free || picked.len() >= limit {
                    break;
                }
                queue_of.insert(id.clone(), adopted.len());
                picked.push(id.clone());
                taken += 1;
            }
            if taken > 0 {
                adopted.push(AdoptedQueue {
                    webhook_id,
                    order_key,
                    jobs: Vec::new(),
                    whole: taken == end - i,
                });
            }
            i = end;
        }
        set_leases::<D>(&mut tx, &picked, Some((owner, lease_until_us)), None).await?;
        tx.commit().await?;
        for job in self.jobs_leased_to(owner, &picked).await? {
            if let Some(queue) = queue_of.get(&job.id) {
                adopted[*queue].jobs.push(job);
            }
        }
        Ok(adopted)
    }

    async fn webhook_checkpoints_due(
        &self,
        limit: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows: Vec<CheckpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} \
             FROM checkpoint_outbox o JOIN checkpoints c ON c.id = o.checkpoint_id \
             WHERE o.webhooks_fanned_out_at_us IS NULL \
               AND o.position <= (SELECT position FROM webhook_cursor WHERE id = 1) \
               AND EXISTS (SELECT 1 FROM webhooks WHERE status = 'ACTIVE' AND deleted_at_us IS NULL) \
             ORDER BY o.position, c.created_at_us LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(CheckpointRow::into_record).collect())
    }

    async fn fan_out_webhook_checkpoints(
        &self,
        checkpoints: &[WebhookEventRow],
        now_us: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let mut marked = Vec::new();
        for checkpoint in checkpoints {
            let Some(id) = &checkpoint.checkpoint_id else {
                continue;
            };
            // The compare-and-set, as for the event cursor: a second process waits for the
            // first's commit, then finds the marker set and queues nothing for this one.
            let done = sqlx::query(
                "UPDATE checkpoint_outbox SET webhooks_fanned_out_at_us = $2 \
                 WHERE checkpoint_id = $1 AND webhooks_fanned_out_at_us IS NULL",
            )
            .bind(id)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
            if D::rows_affected(&done) > 0 {
                marked.push(checkpoint);
            }
        }
        let queued = queue_deliveries::<D>(&mut tx, &marked, now_us, &SettledDeliveries::new())
            .await?
            .written;
        tx.commit().await?;
        Ok(queued)
    }

    async fn lease_webhook_deliveries(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        busy_webhooks: &[String],
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        // The heads are picked once, in a materialized CTE, and then updated by id. Written as
        // `UPDATE … WHERE id IN (SELECT … LIMIT n)`, the statement was at the planner's mercy:
        // on a young table without statistics PostgreSQL estimated one row everywhere and
        // re-ran the LIMITed subquery once per pending row, so with 800 pending rows one lease
        // ran for 27 s and every webhook's deliveries stopped behind one receiver that hung
        // (auto_explain, 2026-12-04). A MATERIALIZED CTE runs once. The head check stays a
        // `NOT EXISTS`: written as `position = (SELECT MIN(…))` it is estimated as a selective
        // filter, and with a million pending rows PostgreSQL then evaluated it for all of them
        // instead of walking the due index until the LIMIT (23 deliveries/s, same day).
        let mut qb = QueryBuilder::<Db<D>>::new(
            "WITH picked AS MATERIALIZED (SELECT d.id FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at_us <= ",
        );
        qb.push_bind(now_us);
        qb.push(" AND (d.lease_until_us IS NULL OR d.lease_until_us < ");
        qb.push_bind(now_us);
        qb.push(
            ") AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
             WHERE e.webhook_id = d.webhook_id AND e.order_key = d.order_key \
             AND e.status = 'pending' AND e.position < d.position) \
             AND (d.checkpoint_id IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_deliveries f \
             WHERE f.webhook_id = d.webhook_id AND f.status = 'pending' \
             AND f.checkpoint_id IS NULL AND f.position <= d.position))",
        );
        if !busy_webhooks.is_empty() {
            qb.push(" AND d.webhook_id NOT IN (");
            let mut sep = qb.separated(", ");
            for id in busy_webhooks {
                sep.push_bind(id.clone());
            }
            sep.push_unseparated(")");
        }
        qb.push(" ORDER BY d.next_attempt_at_us, d.position LIMIT ");
        qb.push_bind(limit);
        qb.push(") UPDATE webhook_deliveries SET lease_owner = ");
        qb.push_bind(owner.to_string());
        qb.push(", lease_until_us = ");
        qb.push_bind(lease_until_us);
        // Re-checked on the row itself (see the module docs): what makes a lease exclusive.
        qb.push(
            " FROM picked WHERE webhook_deliveries.id = picked.id \
             AND webhook_deliveries.status = 'pending' \
             AND webhook_deliveries.next_attempt_at_us <= ",
        );
        qb.push_bind(now_us);
        qb.push(
            " AND (webhook_deliveries.lease_until_us IS NULL \
             OR webhook_deliveries.lease_until_us < ",
        );
        qb.push_bind(now_us);
        qb.push(") RETURNING webhook_deliveries.id");
        let leased: Vec<(String,)> = qb.build_query_as().fetch_all(&self.pool).await?;
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = leased.into_iter().map(|(id,)| id).collect();
        self.jobs_leased_to(owner, &ids).await
    }

    async fn finish_webhook_deliveries(
        &self,
        owner: &str,
        attempts: &[(String, AttemptRecord)],
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        record_attempts::<D>(&mut conn, owner, attempts).await
    }

    async fn list_webhook_deliveries(
        &self,
        webhook_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY created_at_us DESC, id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(webhook_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(DeliveryRow::into_record).collect()
    }

    async fn redeliver_webhook_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        now_us: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        // A delivery in flight keeps its lease; it is queued again once that attempt is over
        // only if it then fails, so a redelivery never runs beside the attempt it repeats.
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at_us = $3, \
             first_attempt_at_us = NULL, updated_at_us = $3 \
             WHERE id = $2 AND webhook_id = $1 AND (status <> 'pending' OR lease_owner IS NULL)",
        )
        .bind(webhook_id)
        .bind(delivery_id)
        .bind(now_us)
        .execute(&self.pool)
        .await?;
        let row: Option<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $2 AND webhook_id = $1"
        )))
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(DeliveryRow::into_record).transpose()
    }

    async fn next_webhook_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let (due,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(next_attempt_at_us) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }
}
