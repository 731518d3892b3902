//! Webhook subscriptions through the one door: every request is authorized first
//! (`ManageWebhooks` to change or test, `ReadWebhooks` to look; admin-only in the shipped
//! policies), then validated, then stored.
//!
//! Webhooks are registry-wide, so the access check names the placeholder model `*`. A refusal
//! is recorded like any other, and it happens before the webhook is looked up, so a caller
//! who may not read webhooks cannot even learn whether an id exists.
//!
//! Validation follows MLflow's server: a name of letters, digits, `.`, `_` and `-` that starts
//! and ends with a letter or digit; a URL that passes the SSRF rules that need no DNS (scheme,
//! no credentials, an address in the URL must be public unless private addresses are allowed;
//! names are checked as they are dialled, on every delivery); a non-empty list of known event
//! names. Secrets are sealed before they are stored and never come back out of this module.

use chrono::Utc;

use super::{Caller, Missing, Resource, Service, ServiceError};
use crate::domain::{Action, DomainError};
use crate::store::projection::micros;
use crate::store::{DeliveryRecord, WebhookRecord, WebhookStatus};
use crate::webhooks::events::{EVENT_NAMES, is_known_event, test_event};
use crate::webhooks::sender::Sender;
use crate::webhooks::target;

/// The resource every webhook request is checked against.
const REGISTRY_WIDE: &str = "*";
/// MLflow's limit on a webhook's name.
const MAX_NAME: usize = 63;

/// What a create or update request asks for; `None` leaves a field as it is (on create, the
/// required ones must be present).
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub secret: Option<String>,
    pub status: Option<WebhookStatus>,
}

/// A webhook as callers see it: there is no secret field, so none can be returned.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl From<WebhookRecord> for WebhookView {
    fn from(r: WebhookRecord) -> Self {
        WebhookView {
            id: r.id,
            name: r.name,
            description: r.description,
            url: r.url,
            events: r.events,
            status: r.status,
            created_at_us: r.created_at_us,
            updated_at_us: r.updated_at_us,
        }
    }
}

/// What `test_webhook` found (MLflow's `WebhookTestResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTestResult {
    pub success: bool,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::InvalidParameter(message.into())
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(Missing::Webhook { id: id.to_string() })
}

fn validate_name(name: &str) -> Result<(), DomainError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let edges = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_NAME || !edges || !name.chars().all(ok_char) {
        return Err(invalid(format!(
            "Invalid webhook name '{name}'. Webhook names must be 1 to {MAX_NAME} characters of \
             letters, digits, '.', '_' and '-', and start and end with a letter or digit."
        )));
    }
    Ok(())
}

fn validate_events(events: &[String]) -> Result<(), DomainError> {
    if events.is_empty() {
        return Err(invalid("Webhook events cannot be empty"));
    }
    if let Some(bad) = events.iter().find(|e| !is_known_event(e)) {
        return Err(invalid(format!(
            "Invalid webhook event '{bad}'. Valid events are: {}",
            EVENT_NAMES.join(", ")
        )));
    }
    Ok(())
}

impl Service {
    /// Checks the URL rules that need no DNS; returns the URL as it is stored (trimmed).
    fn validate_url(&self, raw: &str) -> Result<String, DomainError> {
        target::check_target(raw, self.webhooks.allow_private_ips)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(raw.trim().to_string())
    }

    fn seal(&self, webhook_id: &str, secret: &str) -> Result<String, crate::store::StoreError> {
        self.webhooks
            .secrets
            .seal(webhook_id, secret.as_bytes())
            .map_err(|e| {
                tracing::error!(error = %e, "sealing a webhook secret failed");
                crate::store::StoreError::Config(e.to_string())
            })
    }

