//! The read path: every read of the registry, each authorized before it looks anything up.
//!
//! A read begins with the access check (`ReadModel` on the model, or `ReadAudit` for the
//! audit log and the event feed) and only then asks the store, so a caller without rights gets
//! the same denial whether or not the model exists. The answers the read-heavy clients hammer
//! (a model server resolving `models:/fraud/Production`, an MLflow client asking for an alias
//! or the latest versions) come from [`ReadCache`], so every API — native, MLflow, the event
//! stream — is as fast as the fastest of them.
//!
//! Audit reads hand out an [`AuditReader`] after the check: a capability that can only be
//! obtained through the door, so report code keeps its store-level helpers without any handler
//! holding a store.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::events::EventEnvelope;
use crate::domain::uri::ModelUri;
use crate::domain::{Action, ModelName};
use crate::reports::kinds::{self, Period};
use crate::reports::search::{EventFilter, Exporter, Format};
use crate::reports::{AsOf, ReportError, history};
use crate::store::{
    CheckpointRecord, EventQuery, LastChange, ModelQuery, ModelView, Page, SharedStore,
    VersionQuery, VersionView,
};

use super::access::Resource;
use super::{Caller, Missing, Service, ServiceError};

/// A models-page row: the model, its latest version per stage, and its newest event.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub model: ModelWithLatest,
    pub last_change: Option<LastChange>,
}

/// A model with the newest version in each stage (MLflow's `latest_versions`).
#[derive(Debug, Clone)]
pub struct ModelWithLatest {
    pub model: ModelView,
    pub latest: Vec<VersionView>,
}

