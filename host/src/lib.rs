//! Lyceum: the real-time backend of an e-learning platform.
//!
//! # Layout
//! - [`config`]: defaults < `lyceum.toml` < `LYCEUM_*` variables, validated at start-up.
//! - [`http`]: the REST API under `/api/v1`, one module per resource, plus `/health`,
//!   `/ready`, `/metrics` and the OpenAPI document. [`http::extract`] turns bad input into
//!   the contract's error envelope.
//! - [`gateway`]: Socket.IO on the same port, authenticated in the handshake.
//! - [`service`]: the rules — permissions, validation, life cycles. Transports call services;
//!   services call the store.
//! - [`store`]: the `Store` trait with its SQLite and PostgreSQL implementations.
//! - [`security`]: password hashing, access tokens, refresh tokens.
//! - [`error`]: the one error type and its mapping onto the contract.
//! - [`cli`]: `lyceum serve | migrate | user create | config | plugin …`.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests run the real server on
//! port 0 and stop it cleanly.

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
pub mod ratelimit;
pub mod security;
pub mod service;
pub mod state;
pub mod storage;
pub mod store;
pub mod telemetry;

use std::{future::Future, path::Path, sync::Arc};

use anyhow::Context;
use axum::Router;
use lyceum_plugin_runtime::{HostRules, PluginsConfig, PolicyEngine};
use socketioxide::SocketIo;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    gateway::GatewayState,
    ratelimit::MemoryRateLimiter,
    security::{jwt::JwtKeys, password::PasswordHasher},
    service::{
        access::{AccessMemo, CourseAccess},
        auth::{AuthService, LoginThrottle},
        chat::{ChatLimits, ChatService, WriterLimits},
        courses::CourseService,
        files::{FileLimits, FileLinks, FileService, resumable::ResumableUploads},
        ice::IceService,
        plugins::{self, PluginService},
        sessions::SessionService,
        signaling::{SignalLimits, SignalingService},
    },
    state::AppState,
};

/// A fully wired server, ready to be served. Its policy plugins may still be compiling:
/// see [`App::plugins_loading`].
pub struct App {
    pub router: Router,
    pub state: AppState,
    /// Background tasks of the gateway, stopped when the server stops.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    loading: PluginsLoading,
}

/// The start-up load of the policy plugins, which runs beside the server: big plugins take
/// tens of seconds to compile, and the server answers meanwhile (each slot following its
/// failure mode, `/ready` answering 503).
#[derive(Clone)]
pub struct PluginsLoading(tokio::sync::watch::Receiver<Option<Result<(), String>>>);

