//! Wiring: builds the store, authenticator, authorizer and HTTP app from configuration, and
//! serves it on a bound listener until a shutdown signal (tests pass a port-0 listener and
//! their own shutdown future).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::api::error::ApiError;
use crate::api::{ApiConfig, AppState, Authenticate};
use crate::artifacts::stores::{StoreRegistry, StoresConfig};
use crate::artifacts::{ArtifactLimits, ArtifactService};
use crate::auth::{AuthConfig, AuthError, Authenticator, IssuerConfig, PrincipalKind};
use crate::config::{ServeArgs, TrackingArgs};
use crate::policy::authorizer::resolve_policy_dir;
use crate::policy::{PolicyEngine, PolicyError};
use crate::service::{Authorizer, Caller, Service};
use crate::store::{self, SharedStore};
use crate::tracking::{Upstream, UpstreamConfig};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("policies: {0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
impl Authenticate for Authenticator {
    async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        match Authenticator::authenticate(self, authorization).await {
            Ok(principal) => Ok(Caller {
                actor: principal.actor(),
                groups: principal.groups.clone(),
                service_account: principal.kind == PrincipalKind::ServiceAccount,
                expires_at: principal.expires_at,
            }),
            Err(e) if e.is_client_error() => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                e.code(),
                e.to_string(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "authentication backend failure");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.code(),
                    "token verification is unavailable",
                ))
            }
        }
    }
}

/// The process-wide Prometheus recorder (a recorder can be installed once per process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("model_ledger_http_request_duration_seconds".into()),
                    crate::api::LATENCY_BUCKETS,
                )
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            crate::api::process_metrics::describe_all();
            let upkeep = handle.clone();
            // The recorder needs periodic upkeep to bound histogram memory.
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        })
        .clone()
}

/// Everything a running server is made of.
pub struct Built {
    pub state: AppState,
    /// The store behind the state's service, for the process's own plumbing (the relay, tests
    /// that inspect what was written); request handlers never see it.
    pub store: SharedStore,
    pub database_url: String,
    pub embedded: bool,
    pub dev_auth: bool,
}