impl Service {
    pub async fn get_model(
        &self,
        caller: &Caller,
        name: &ModelName,
    ) -> Result<Arc<ModelView>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::model(name.as_str()))
            .await?;
        self.reads
            .model(&self.store, name.as_str())
            .await?
            .ok_or_else(|| missing_model(name))
    }

    /// A model and its latest version per stage.
    pub async fn get_model_with_latest(
        &self,
        caller: &Caller,
        name: &ModelName,
    ) -> Result<Arc<ModelWithLatest>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::model(name.as_str()))
            .await?;
        self.reads
            .model_with_latest(&self.store, name.as_str())
            .await?
            .ok_or_else(|| missing_model(name))
    }

    pub async fn get_version(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: u64,
    ) -> Result<Arc<VersionView>, ServiceError> {
        self.check(
            caller,
            Action::ReadModel,
            Resource::version(name.as_str(), version),
        )
        .await?;
        self.reads
            .version(&self.store, name.as_str(), version as i64)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(Missing::Version {
                    name: name.to_string(),
                    version,
                })
            })
    }

    /// The version a `models:/` URI names, if any.
    pub async fn resolve(
        &self,
        caller: &Caller,
        uri: &ModelUri,
    ) -> Result<Option<Arc<VersionView>>, ServiceError> {
        self.check(
            caller,
            Action::ReadModel,
            Resource::model(uri.name.as_str()),
        )
        .await?;
        Ok(self.reads.resolve(&self.store, uri).await?)
    }

    pub async fn search_models(
        &self,
        caller: &Caller,
        query: &ModelQuery,
    ) -> Result<Page<ModelView>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::Registry)
            .await?;
        Ok(self.store.search_models(query).await?)
    }

    /// A page of models, each with its latest version per stage, in two queries (not one per
    /// model).
    pub async fn search_models_with_latest(
        &self,
        caller: &Caller,
        query: &ModelQuery,
    ) -> Result<Page<ModelWithLatest>, ServiceError> {
        let page = self.search_models(caller, query).await?;
        let ids: Vec<String> = page.items.iter().map(|m| m.model_id.clone()).collect();
        let mut latest: HashMap<String, Vec<VersionView>> = HashMap::new();
        for version in self.store.latest_versions_many(&ids).await? {
            latest
                .entry(version.model_id.clone())
                .or_default()
                .push(version);
        }
        let items = page
            .items
            .into_iter()
            .map(|model| {
                let mut mine = latest.remove(&model.model_id).unwrap_or_default();
                mine.sort_by_key(|v| v.version);
                ModelWithLatest {
                    model,
                    latest: mine,
                }
            })
            .collect();
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// [`Service::search_models_with_latest`] plus each model's newest event (who changed it
    /// last, and when): one more query for the whole page.
    pub async fn search_model_summaries(
        &self,
        caller: &Caller,
        query: &ModelQuery,
    ) -> Result<Page<ModelSummary>, ServiceError> {
        let page = self.search_models_with_latest(caller, query).await?;
        let ids: Vec<String> = page
            .items
            .iter()
            .map(|m| m.model.model_id.clone())
            .collect();
        let mut last: HashMap<String, LastChange> = self
            .store
            .last_changes_many(&ids)
            .await?
            .into_iter()
            .map(|c| (c.model_id.clone(), c))
            .collect();
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|model| ModelSummary {
                    last_change: last.remove(&model.model.model_id),
                    model,
                })
                .collect(),
            next: page.next,
        })
    }

    pub async fn search_versions(
        &self,
        caller: &Caller,
        query: &VersionQuery,
    ) -> Result<Page<VersionView>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::Registry)
            .await?;
        Ok(self.store.search_versions(query).await?)
    }

    /// The current name of the model with this id (ids survive renames), for a caller
    /// allowed to read models at all; the model-level check follows once the name is known.
    pub async fn model_name_by_id(
        &self,
        caller: &Caller,
        model_id: &str,
    ) -> Result<Option<String>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::Registry)
            .await?;
        Ok(self.store.model_name_by_id(model_id).await?)
    }

    /// One model's events (its history), by stream id so a rename does not split it.
    pub async fn model_events(
        &self,
        caller: &Caller,
        name: &ModelName,
        query: EventQuery,
    ) -> Result<Vec<EventEnvelope>, ServiceError> {
        let model = self.get_model(caller, name).await?;
        let stream_id = uuid::Uuid::parse_str(&model.model_id)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("model id: {e}")))?;
        Ok(self
            .store
            .read_events(&EventQuery {
                stream_id: Some(stream_id),
                ..query
            })
            .await?)
    }

    /// The `VersionCreated` event of a version, for a caller allowed to read the version.
    pub async fn version_created_event(
        &self,
        caller: &Caller,
        view: &VersionView,
    ) -> Result<Option<EventEnvelope>, ServiceError> {
        self.check(
            caller,
            Action::ReadModel,
            Resource::version(&view.name, view.version),
        )
        .await?;
        let Ok(stream_id) = uuid::Uuid::parse_str(&view.model_id) else {
            return Ok(None);
        };
        let events = self
            .store
            .read_events(&EventQuery {
                stream_id: Some(stream_id),
                version: Some(view.version as i64),
                event_types: vec!["VersionCreated".into()],
                limit: 1,
                ..Default::default()
            })
            .await?;
        Ok(events.into_iter().next())
    }

    /// The audit log and everything derived from it, for a caller allowed `ReadAudit` (on one
    /// model, or on the whole registry when `model` is empty).
    pub async fn audit(&self, caller: &Caller, model: &str) -> Result<AuditReader, ServiceError> {
        let resource = if model.is_empty() {
            Resource::Registry
        } else {
            Resource::model(model)
        };
        self.check(caller, Action::ReadAudit, resource).await?;
        Ok(AuditReader {
            store: self.store.clone(),
        })
    }

    /// The log, for folding one model's past states (time travel), for a caller allowed to
    /// read the model.
    pub async fn model_history(
        &self,
        caller: &Caller,
        name: &ModelName,
    ) -> Result<AuditReader, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::model(name.as_str()))
            .await?;
        Ok(AuditReader {
            store: self.store.clone(),
        })
    }

    /// Whether the database answers (for `/readyz`; unauthenticated, reveals nothing).
    pub async fn ping(&self) -> Result<(), ServiceError> {
        Ok(self.store.ping().await?)
    }

    /// `(count, oldest created_at)` of events not yet published (for `/readyz` and metrics).
    pub async fn outbox_lag(
        &self,
    ) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), ServiceError> {
        Ok(self.store.outbox_lag().await?)
    }
}