impl PluginsLoading {
    /// Whether the load is over, well or not.
    pub fn is_finished(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves once every slot's chain is active, or with why the load failed (a first start
    /// whose plugins file names a plugin that cannot load, for instance).
    pub async fn finished(mut self) -> anyhow::Result<()> {
        let outcome = self
            .0
            .wait_for(Option::is_some)
            .await
            .map_err(|_| anyhow::anyhow!("the policy plugin load was abandoned"))?
            .clone();
        match outcome {
            Some(Err(error)) => Err(anyhow::anyhow!(error)),
            _ => Ok(()),
        }
    }
}

impl App {
    /// The start-up load of the policy plugins.
    pub fn plugins_loading(&self) -> PluginsLoading {
        self.loading.clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Break the gateway ⇄ services reference cycle so the database pool closes.
        for task in &self.tasks {
            task.abort();
        }
        self.state.chat.detach_broadcast();
    }
}

/// Connects the database (applying migrations), builds the services and the router.
pub async fn build(config: Config) -> anyhow::Result<App> {
    // First: metric handles resolved before the recorder exists (the policy engine resolves
    // its per-plugin handles when it loads them) count into nothing, for good.
    let metrics = telemetry::metrics_handle();
    let config = Arc::new(config);
    let store = store::connect(&config.effective_database_url(), config.db_max_connections)
        .await
        .context("opening the database")?;
    let secret = jwt_secret(&config)?;
    let auth = auth_service(&config, store.clone(), &secret)?;
    let (audit, audit_writer) = plugins::audit::audit_queue(config.plugin_audit_queue);
    let policy = Arc::new(load_policy(&config, &*store, audit).await?);
    let plugins = Arc::new(PluginService::new(
        policy.clone(),
        store.clone(),
        config.plugin_modules_dir(),
        config.plugins_config.clone(),
        config.plugin_module_max_bytes,
    ));
    let links = Arc::new(FileLinks::new(&secret, config.signed_url_ttl));
    let blobs = storage::LocalDisk::open(&config.upload_dir)
        .await
        .with_context(|| {
            format!(
                "opening the upload directory {}",
                config.upload_dir.display()
            )
        })?;
    // One memory of courses and enrollments for every service, so that a change made
    // through one is seen by all.
    let access = CourseAccess::new(
        store.clone(),
        AccessMemo {
            ttl: config.membership_cache_ttl,
            capacity: 200_000,
        },
    );
    let files = Arc::new(FileService::new(
        store.clone(),
        access.clone(),
        Arc::new(blobs),
        policy.clone(),
        links,
        FileLimits {
            documents: config.upload_max_documents,
            images: config.upload_max_images,
            videos: config.upload_max_videos,
            misc: config.upload_max_misc,
            user_quota: config.upload_user_quota,
        },
    ));
    files
        .sweep_interrupted()
        .await
        .context("removing the leftovers of interrupted uploads")?;
    let chat = Arc::new(ChatService::new(
        store.clone(),
        access.clone(),
        policy.clone(),
        files.clone(),
        ChatLimits {
            max_chars: config.chat_max_message_chars,
            rate_per_second: config.chat_rate_per_second,
            burst: config.chat_rate_burst,
            writer: WriterLimits {
                queue: config.chat_write_queue,
                batch: config.chat_write_batch,
                max_wait: config.chat_write_max_wait,
            },
        },
    ));
    let courses = Arc::new(CourseService::new(store.clone(), access.clone()));
    let sessions = Arc::new(SessionService::new(store.clone(), access.clone()));
    let ice = Arc::new(IceService::new(
        config.stun_urls.clone(),
        config.turn_urls.clone(),
        config.turn_secret.clone(),
        config.turn_credential_ttl,
    ));

    let gateway_state = GatewayState {
        auth: auth.clone(),
        store: store.clone(),
        chat: chat.clone(),
        courses: courses.clone(),
        presence: Arc::new(gateway::presence::Presence::new(
            config.presence_batch_interval,
        )),
        sessions: sessions.clone(),
        signaling: Arc::new(SignalingService::new(
            store.clone(),
            access.clone(),
            policy.clone(),
            ice.clone(),
            SignalLimits {
                max_sdp_bytes: config.signal_max_sdp_bytes,
                max_candidate_bytes: config.signal_max_candidate_bytes,
                rate_per_second: config.signal_rate_per_second,
                burst: config.signal_rate_burst,
            },
        )),
        expiry: Arc::new(gateway::reauth::TokenExpiry::new(
            config.socket_reauth_grace,
        )),
        sockets: Arc::new(gateway::limits::OpenSockets::new(
            gateway::limits::SocketLimits {
                per_user: config.socket_max_per_user,
                per_address: config.socket_max_per_address,
                events_per_second: config.socket_event_rate_per_second,
                event_burst: config.socket_event_burst,
            },
        )),
        trust_forwarded_for: config.trust_forwarded_for,
    };
    let (socket_layer, io) = SocketIo::builder()
        .max_payload(config.max_json_body)
        // Room for a burst of signals and chat fan-out to a socket that reads a little late;
        // beyond it, sends to that socket fail instead of queueing without bound.
        .max_buffer_size(config.socket_send_buffer)
        // Long-polling is capped by max_payload; WebSocket messages by these two.
        .ws_max_message_size(usize::try_from(config.max_json_body).unwrap_or(usize::MAX))
        .ws_max_frame_size(usize::try_from(config.max_json_body).unwrap_or(usize::MAX))
        .ws_read_buffer_size(gateway::WS_READ_BUFFER)
        // A client that stops reading stops answering pings: the heartbeat is what
        // disconnects it, while sends beyond its buffer fail instead of queueing.
        .ping_interval(config.socket_ping_interval)
        .ping_timeout(config.socket_ping_timeout)
        .with_state(gateway_state.clone())
        .build_layer();
    let mut tasks = gateway::attach(&io, &gateway_state);
    let (loaded, loading) = tokio::sync::watch::channel(None);
    tasks.push(tokio::spawn(load_plugins(
        policy.clone(),
        plugins.clone(),
        loaded,
    )));
    tasks.extend(audit_writer.spawn(store.clone(), config.plugin_audit_retention));
    tasks.push(tokio::spawn(auth.account_changes().follow(store.clone())));
    tasks.push(tokio::spawn(plugins::watch::watch(
        plugins.clone(),
        config.plugins_config.clone(),
        config.plugins_watch,
    )));
    tasks.push(tokio::spawn({
        let files = files.clone();
        async move {
            if let Err(error) = files.remove_orphans().await {
                tracing::warn!(%error, "could not look for stored bytes without a row");
            }
        }
    }));
    let resumable = Arc::new(ResumableUploads::default());
    tasks.push(tokio::spawn({
        let resumable = resumable.clone();
        async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60 * 60));
            loop {
                every.tick().await;
                let dropped = resumable.sweep(service::files::resumable::IDLE_LIMIT);
                if dropped > 0 {
                    tracing::info!(dropped, "discarded idle resumable uploads");
                }
            }
        }
    }));

    let state = AppState {
        config,
        store,
        auth,
        courses,
        sessions,
        chat,
        files,
        resumable,
        policy,
        plugins,
        ice,
        io,
        metrics,
    };
    let origins = Arc::new(gateway::origin::AllowedOrigins::new(
        &state.config.cors_origins,
    ));
    let router = http::router(state.clone())
        .layer(socket_layer)
        .layer(axum::middleware::map_request(gateway::detach_request_head))
        .layer(axum::middleware::map_request_with_state(
            origins,
            gateway::origin::guard,
        ))
        // Outermost, so Socket.IO answers and the origin refusal carry the headers too.
        .layer(axum::middleware::map_response(http::headers::secure));
    Ok(App {
        router,
        state,
        tasks,
        loading: PluginsLoading(loading),
    })
}