/// Builds the application from `serve` options.
pub async fn build(args: &ServeArgs) -> Result<Built, StartError> {
    let (database_url, embedded) = args.store.resolved_url();
    if embedded {
        std::fs::create_dir_all(&args.store.data_dir)?;
    }
    let store = store::connect_with(
        &database_url,
        args.store.db_max_connections,
        args.db_acquire_timeout,
    )
    .await?;
    if !args.no_migrate {
        store.migrate().await?;
    }
    // The embedded store is for trying model-ledger out: with no issuer configured it signs its
    // own development tokens rather than refusing to start. A database URL means production,
    // where dev auth must be asked for explicitly.
    let dev_auth = args.dev_auth || (embedded && args.oidc_issuers.is_empty());
    if dev_auth && !args.oidc_issuers.is_empty() {
        return Err(StartError::Config(
            "--dev-auth cannot be combined with --oidc-issuer: dev tokens would be accepted beside real ones".into(),
        ));
    }
    if dev_auth {
        std::fs::create_dir_all(&args.store.data_dir)?;
        tracing::warn!(
            data_dir = %args.store.data_dir.display(),
            "DEV AUTH IS ON: tokens signed by the local dev key in the data directory are accepted. Never use this in production."
        );
    }
    let auth = Authenticator::new(AuthConfig {
        issuers: issuer_configs(args)?,
        dev_auth_dir: dev_auth.then(|| args.store.data_dir.clone()),
        leeway_secs: args.jwt_leeway_secs,
        jwks_refetch_min_interval: args.oidc_jwks_refetch_interval,
        accepted_token_types: args.oidc_accepted_token_types.clone(),
    })
    .await?;
    // Console sign-in through the provider: discovered now, so a wrong issuer, client or
    // redirect base fails at start-up rather than at someone's first sign-in.
    let console_oidc = crate::console::oidc::OidcClient::from_args(
        &args.console,
        &args.oidc_issuers,
        &args.store.data_dir,
        auth.clone(),
    )
    .await
    .map_err(StartError::Config)?;
    if let Some(client) = &console_oidc {
        tracing::info!(issuer = %client.issuer(), redirect_uri = %client.redirect_uri(), "console OIDC sign-in enabled");
    }
    let policy_dir = resolve_policy_dir(args.policy.policies.as_deref(), &args.store.data_dir)?;
    let engine = PolicyEngine::load(&policy_dir, args.policy.group_names())?;
    tracing::info!(dir = %policy_dir.display(), digest = %engine.policy_set_digest(), "policies loaded");
    spawn_policy_reload(engine.clone());
    let authorizer: Arc<dyn Authorizer> = Arc::new(engine);
    let interval = crate::config::parse_duration(&args.checkpoint_interval)
        .map_err(|e| StartError::Config(format!("--checkpoint-interval: {e}")))?;
    if !interval.is_zero() {
        let key = crate::reports::checkpoint::load_or_create_key(&args.store.data_dir)
            .map_err(|e| StartError::Config(format!("checkpoint key: {e}")))?;
        crate::reports::checkpoint::spawn_periodic(
            store.clone(),
            key,
            args.checkpoint.origin.clone(),
            interval,
        );
    }
    let artifacts = build_artifacts(args, store.clone())?;
    let store_for_relay = store.clone();
    let webhooks = Arc::new(webhook_settings(args)?);
    let mut state = app_state_with(
        store,
        Arc::new(auth),
        authorizer,
        api_config(args)?,
        webhooks.clone(),
    );
    let probe = crate::service::DatabaseProbe::new(&database_url, store_for_relay.clone())?;
    let db_health = Arc::new(crate::api::health::DbHealth::new(Some(probe)));
    db_health.spawn_watch();
    state.parts_mut().db_health = db_health;
    state.parts_mut().console = Arc::new(crate::console::ConsoleSettings {
        dev_sign_in: dev_auth,
        oidc: console_oidc.map(Arc::new),
    });
    start_publishing(&args.nats, store_for_relay.clone(), &state);
    // Stops with the relay when `serve` shuts down.
    crate::webhooks::worker::spawn(store_for_relay.clone(), webhooks, state.publish.stopped())
        .map_err(StartError::Config)?;
    state.parts_mut().artifacts = Arc::new(artifacts);
    if let Some(upstream) = tracking_upstream(&args.tracking)? {
        tracing::info!(upstream = %upstream.base(), "MLflow tracking pass-through enabled");
        state = state.with_tracking(Arc::new(upstream));
    }
    // Approval workflow (#17): request lifetime and the sweep that records expiries.
    state.service.set_request_lifetime(args.request_lifetime);
    crate::service::approvals::spawn_request_sweep(
        state.service.clone(),
        args.request_sweep_interval,
    );
    Ok(Built {
        state,
        store: store_for_relay,
        database_url,
        embedded,
        dev_auth,
    })
}

/// Each `--oidc-issuer` with its audiences and groups claim: the per-issuer options where
/// given, else the shared `--oidc-audience` / `--oidc-groups-claim`. A per-issuer option
/// naming no configured issuer is refused: it would otherwise be silently ignored, and the
/// issuer it was meant for would run with the shared settings.
pub fn issuer_configs(args: &ServeArgs) -> Result<Vec<IssuerConfig>, StartError> {
    let per_issuer = [
        ("--oidc-issuer-audience", &args.oidc_issuer_audiences),
        (
            "--oidc-issuer-groups-claim",
            &args.oidc_issuer_groups_claims,
        ),
    ];
    for (flag, pairs) in per_issuer {
        if let Some((issuer, _)) = pairs.iter().find(|(i, _)| !args.oidc_issuers.contains(i)) {
            return Err(StartError::Config(format!(
                "{flag} names the issuer '{issuer}', which is not an --oidc-issuer (configured: {}); \
                 the issuer must be written exactly as in --oidc-issuer",
                if args.oidc_issuers.is_empty() {
                    "none".to_owned()
                } else {
                    args.oidc_issuers.join(", ")
                }
            )));
        }
    }
    Ok(args
        .oidc_issuers
        .iter()
        .map(|issuer| {
            let audiences: Vec<String> = args
                .oidc_issuer_audiences
                .iter()
                .filter(|(i, _)| i == issuer)
                .map(|(_, aud)| aud.clone())
                .collect();
            let groups_claim = args
                .oidc_issuer_groups_claims
                .iter()
                .rev()
                .find(|(i, _)| i == issuer)
                .map_or_else(|| args.oidc_groups_claim.clone(), |(_, c)| c.clone());
            IssuerConfig {
                issuer: issuer.clone(),
                audiences: if audiences.is_empty() {
                    args.oidc_audiences.clone()
                } else {
                    audiences
                },
                groups_claim,
            }
        })
        .collect())
}

