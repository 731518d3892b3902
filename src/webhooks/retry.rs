//! When a failed delivery is tried again, and when it is given up.
//!
//! A receiver that is briefly down, overloaded or restarting should get the event later, not
//! never; a receiver that refuses it (4xx other than 408 and 429) will refuse it again, so
//! retrying only adds load. The rules:
//! - retried: connection errors and timeouts, 408, 429 and every 5xx;
//! - not retried: any other status (2xx is success, the rest is a permanent failure);
//! - the wait doubles from [`RetryPolicy::base`] up to [`RetryPolicy::max_delay`], with "full
//!   jitter" (a uniform random wait between half and all of it) so receivers that come back do
//!   not get every queued delivery at the same instant;
//! - a `Retry-After` header (seconds or an HTTP date) is honoured when it asks for a longer wait,
//!   capped at `max_delay` so a receiver cannot park a delivery indefinitely;
//! - once the next attempt would start later than [`RetryPolicy::window`] after the first one,
//!   the delivery is marked failed (it can still be redelivered by hand).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered this status.
    Status(u16),
    /// No answer: connect error, reset, or the connect/total timeout fired.
    NoResponse,
}

impl AttemptOutcome {
    pub fn succeeded(self) -> bool {
        matches!(self, AttemptOutcome::Status(s) if (200..300).contains(&s))
    }

    pub fn is_retryable(self) -> bool {
        match self {
            AttemptOutcome::NoResponse => true,
            AttemptOutcome::Status(s) => s == 408 || s == 429 || (500..600).contains(&s),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAfter(Duration),
    Failed,
}

/// The retry schedule; the defaults are what `serve` uses unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The step after attempt number `attempt` (1 for the first), which ended `elapsed` after
    /// the first attempt started. `jitter` is a uniform sample from `[0, 1)`, passed in so the
    /// schedule is testable; `retry_after` is the raw header value, if any.
    pub fn next_step(
        &self,
        outcome: AttemptOutcome,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<&str>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> NextStep {
        if outcome.succeeded() {
            return NextStep::Delivered;
        }
        if !outcome.is_retryable() {
            return NextStep::Failed;
        }
        let exponential = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let jittered = exponential.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        let asked = retry_after
            .and_then(|v| parse_retry_after(v, now))
            .map(|d| d.min(self.max_delay));
        let wait = asked.map_or(jittered, |a| a.max(jittered));
        if elapsed.saturating_add(wait) > self.window {
            NextStep::Failed
        } else {
            NextStep::RetryAfter(wait)
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); `None` when unreadable.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn which_outcomes_are_retried() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(AttemptOutcome::Status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422] {
            assert!(!AttemptOutcome::Status(s).is_retryable(), "{s}");
        }
        assert!(AttemptOutcome::NoResponse.is_retryable());
        assert!(AttemptOutcome::Status(204).succeeded());
    }

    #[test]
    fn waits_double_with_jitter_and_stop_at_the_cap() {
        let p = RetryPolicy::default();
        let step = |attempt, jitter| {
            p.next_step(
                AttemptOutcome::Status(503),
                attempt,
                Duration::ZERO,
                None,
                now(),
                jitter,
            )
        };
        assert_eq!(step(1, 1.0), NextStep::RetryAfter(Duration::from_secs(1)));
        assert_eq!(
            step(1, 0.0),
            NextStep::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(step(4, 1.0), NextStep::RetryAfter(Duration::from_secs(8)));
        assert_eq!(
            step(30, 1.0),
            NextStep::RetryAfter(Duration::from_secs(300))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        let s = |h| {
            p.next_step(
                AttemptOutcome::Status(429),
                1,
                Duration::ZERO,
                Some(h),
                now(),
                1.0,
            )
        };
        assert_eq!(s("120"), NextStep::RetryAfter(Duration::from_secs(120)));
        assert_eq!(s("99999"), NextStep::RetryAfter(Duration::from_secs(300)));
        assert_eq!(
            s("Thu, 01 Jan 2026 00:01:00 GMT"),
            NextStep::RetryAfter(Duration::from_secs(60))
        );
        // Unreadable or shorter than our own backoff: our backoff wins.
        assert_eq!(s("soon"), NextStep::RetryAfter(Duration::from_secs(1)));
        assert_eq!(s("0"), NextStep::RetryAfter(Duration::from_secs(1)));
    }

    #[test]
    fn permanent_refusals_and_an_exhausted_window_fail() {
        let p = RetryPolicy {
            window: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.next_step(
                AttemptOutcome::Status(404),
                1,
                Duration::ZERO,
                None,
                now(),
                0.5
            ),
            NextStep::Failed
        );
        assert_eq!(
            p.next_step(
                AttemptOutcome::NoResponse,
                3,
                Duration::from_secs(59),
                None,
                now(),
                0.5
            ),
            NextStep::Failed
        );
        assert_eq!(
            p.next_step(
                AttemptOutcome::Status(200),
                9,
                Duration::from_secs(999),
                None,
                now(),
                0.5
            ),
            NextStep::Delivered
        );
    }
}