fn missing_model(name: &ModelName) -> ServiceError {
    ServiceError::NotFound(Missing::Model {
        name: name.to_string(),
    })
}

/// Read access to the audit log, handed out by [`Service::audit`] after the `ReadAudit` check.
pub struct AuditReader {
    store: SharedStore,
}

impl AuditReader {
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<EventEnvelope>, ServiceError> {
        Ok(self.store.read_events(query).await?)
    }

    /// Positions of newly committed events, as they commit (what the event stream waits on).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.store.subscribe()
    }

    /// The log position `as_of` names, or the newest position when it is absent.
    pub async fn position(&self, as_of: Option<&AsOf>) -> Result<i64, ReportError> {
        match as_of {
            Some(as_of) => as_of.resolve(self.store.as_ref()).await,
            None => Ok(self.store.head().await?.0),
        }
    }

    /// A model's state folded from the log up to `position` (time travel).
    pub async fn model_as_of(
        &self,
        name: &str,
        position: i64,
    ) -> Result<Option<history::ModelAsOf>, ReportError> {
        history::model_as_of(self.store.as_ref(), name, position).await
    }

    /// Who held each stage at `position`.
    pub async fn stages_as_of(&self, position: i64) -> Result<Vec<history::StageRow>, ReportError> {
        history::stages_as_of(self.store.as_ref(), position).await
    }

    pub async fn promotions(
        &self,
        period: Period,
        production_only: bool,
    ) -> Result<Vec<kinds::PromotionRow>, ReportError> {
        kinds::promotions(self.store.as_ref(), period, production_only).await
    }

    /// Transition requests opened in the period (approval workflow, #17).
    pub async fn requests(
        &self,
        period: Period,
    ) -> Result<Vec<crate::reports::requests::RequestRow>, ReportError> {
        crate::reports::requests::requests(self.store.as_ref(), period).await
    }

    pub async fn unverified_in_production(&self) -> Result<Vec<kinds::UnverifiedRow>, ReportError> {
        kinds::unverified_in_production(self.store.as_ref()).await
    }

    pub async fn stage_durations(
        &self,
        period: Period,
    ) -> Result<Vec<kinds::StageStay>, ReportError> {
        kinds::stage_durations(self.store.as_ref(), period).await
    }

    pub async fn denials(&self, period: Period) -> Result<Vec<kinds::DenialRow>, ReportError> {
        kinds::denials(self.store.as_ref(), period).await
    }

    /// Re-hashes the whole log (and compares it with `checkpoint` when given): the same
    /// verification `audit verify` runs, for the console's audit page.
    pub async fn verify_chain(
        &self,
        checkpoint: Option<crate::reports::checkpoint::Checkpoint>,
    ) -> Result<crate::reports::verify::Verified, ReportError> {
        crate::reports::verify::verify_store(self.store.as_ref(), checkpoint).await
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, ServiceError> {
        Ok(self.store.latest_checkpoint().await?)
    }

    /// A streamed export of the log, filtered (the exporter reads page by page as the response
    /// is sent, so it holds the store for the response's lifetime).
    pub fn exporter(&self, filter: EventFilter, format: Format) -> Result<Exporter, ReportError> {
        Exporter::new(self.store.clone(), filter, format)
    }
}