/// The account rules on `store`: what `lyceum user create` needs, without the server's
/// start-up work. That work (compiling plugins, sweeping interrupted uploads, starting
/// background tasks) must not run beside a live server: the upload sweep would delete the
/// uploads it has in flight.
pub async fn accounts(config: &Config) -> anyhow::Result<Arc<AuthService>> {
    let store = store::connect(&config.effective_database_url(), 1)
        .await
        .context("opening the database")?;
    auth_service(config, store, &jwt_secret(config)?)
}

fn auth_service(
    config: &Config,
    store: Arc<dyn store::Store>,
    secret: &[u8],
) -> anyhow::Result<Arc<AuthService>> {
    let jwt = Arc::new(
        JwtKeys::new(
            secret,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        )
        .accepting_retired(
            config
                .jwt_retired_secrets
                .iter()
                .map(|s| s.expose().as_bytes()),
        ),
    );
    let hasher = PasswordHasher::from_config(config)?;
    Ok(Arc::new(AuthService::new(
        store,
        jwt,
        hasher,
        Arc::new(MemoryRateLimiter::new()),
        LoginThrottle {
            per_email: config.login_max_failures_per_email,
            per_ip: config.login_max_failures_per_ip,
            window: config.login_failure_window,
        },
        config.refresh_token_ttl,
    )))
}

/// Serves `config` on `listener` until `shutdown` resolves, then closes every socket and lets
/// in-flight requests finish (up to `shutdown_grace`).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = build(config).await?;
    let loading = app.plugins_loading();
    tokio::select! {
        served = run(app, listener, shutdown) => served,
        Err(error) = loading.finished() => Err(error),
    }
}

