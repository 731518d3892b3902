//! One attempt at a delivery, from a job to the row update that records it.
//!
//! An attempt refuses at once what cannot succeed (a disabled or deleted webhook, a secret no
//! configured key opens, a URL the SSRF rules forbid), signs with the current secret and,
//! during a rotation's overlap, the one it replaced, sends, and turns the answer into the
//! delivery's next state through the retry policy ([`super::super::retry`]): delivered, failed
//! for good, or pending until its backoff has passed. What every attempt to one webhook
//! shares (its checked URL and opened keys) is made once and kept, since at thousands of
//! deliveries a second parsing the URL and opening the secret per attempt was measurable.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use rand::Rng;
use url::Url;

use super::super::retry::NextStep;
use super::super::sender::SendOutcome;
use super::super::signing;
use super::super::target::TargetError;
use super::{Worker, later};
use crate::store::projection::micros;
use crate::store::{AttemptRecord, DeliveryJob, DeliveryStatus, WebhookStatus};

/// Webhooks whose checked URL and keys a worker keeps (see [`Worker::prepared`]).
const PREPARED_WEBHOOKS: usize = 10_000;

/// What every attempt to one webhook shares: its URL, checked, and its signing keys, opened
/// (see [`Worker::prepared`]), with what they were made from.
pub(super) struct PreparedWebhook {
    url: String,
    secret_sealed: Option<String>,
    previous_secret_sealed: Option<String>,
    target: Result<Url, TargetError>,
    /// The current secret's key, or why it cannot be opened.
    current: Result<Option<hmac::Key>, String>,
    /// The replaced secret's key (it signs too during a rotation's overlap), or why it
    /// cannot be opened; only an error while it still signs fails an attempt.
    previous: Result<Option<hmac::Key>, String>,
}

impl Worker {
    /// The checked URL and opened keys of `job`'s webhook, made once and reused while the
    /// webhook's URL and secrets stay what `job` carries (a change made through the API
    /// reaches the next job read after it, which then makes them again).
    fn prepared(&self, job: &DeliveryJob) -> Arc<PreparedWebhook> {
        let made_from = |p: &PreparedWebhook| {
            p.url == job.url
                && p.secret_sealed == job.secret_sealed
                && p.previous_secret_sealed == job.previous_secret_sealed
        };
        if let Ok(cache) = self.prepared.lock()
            && let Some(p) = cache.get(&job.webhook_id)
            && made_from(p)
        {
            return p.clone();
        }
        let open = |sealed: &Option<String>| {
            sealed
                .as_ref()
                .map(|sealed| {
                    self.settings
                        .secrets
                        .open(&job.webhook_id, sealed)
                        .map(|secret| signing::key(&secret))
                })
                .transpose()
                .map_err(|e| e.to_string())
        };
        let prepared = Arc::new(PreparedWebhook {
            url: job.url.clone(),
            secret_sealed: job.secret_sealed.clone(),
            previous_secret_sealed: job.previous_secret_sealed.clone(),
            target: self.sender.check_target(&job.url),
            current: open(&job.secret_sealed),
            previous: open(&job.previous_secret_sealed),
        });
        if let Ok(mut cache) = self.prepared.lock() {
            // Bounded by the number of webhooks; a registry with more than this forgets them
            // all at once and makes them again as their jobs come.
            if cache.len() >= PREPARED_WEBHOOKS && !cache.contains_key(&job.webhook_id) {
                cache.clear();
            }
            cache.insert(job.webhook_id.clone(), prepared.clone());
        }
        prepared
    }

    pub(super) async fn attempt(&self, job: &DeliveryJob) -> AttemptRecord {
        let now = chrono::Utc::now();
        let give_up = |error: String| AttemptRecord {
            status: DeliveryStatus::Failed,
            next_attempt_at_us: micros(&now),
            attempted_at_us: micros(&now),
            response_code: None,
            latency_ms: None,
            error: Some(error),
        };
        match job.webhook_status {
            Some(WebhookStatus::Active) => {}
            Some(WebhookStatus::Disabled) => {
                return give_up("the webhook is disabled".into());
            }
            None => return give_up("the webhook was deleted".into()),
        }
        let prepared = self.prepared(job);
        let cannot_open = |e: &String| {
            give_up(format!(
                "the webhook's secret cannot be opened ({e}); configure the \
                 --webhook-secret-key it was sealed with, then redeliver"
            ))
        };
        // The current secret, then (during a rotation's overlap) the one it replaced.
        let current = match &prepared.current {
            Ok(key) => key,
            Err(e) => return cannot_open(e),
        };
        let in_overlap = job
            .previous_secret_until_us
            .is_some_and(|t| t > micros(&now));
        let overlapping = match (&prepared.previous, in_overlap) {
            (_, false) => None,
            (Ok(key), true) => key.as_ref(),
            (Err(e), true) => return cannot_open(e),
        };
        let keys: Vec<&hmac::Key> = current.iter().chain(overlapping).collect();
        let sent = match &prepared.target {
            Ok(url) => {
                self.sender
                    .send_to(url, &job.id, job.payload.clone(), &keys)
                    .await
            }
            Err(e) => SendOutcome::refused(e.clone()),
        };
        let attempted_at = chrono::Utc::now();
        let first = job.first_attempt_at_us.unwrap_or(micros(&now));
        let elapsed =
            Duration::from_micros(micros(&attempted_at).saturating_sub(first).max(0) as u64);
        let step = if sent.refused {
            NextStep::Failed
        } else {
            self.settings.retry.next_step(
                sent.outcome,
                (job.attempts + 1).clamp(1, i64::from(u32::MAX)) as u32,
                elapsed,
                sent.retry_after.as_deref(),
                attempted_at,
                rand::thread_rng().r#gen::<f64>(),
            )
        };
        record(&sent, step, attempted_at)
    }
}

/// The row update for an attempt that ended with `sent` and led to `step`.
fn record(sent: &SendOutcome, step: NextStep, at: chrono::DateTime<chrono::Utc>) -> AttemptRecord {
    let (status, next) = match step {
        NextStep::Delivered => (DeliveryStatus::Succeeded, at),
        NextStep::Failed => (DeliveryStatus::Failed, at),
        NextStep::RetryAfter(wait) => (DeliveryStatus::Pending, later(at, wait)),
    };
    AttemptRecord {
        status,
        next_attempt_at_us: micros(&next),
        attempted_at_us: micros(&at),
        response_code: sent.status.map(i32::from),
        latency_ms: Some(sent.latency.as_millis().min(i64::MAX as u128) as i64),
        error: sent.error.clone(),
    }
}