/// The HTTP layer's settings from `serve` options; a zero timeout turns that timeout off.
fn api_config(args: &ServeArgs) -> Result<ApiConfig, StartError> {
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let cors_allow_origins = args
        .cors_allow_origins
        .iter()
        .map(|origin| {
            axum::http::HeaderValue::from_str(origin)
                .map_err(|e| StartError::Config(format!("--cors-allow-origin '{origin}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiConfig {
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: nonzero(args.header_read_timeout),
        body_read_timeout: nonzero(args.body_read_timeout),
        trusted_proxies: args.trusted_proxies.clone(),
        cors_allow_origins,
        shutdown_timeout: args.shutdown_timeout,
    })
}

/// Starts the outbox relay when NATS is configured; it stops when [`serve`] shuts down.
fn start_publishing(args: &crate::config::NatsArgs, store: SharedStore, state: &AppState) {
    match crate::publish::NatsSettings::from_args(args) {
        Some(settings) => {
            crate::publish::spawn_relay(store, settings, state.publish.clone());
        }
        None => tracing::info!(
            "no --nats-url: events are not published to NATS (GET /api/v1/events/stream still serves them)"
        ),
    }
}

/// The artifact stores from `serve` options: the default store is `<data-dir>/artifacts`.
fn build_artifacts(args: &ServeArgs, store: SharedStore) -> Result<ArtifactService, StartError> {
    let a = &args.artifacts;
    let default_url = match &a.artifact_store {
        Some(url) => url.clone(),
        None => {
            let dir = args.store.data_dir.join("artifacts");
            std::fs::create_dir_all(&dir)?;
            let dir = dir.canonicalize()?;
            url::Url::from_directory_path(&dir)
                .map_err(|_| StartError::Config(format!("bad data directory {}", dir.display())))?
                .to_string()
        }
    };
    let pairs = |items: &[String], what: &str| -> Result<Vec<(String, String)>, StartError> {
        items
            .iter()
            .map(|item| {
                item.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| {
                        StartError::Config(format!("{what} '{item}' must be NAME=VALUE"))
                    })
            })
            .collect()
    };
    let registry = StoreRegistry::build(&StoresConfig {
        default_url,
        named: pairs(&a.artifact_stores, "--artifact-stores entry")?,
        options: pairs(&a.artifact_store_options, "--artifact-store-option")?,
        s3_endpoint: a.s3_endpoint.clone(),
        s3_allow_http: a.s3_allow_http,
        s3_region: a.s3_region.clone(),
    })
    .map_err(|e| StartError::Config(e.to_string()))?;
    for name in registry.names() {
        if let Ok(s) = registry.get(name) {
            tracing::info!(store = %name, base = %s.base, "artifact store configured");
        }
    }
    let mut service = ArtifactService::new(
        registry,
        store,
        ArtifactLimits {
            max_file_bytes: a.max_artifact_file_bytes,
            verify_concurrency: a.verify_concurrency.max(1),
        },
    );
    service.signers = crate::artifacts::signatures::TrustedSigners::load(
        &a.trusted_signing_keys,
        &a.trusted_signing_cas,
    )
    .map_err(|e| StartError::Config(e.to_string()))?;
    for key_id in service.signers.key_ids() {
        tracing::info!(key_id = %key_id, "trusted model-signing key");
    }
    Ok(service)
}

/// The tracking upstream from `--mlflow-upstream*`, or `None` when it is not configured.
fn tracking_upstream(args: &TrackingArgs) -> Result<Option<Upstream>, StartError> {
    let Some(raw) = &args.mlflow_upstream else {
        return Ok(None);
    };
    let base = url::Url::parse(raw)
        .map_err(|e| StartError::Config(format!("--mlflow-upstream '{raw}': {e}")))?;
    let basic = match (
        &args.mlflow_upstream_username,
        &args.mlflow_upstream_password,
    ) {
        (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
        (None, Some(_)) => {
            return Err(StartError::Config(
                "--mlflow-upstream-password needs --mlflow-upstream-username".into(),
            ));
        }
        (None, None) => None,
    };
    Upstream::new(UpstreamConfig {
        base,
        token: args.mlflow_upstream_token.clone(),
        basic,
        forward_auth: args.mlflow_upstream_forward_auth,
        connect_timeout: args.mlflow_upstream_connect_timeout,
        read_timeout: args.mlflow_upstream_timeout,
        max_body_bytes: args.mlflow_upstream_max_body_bytes,
    })
    .map(Some)
    .map_err(|e| StartError::Config(e.to_string()))
}

/// Reloads the policies on SIGHUP; a bad set is refused and the old one stays in force.
fn spawn_policy_reload(engine: PolicyEngine) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            match engine.reload() {
                Ok(()) => tracing::info!(digest = %engine.policy_set_digest(), "policies reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "policy reload refused; the previous policies stay in force")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = engine;
}

/// Webhook settings from `serve` options (docs/webhooks.md).
fn webhook_settings(args: &ServeArgs) -> Result<crate::webhooks::WebhookSettings, StartError> {
    let w = &args.webhooks;
    let keys = crate::webhooks::load_keys(w.webhook_secret_key.as_deref(), &args.store.data_dir)
        .map_err(StartError::Config)?;
    let mut settings = crate::webhooks::WebhookSettings::new(keys);
    settings.allow_private_ips = w.webhook_allow_private_ips;
    settings.connect_timeout = w.webhook_connect_timeout;
    settings.timeout = w.webhook_timeout;
    settings.retry = crate::webhooks::retry::RetryPolicy {
        base: w.webhook_retry_base,
        max_delay: w.webhook_retry_max_delay,
        window: w.webhook_retry_window,
    };
    settings.concurrency = w.webhook_concurrency.max(1);
    settings.window_deliveries = w.webhook_window_deliveries.max(1);
    settings.secret_overlap = w.webhook_secret_overlap;
    if settings.allow_private_ips {
        tracing::warn!(
            "--webhook-allow-private-ips: webhooks may send to loopback and private networks"
        );
    }
    Ok(settings)
}

pub fn app_state(
    store: SharedStore,
    auth: Arc<dyn Authenticate>,
    authorizer: Arc<dyn Authorizer>,
    config: ApiConfig,
) -> AppState {
    app_state_with(
        store,
        auth,
        authorizer,
        config,
        Arc::new(crate::webhooks::WebhookSettings::ephemeral()),
    )
}

/// [`app_state`] with the configured webhook settings.
pub fn app_state_with(
    store: SharedStore,
    auth: Arc<dyn Authenticate>,
    authorizer: Arc<dyn Authorizer>,
    config: ApiConfig,
    webhooks: Arc<crate::webhooks::WebhookSettings>,
) -> AppState {
    AppState::from(crate::api::AppParts {
        service: Arc::new(Service::with_webhook_settings(
            store.clone(),
            authorizer,
            webhooks,
        )),
        auth,
        config: Arc::new(config),
        metrics: metrics_handle(),
        publish: crate::publish::Runtime::default(),
        // Replaced by `build` with the configured stores; an in-memory store keeps callers
        // that only need the API (and no artifacts) free of store configuration.
        artifacts: Arc::new(ArtifactService::new(
            StoreRegistry::in_memory(),
            store,
            ArtifactLimits::default(),
        )),
        tracking: None,
        db_health: Arc::new(crate::api::health::DbHealth::new(None)),
        console: Arc::default(),
    })
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
///
/// This is axum::serve's loop (hyper-util's auto builder, one task per connection, graceful
/// shutdown) with what axum::serve does not expose: a header-read timeout, so a client that
/// sends half a request head is disconnected instead of holding its connection (slowloris).
/// Each request carries `ConnectInfo<SocketAddr>`, the peer address the trusted-proxy check
/// needs, as `into_make_service_with_connect_info` would insert it.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let publish = state.publish.clone();
    let header_read_timeout = state.config.header_read_timeout;
    let shutdown_timeout = state.config.shutdown_timeout;
    let app = crate::api::router(state);
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper applies a header-read timeout only with a timer; without one it never fires.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let builder = Arc::new(builder);
    // Dropped on shutdown: every connection task then starts its graceful shutdown. Each task
    // holds a clone of `closed_tx`, so `closed_rx` resolves once the last one has finished.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Per-connection failures (EMFILE, a reset before accept) must not end the
                    // server; back off briefly as axum::serve does.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streamed bodies (the tracking pass-through) are written after their headers in a
        // separate write; with Nagle on, that write waits for the client's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = app.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(axum::body::Body::new)
            },
        );
        let hyper_service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let mut signal_rx = signal_rx.clone();
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tcp), hyper_service);
            let mut connection = std::pin::pin!(connection);
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = signal_rx.changed(), if !shutting_down => {
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed_tx);
        });
    }
    drop(listener);
    // Ends the relay and open event streams, which would otherwise hold the shutdown.
    publish.stop();
    drop(signal_rx);
    let _ = signal_tx.send(());
    drop(closed_tx);
    let mut closed_rx = closed_rx;
    // Resolves with an error once every sender (one per connection task) is gone.
    let all_closed = async { while closed_rx.changed().await.is_ok() {} };
    // Bounded: a client that stops reading, or an upload that keeps going, must not keep the
    // process alive after it was told to stop. Returning drops the remaining connection tasks
    // with the runtime.
    if tokio::time::timeout(shutdown_timeout, all_closed)
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} after the shutdown signal; closing them",
            humantime::format_duration(shutdown_timeout)
        );
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::{Cli, Commands};

    fn serve(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["model-ledger", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Commands::Serve(args)) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn each_issuer_gets_its_own_audience_and_groups_claim() {
        let args = serve(&[
            "--oidc-issuer",
            "https://kc.example.com/realms/ml",
            "--oidc-issuer",
            "https://login.example.com",
            "--oidc-audience",
            "model-ledger",
            "--oidc-issuer-audience",
            "https://login.example.com=api://ledger",
            "--oidc-issuer-audience",
            "https://login.example.com=ledger-ci",
            "--oidc-issuer-groups-claim",
            "https://kc.example.com/realms/ml=realm_access.roles",
        ]);
        let issuers = issuer_configs(&args).expect("valid");
        assert_eq!(issuers[0].audiences, ["model-ledger"]);
        assert_eq!(issuers[0].groups_claim, "realm_access.roles");
        assert_eq!(issuers[1].audiences, ["api://ledger", "ledger-ci"]);
        assert_eq!(issuers[1].groups_claim, "groups");
    }

    #[test]
    fn a_per_issuer_option_for_an_unknown_issuer_is_refused() {
        let args = serve(&[
            "--oidc-issuer",
            "https://kc.example.com/realms/ml",
            "--oidc-issuer-groups-claim",
            "https://kc.example.com/realms/ml/=roles",
        ]);
        let err = issuer_configs(&args).expect_err("typo").to_string();
        assert!(err.contains("--oidc-issuer-groups-claim"), "{err}");
        assert!(err.contains("https://kc.example.com/realms/ml/'"), "{err}");
        let err = Cli::try_parse_from([
            "model-ledger",
            "serve",
            "--oidc-issuer-audience",
            "no-equals-sign",
        ])
        .expect_err("malformed")
        .to_string();
        assert!(err.contains("ISSUER=VALUE"), "{err}");
    }
}
