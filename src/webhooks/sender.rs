//! One signed POST to a receiver.
//!
//! The SSRF rules of [`super::target`] are applied to the addresses the HTTP client actually
//! dials, not to an earlier lookup: the client's resolver refuses a name any of whose addresses
//! is not public (so a DNS answer that changes between a check and the connection cannot
//! point a delivery at the internal network), and an address written in the URL is checked
//! before sending. Redirects are not followed at all (a 3xx is the receiver's answer, and a
//! permanent failure), and no proxy from the environment is used, since a proxy would dial
//! the target on our behalf past these checks. Every attempt has a connect timeout and a total
//! timeout, so a receiver that hangs costs one attempt slot for a bounded time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use super::WebhookSettings;
use super::retry::AttemptOutcome;
use super::signing;
use super::target::{self, TargetError};

/// How much of a receiver's answer is kept (for `test_webhook` and the history).
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub outcome: AttemptOutcome,
    pub status: Option<u16>,
    /// The start of the receiver's answer, as text (lossy), at most [`MAX_RESPONSE_BODY`].
    pub body: Option<String>,
    pub retry_after: Option<String>,
    pub latency: Duration,
    pub error: Option<String>,
    /// Refused before anything was sent (a URL the SSRF rules forbid): retrying cannot help.
    pub refused: bool,
}

impl SendOutcome {
    /// An attempt refused before anything was sent: the URL breaks the SSRF rules, so
    /// retrying cannot help.
    pub fn refused(error: TargetError) -> Self {
        SendOutcome {
            outcome: AttemptOutcome::NoResponse,
            status: None,
            body: None,
            retry_after: None,
            latency: Duration::ZERO,
            error: Some(error.to_string()),
            refused: true,
        }
    }
}

/// Sends deliveries; one per process, shared by every delivery task (it pools connections).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private_ips: bool,
}

/// Resolves names with the system resolver and refuses any name with a non-public address
/// (unless private addresses are allowed).
struct GuardedResolver {
    allow_private_ips: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private_ips = self.allow_private_ips;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private_ips
                && let Some(bad) = addrs
                    .iter()
                    .map(|a| a.ip())
                    .find(|ip| !target::is_public(*ip))
            {
                return Err(Box::new(TargetError::PrivateAddress(bad))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl Sender {
    pub fn new(settings: &WebhookSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private_ips: settings.allow_private_ips,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("model-ledger-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Sender {
            client,
            allow_private_ips: settings.allow_private_ips,
        })
    }

    /// [`target::check_target`] under this sender's address rule. A worker does this once
    /// per webhook, not per attempt (parsing with IDNA was measurable at thousands of
    /// deliveries a second).
    pub fn check_target(&self, url: &str) -> Result<Url, TargetError> {
        target::check_target(url, self.allow_private_ips)
    }

    /// POSTs `payload` to `url`, signed with each of `secrets` (none: unsigned). For a
    /// one-off send (`test_webhook`); the worker keeps each webhook's checked URL and keys.
    pub async fn send(
        &self,
        url: &str,
        delivery_id: &str,
        payload: Bytes,
        secrets: &[Vec<u8>],
    ) -> SendOutcome {
        let target = match self.check_target(url) {
            Ok(u) => u,
            Err(e) => return SendOutcome::refused(e),
        };
        let keys: Vec<hmac::Key> = secrets.iter().map(|s| signing::key(s)).collect();
        let keys: Vec<&hmac::Key> = keys.iter().collect();
        self.send_to(&target, delivery_id, payload, &keys).await
    }

    /// POSTs `payload` to a URL [`Sender::check_target`] accepted, signed with each of `keys`
    /// (none: unsigned). The body is shared, not copied: one event's body goes to every
    /// webhook that receives it.
    pub async fn send_to(
        &self,
        target: &Url,
        delivery_id: &str,
        payload: Bytes,
        keys: &[&hmac::Key],
    ) -> SendOutcome {
        let started = Instant::now();
        let timestamp = chrono::Utc::now().timestamp();
        let headers = signing::sign(keys, delivery_id, timestamp, &payload);
        let mut request = self
            .client
            .post(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload);
        for (name, value) in &headers.0 {
            request = request.header(*name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let private = refused_by_resolver(&e);
                return SendOutcome {
                    outcome: AttemptOutcome::NoResponse,
                    status: None,
                    body: None,
                    retry_after: None,
                    latency: started.elapsed(),
                    error: Some(describe(&e)),
                    refused: private,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_bounded(response).await;
        SendOutcome {
            outcome: AttemptOutcome::Status(status),
            status: Some(status),
            body: Some(body),
            retry_after,
            latency: started.elapsed(),
            error: (!(200..300).contains(&status))
                .then(|| format!("the receiver answered HTTP {status}")),
            refused: false,
        }
    }
}

/// The answer's first [`MAX_RESPONSE_BODY`] bytes; the rest is not read (the connection is
/// dropped), so a receiver cannot make us buffer an unbounded answer.
async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < MAX_RESPONSE_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Whether the guarded resolver refused the receiver's address.
fn refused_by_resolver(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(TargetError::PrivateAddress(_)) = err.downcast_ref::<TargetError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A transport error with its causes, e.g. "error sending request: connection refused".
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cur = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(allow_private_ips: bool) -> Sender {
        let mut settings = WebhookSettings::ephemeral();
        settings.allow_private_ips = allow_private_ips;
        Sender::new(&settings).expect("client")
    }

    #[test]
    fn an_address_written_in_the_url_is_checked_before_any_attempt() {
        let strict = sender(false);
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]:9/",
            "http://10.1.2.3/x",
        ] {
            assert!(
                matches!(
                    strict.check_target(url),
                    Err(TargetError::PrivateAddress(_))
                ),
                "{url}"
            );
        }
        assert!(strict.check_target("https://8.8.8.8/hook").is_ok());
        // Names pass here; the resolver checks them each time they are dialled.
        assert!(strict.check_target("http://localhost:9/hook").is_ok());
        assert!(matches!(
            strict.check_target("ftp://example.com/"),
            Err(TargetError::Scheme(_))
        ));
        assert!(sender(true).check_target("http://127.0.0.1:9/hook").is_ok());
    }

    #[tokio::test]
    async fn a_refused_url_sends_nothing_and_is_not_retried() {
        let sent = sender(false)
            .send(
                "http://127.0.0.1:9/hook",
                "d-1",
                Bytes::from_static(b"{}"),
                &[],
            )
            .await;
        assert!(sent.refused);
        assert_eq!(sent.status, None);
        assert!(
            sent.error
                .as_deref()
                .is_some_and(|e| e.contains("non-public address")),
            "{:?}",
            sent.error
        );
    }
}