pub async fn run(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match gateway::raise_open_files_limit() {
        Ok(files) => tracing::debug!(files, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let io: SocketIo = app.state.io.clone();
    let grace = app.state.config.shutdown_grace;
    let router = app.router.clone();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let timeouts = http::server::Timeouts {
        header_read: app.state.config.http_header_timeout,
    };
    let server = http::server::serve(listener, router, timeouts, async move {
        shutdown.await;
        tracing::info!("shutting down: closing sockets, finishing in-flight requests");
        let _ = stopping_tx.send(());
        io.close().await;
    });
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("shutdown grace period over; dropping remaining connections"),
    }
    // Dropping `app` stops the gateway's tasks and breaks its reference cycle.
    drop(app);
    Ok(())
}

/// Builds the policy engine with every slot loading (following the failure mode
/// `plugins.toml` gives it) for [`load_plugins`] to fill. An invalid file is fatal only on a
/// first start: once revisions are recorded, the server starts on them (the plugin service
/// restores them) and shows the file's error in `GET /api/v1/plugins`.
async fn load_policy(
    config: &Config,
    store: &dyn store::Store,
    audit: Arc<plugins::audit::AuditQueue>,
) -> anyhow::Result<PolicyEngine> {
    let initial = match PluginsConfig::load(&config.plugins_config) {
        Ok(plugins) => plugins,
        Err(error) => {
            if !plugins::has_recorded_revisions(store).await? {
                return Err(error)
                    .with_context(|| format!("loading {}", config.plugins_config.display()));
            }
            tracing::error!(error = %error, file = %config.plugins_config.display(), "plugins file refused; starting on the recorded revisions");
            PluginsConfig::default()
        }
    };
    let engine = PolicyEngine::builder(initial)
        .cache_dir(config.effective_plugin_cache_dir())
        // Cached plugins are native code: only those written under this server's secret
        // are loaded.
        .cache_key(jwt_secret(config)?)
        .audit(audit)
        .host_rules(HostRules {
            max_message_chars: config.chat_max_message_chars,
            max_signal_bytes: usize::try_from(
                config
                    .signal_max_sdp_bytes
                    .max(config.signal_max_candidate_bytes),
            )
            .unwrap_or(usize::MAX),
            ..HostRules::default()
        })
        .deferred()
        .build()?;
    Ok(engine)
}

/// Loads the policy plugins beside the serving server (see [`PluginService::start`]) and
/// reports the outcome on `loaded`.
async fn load_plugins(
    policy: Arc<PolicyEngine>,
    plugins: Arc<PluginService>,
    loaded: tokio::sync::watch::Sender<Option<Result<(), String>>>,
) {
    let started = std::time::Instant::now();
    let outcome = plugins
        .start()
        .await
        .context("activating the policy plugin revisions");
    match &outcome {
        Ok(()) => {
            for plugin in policy.plugins() {
                tracing::info!(plugin = ?plugin, "policy plugin loaded");
            }
            tracing::info!(
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "policy plugins ready"
            );
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "policy plugins failed to load");
        }
    }
    let _ = loaded.send(Some(outcome.map_err(|e| format!("{e:#}"))));
}

/// The configured JWT secret, or the one kept in the data dir (generated on first run).
fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    load_or_create_secret(&config.data_dir.join("jwt_secret"))
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    if let Ok(text) = std::fs::read_to_string(path) {
        let secret = STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not valid base64", path.display()))?;
        anyhow::ensure!(
            secret.len() >= 32,
            "{} holds fewer than 32 bytes",
            path.display()
        );
        return Ok(secret);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut secret = vec![0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    match write_private(path, STANDARD.encode(&secret).as_bytes()) {
        Ok(()) => {}
        // Another process (a CLI command beside the server) created it first: use theirs.
        Err(error) if path.exists() => {
            tracing::debug!(%error, "jwt_secret created concurrently; reading it");
            return load_or_create_secret(path);
        }
        Err(error) => return Err(error),
    }
    tracing::warn!(
        path = %path.display(),
        "no jwt_secret configured: generated one; set LYCEUM_JWT_SECRET to share it between nodes"
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}