/// Answers to the hottest reads, each valid until the next commit anywhere in the registry.
///
/// Answers are handed out as shared `Arc`s, never copied: a version's view holds JSON
/// (signature, input example, verification) whose deep copy cost more than the lookup.
///
/// Every answer is stored with the store's commit generation read *before* the database was
/// asked, and served only while the generation is still the same: a commit that lands while a
/// reader is in the database makes that reader's answer stale at once, so no answer older than
/// the last commit is ever served. Local commits advance the generation before the writer is
/// answered (read-your-writes); other processes' commits advance it when their notification
/// arrives, and while notifications cannot be received the cache is bypassed.
pub struct ReadCache {
    answers: moka::sync::Cache<ReadKey, (u64, Answer)>,
    clock: Box<dyn Fn() -> Option<u64> + Send + Sync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ReadKey {
    Model(String),
    ModelWithLatest(String),
    Version(String, i64),
    Resolve(ModelUri),
}

#[derive(Debug, Clone)]
enum Answer {
    Model(Option<Arc<ModelView>>),
    ModelWithLatest(Option<Arc<ModelWithLatest>>),
    Version(Option<Arc<VersionView>>),
}

/// Bound on cached answers; past it moka evicts the least useful.
const READ_CACHE_CAPACITY: u64 = 50_000;

impl ReadCache {
    pub fn new(store: &SharedStore) -> Self {
        let clock = store.commit_clock();
        ReadCache {
            answers: moka::sync::Cache::new(READ_CACHE_CAPACITY),
            // No generation (so no caching) while other processes' commits cannot be heard.
            clock: Box::new(move || clock.reliable().then(|| clock.generation())),
        }
    }

    fn get(&self, key: &ReadKey) -> (Option<Answer>, Option<u64>) {
        let generation = (self.clock)();
        let hit = generation.and_then(|now| {
            self.answers
                .get(key)
                .filter(|(at, _)| *at == now)
                .map(|(_, answer)| answer)
        });
        (hit, generation)
    }

    fn put(&self, key: ReadKey, generation: Option<u64>, answer: Answer) {
        if let Some(generation) = generation {
            self.answers.insert(key, (generation, answer));
        }
    }

    async fn model(
        &self,
        store: &SharedStore,
        name: &str,
    ) -> Result<Option<Arc<ModelView>>, crate::store::StoreError> {
        let key = ReadKey::Model(name.to_string());
        let (hit, generation) = self.get(&key);
        if let Some(Answer::Model(found)) = hit {
            return Ok(found);
        }
        let found = store.get_model(name).await?.map(Arc::new);
        self.put(key, generation, Answer::Model(found.clone()));
        Ok(found)
    }

    async fn model_with_latest(
        &self,
        store: &SharedStore,
        name: &str,
    ) -> Result<Option<Arc<ModelWithLatest>>, crate::store::StoreError> {
        let key = ReadKey::ModelWithLatest(name.to_string());
        let (hit, generation) = self.get(&key);
        if let Some(Answer::ModelWithLatest(found)) = hit {
            return Ok(found);
        }
        let found = match store.get_model(name).await? {
            Some(model) => {
                let mut latest = store.latest_versions(&model.model_id).await?;
                latest.sort_by_key(|v| v.version);
                Some(Arc::new(ModelWithLatest { model, latest }))
            }
            None => None,
        };
        self.put(key, generation, Answer::ModelWithLatest(found.clone()));
        Ok(found)
    }

    async fn version(
        &self,
        store: &SharedStore,
        name: &str,
        version: i64,
    ) -> Result<Option<Arc<VersionView>>, crate::store::StoreError> {
        let key = ReadKey::Version(name.to_string(), version);
        let (hit, generation) = self.get(&key);
        if let Some(Answer::Version(found)) = hit {
            return Ok(found);
        }
        let found = store.get_version(name, version).await?.map(Arc::new);
        self.put(key, generation, Answer::Version(found.clone()));
        Ok(found)
    }

    async fn resolve(
        &self,
        store: &SharedStore,
        uri: &ModelUri,
    ) -> Result<Option<Arc<VersionView>>, crate::store::StoreError> {
        let key = ReadKey::Resolve(uri.clone());
        let (hit, generation) = self.get(&key);
        if let Some(Answer::Version(found)) = hit {
            return Ok(found);
        }
        let found = store.resolve(uri).await?.map(Arc::new);
        self.put(key, generation, Answer::Version(found.clone()));
        Ok(found)
    }
}