    async fn webhook_record(&self, id: &str) -> Result<WebhookRecord, ServiceError> {
        self.store
            .get_webhook(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    pub async fn create_webhook(
        &self,
        caller: &Caller,
        change: WebhookChange,
    ) -> Result<WebhookView, ServiceError> {
        self.check(
            caller,
            Action::ManageWebhooks,
            Resource::model(REGISTRY_WIDE),
        )
        .await?;
        let name = change.name.unwrap_or_default();
        validate_name(&name)?;
        let url = self.validate_url(change.url.as_deref().unwrap_or(""))?;
        let events = change.events.unwrap_or_default();
        validate_events(&events)?;
        let id = uuid::Uuid::now_v7().to_string();
        let secret_sealed = match change.secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => Some(self.seal(&id, secret)?),
            None => None,
        };
        let now = micros(&Utc::now());
        let record = WebhookRecord {
            id,
            name,
            description: change.description.filter(|d| !d.is_empty()),
            url,
            events,
            secret_sealed,
            previous_secret_sealed: None,
            previous_secret_until_us: None,
            status: change.status.unwrap_or(WebhookStatus::Active),
            created_at_us: now,
            updated_at_us: now,
        };
        self.store.insert_webhook(&record).await?;
        Ok(record.into())
    }

    pub async fn get_webhook(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<WebhookView, ServiceError> {
        self.check(caller, Action::ReadWebhooks, Resource::model(REGISTRY_WIDE))
            .await?;
        Ok(self.webhook_record(id).await?.into())
    }

    /// Live webhooks, newest first; the offset of the next page when there is one.
    pub async fn list_webhooks(
        &self,
        caller: &Caller,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WebhookView>, Option<i64>), ServiceError> {
        self.check(caller, Action::ReadWebhooks, Resource::model(REGISTRY_WIDE))
            .await?;
        let mut rows = self.store.list_webhooks(offset, limit + 1).await?;
        let next = (rows.len() as i64 > limit).then_some(offset + limit);
        rows.truncate(limit.max(0) as usize);
        Ok((rows.into_iter().map(Into::into).collect(), next))
    }

    pub async fn update_webhook(
        &self,
        caller: &Caller,
        id: &str,
        change: WebhookChange,
    ) -> Result<WebhookView, ServiceError> {
        self.check(
            caller,
            Action::ManageWebhooks,
            Resource::model(REGISTRY_WIDE),
        )
        .await?;
        let mut record = self.webhook_record(id).await?;
        if let Some(name) = change.name {
            validate_name(&name)?;
            record.name = name;
        }
        if let Some(description) = change.description {
            record.description = Some(description).filter(|d| !d.is_empty());
        }
        if let Some(url) = change.url {
            record.url = self.validate_url(&url)?;
        }
        if let Some(events) = change.events {
            validate_events(&events)?;
            record.events = events;
        }
        if let Some(secret) = change.secret.filter(|s| !s.is_empty()) {
            // The replaced secret keeps signing for the overlap window, beside the new one, so
            // a receiver can switch keys without refusing deliveries meanwhile.
            if let Some(old) = record.secret_sealed.take() {
                let until = chrono::Duration::from_std(self.webhooks.secret_overlap)
                    .ok()
                    .and_then(|d| Utc::now().checked_add_signed(d))
                    .map(|t| micros(&t));
                record.previous_secret_sealed = until.map(|_| old);
                record.previous_secret_until_us = until;
            }
            record.secret_sealed = Some(self.seal(id, &secret)?);
        }
        if let Some(status) = change.status {
            record.status = status;
        }
        // Strictly later, in MLflow's milliseconds, even for two updates within one.
        record.updated_at_us = micros(&Utc::now()).max(record.updated_at_us + 1000);
        if !self.store.update_webhook(&record).await? {
            return Err(not_found(id));
        }
        Ok(record.into())
    }

    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        self.check(
            caller,
            Action::ManageWebhooks,
            Resource::model(REGISTRY_WIDE),
        )
        .await?;
        if !self.store.delete_webhook(id, micros(&Utc::now())).await? {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Sends an example of `event` (default: the webhook's first event) to the webhook now,
    /// signed like a real delivery, and reports the receiver's answer. Nothing is stored.
    pub async fn test_webhook(
        &self,
        caller: &Caller,
        id: &str,
        event: Option<String>,
    ) -> Result<WebhookTestResult, ServiceError> {
        self.check(
            caller,
            Action::ManageWebhooks,
            Resource::model(REGISTRY_WIDE),
        )
        .await?;
        let record = self.webhook_record(id).await?;
        let name = match event {
            Some(name) => name,
            None => record.events.first().cloned().unwrap_or_default(),
        };
        let Some(sample) = test_event(&name, Utc::now()) else {
            return Err(invalid(format!(
                "Invalid webhook event '{name}'. Valid events are: {}",
                EVENT_NAMES.join(", ")
            ))
            .into());
        };
        let secrets = match &record.secret_sealed {
            None => Vec::new(),
            Some(sealed) => match self.webhooks.secrets.open(id, sealed) {
                Ok(secret) => vec![secret],
                Err(e) => {
                    return Ok(WebhookTestResult {
                        success: false,
                        response_status: None,
                        response_body: None,
                        error_message: Some(format!("the webhook's secret cannot be opened: {e}")),
                    });
                }
            },
        };
        let sender = Sender::new(&self.webhooks)
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Config(e)))?;
        let delivery_id = uuid::Uuid::now_v7().to_string();
        let sent = sender
            .send(
                &record.url,
                &delivery_id,
                sample.body.to_string().into(),
                &secrets,
            )
            .await;
        Ok(WebhookTestResult {
            success: sent.status.is_some_and(|s| (200..300).contains(&s)),
            response_status: sent.status,
            response_body: sent.body,
            error_message: sent.error,
        })
    }

    /// A webhook's deliveries, newest first; the offset of the next page when there is one.
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeliveryRecord>, Option<i64>), ServiceError> {
        self.check(caller, Action::ReadWebhooks, Resource::model(REGISTRY_WIDE))
            .await?;
        self.webhook_record(id).await?;
        let mut rows = self
            .store
            .list_webhook_deliveries(id, offset, limit + 1)
            .await?;
        let next = (rows.len() as i64 > limit).then_some(offset + limit);
        rows.truncate(limit.max(0) as usize);
        Ok((rows, next))
    }

    /// Queues one delivery again, under its own delivery id, due now.
    pub async fn redeliver_webhook(
        &self,
        caller: &Caller,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryRecord, ServiceError> {
        self.check(
            caller,
            Action::ManageWebhooks,
            Resource::model(REGISTRY_WIDE),
        )
        .await?;
        self.webhook_record(id).await?;
        self.store
            .redeliver_webhook_delivery(id, delivery_id, micros(&Utc::now()))
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(Missing::Delivery {
                    webhook_id: id.to_string(),
                    id: delivery_id.to_string(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_mlflows_rule() {
        for ok in ["test_webhook", "webhook0", "a", "ci.hook-1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_x", "x-", "has space", "é", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_must_be_known_and_present() {
        assert!(validate_events(&[]).is_err());
        assert!(validate_events(&["model_version.exploded".into()]).is_err());
        assert!(validate_events(&["model_version.created".into()]).is_ok());
    }
}
