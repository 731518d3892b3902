//! Publishing committed events to subscribers: the outbox relay to NATS JetStream and the
//! HTTP Server-Sent Events stream.
//!
//! The outbox row is written in the same transaction as its event (see [`crate::store`]); this
//! module only moves rows out. The [`relay`] publishes each pending event to JetStream, waits for
//! the publish acknowledgement and only then marks the row published, so a crash in between
//! re-publishes the event, which JetStream drops as a duplicate within its window (the message
//! id is the event id). One relay publishes at a time per database. `api::stream` serves the same
//! log over SSE to subscribers without NATS, and [`watch`] is a small downstream server that
//! follows a model's Production version over NATS.

pub mod cloudevent;
pub mod relay;
pub mod subject;
pub mod watch;

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch as signal;

pub use relay::{NatsSettings, Publisher, spawn_relay};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("NATS connection: {0}")]
    Connect(String),
    #[error("JetStream stream setup: {0}")]
    Stream(String),
    #[error("JetStream publish: {0}")]
    Publish(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The relay's leader lease was lost (see `Outbox::try_acquire_relay_lease`).
    #[error("relay lock: {0}")]
    Lock(#[source] crate::store::StoreError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What the relay is doing, for `/readyz` and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelaySnapshot {
    /// A NATS URL is configured.
    pub enabled: bool,
    /// The NATS connection is up.
    pub connected: bool,
    /// This process holds the relay lock and is the one publishing.
    pub leader: bool,
    /// Events acknowledged by JetStream since start.
    pub published: u64,
    /// Of those, how many JetStream reported as duplicates (already stored within the window).
    pub duplicates: u64,
    pub last_published_position: Option<i64>,
    pub last_error: Option<String>,
}

/// Relay status shared between the relay task and the HTTP layer.
#[derive(Debug, Default)]
pub struct RelayStatus(Mutex<RelaySnapshot>);

impl RelayStatus {
    pub fn snapshot(&self) -> RelaySnapshot {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut RelaySnapshot)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}

/// The publishing side of a running server: relay status plus the stop signal that ends the
/// relay and open event streams at shutdown (an open SSE response would otherwise hold
/// graceful shutdown forever).
#[derive(Clone)]
pub struct Runtime {
    pub status: Arc<RelayStatus>,
    stop: Arc<signal::Sender<bool>>,
}

impl Default for Runtime {
    fn default() -> Self {
        let (stop, _) = signal::channel(false);
        Runtime {
            status: Arc::new(RelayStatus::default()),
            stop: Arc::new(stop),
        }
    }
}

impl Runtime {
    /// Stops the relay and ends every open event stream.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Runtime::stop`] has been called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.stop.subscribe();
        async move {
            // An error means the sender is gone, which is also a stop.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}
