//! Operating the policy plugins: modules uploaded by SHA-256, every change of a slot's chain
//! a numbered revision in the database, rollback, shadow candidates, the decision audit, and
//! `plugins.toml` as a source of revisions at start-up, on change and on `SIGHUP`.
//!
//! Changes are made one at a time (a lock), each in this order: resolve the links, prepare
//! the chain off the async workers (checks, compilation, smoke call, warm pools), record the
//! revision, then swap it in. A chain that fails any step leaves the active one serving.

pub mod audit;
pub mod links;
pub mod modules;
pub mod views;
pub mod watch;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use chrono::{DateTime, Utc};
use lyceum_plugin_runtime::{
    Activation, Builtin, ChainSpec, LoadError, PluginSource, PluginSpec, PluginsConfig,
    PolicyEngine, PreparedChain, Slot,
    inspect::{self, CheckError},
};

use self::{
    links::{ChainBody, Failure, Link, LinkLimits, MAX_CHAIN, ShadowBody},
    modules::{ModuleFiles, is_sha256, sha256_hex},
    views::{FileView, PluginsView, SlotView},
};
use super::Actor;
use crate::{
    domain::{
        DecisionQuery, NewPluginRevision, Page, PluginDecision, PluginModule, PluginRevision, now,
    },
    error::{AppError, AppResult},
    store::Store,
};

/// Whether any slot has a recorded revision, that is, this is not a first start.
pub async fn has_recorded_revisions(store: &dyn Store) -> anyhow::Result<bool> {
    for slot in Slot::ALL {
        if store.latest_plugin_revision(slot.as_str()).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where a revision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Api,
    File,
    Rollback,
    Promote,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::File => "file",
            Source::Rollback => "rollback",
            Source::Promote => "promote",
        }
    }
}

/// The slot named in a path; unknown slots are NOT_FOUND like any unknown resource.
pub fn parse_slot(text: &str) -> AppResult<Slot> {
    Slot::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            AppError::NotFound(format!("no plugin slot `{text}` (chat, files, signaling)"))
        })
}

fn refused(error: &LoadError) -> AppError {
    AppError::PluginRefused {
        reason: error.reason().to_owned(),
        message: error.to_string(),
        imports: error.imports().to_vec(),
    }
}

fn check_refused(error: CheckError) -> AppError {
    AppError::PluginRefused {
        reason: error.reason.as_str().to_owned(),
        message: error.message,
        imports: error.imports,
    }
}

fn unknown_module(module: &str) -> AppError {
    AppError::PluginRefused {
        reason: "unknown_module".into(),
        message: format!("no module `{module}`: upload it first (POST /api/v1/plugins/modules)"),
        imports: Vec::new(),
    }
}

#[derive(Debug, Clone, Default)]
struct FileState {
    checked_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

pub struct PluginService {
    engine: Arc<PolicyEngine>,
    store: Arc<dyn Store>,
    modules: ModuleFiles,
    plugins_file: PathBuf,
    max_module_bytes: u64,
    /// One change at a time: revisions are numbered and swapped in the order they were made.
    changes: tokio::sync::Mutex<()>,
    /// The links of each slot's shadow candidate, for promotion (shadows are not persisted:
    /// a restart ends them).
    shadows: Mutex<HashMap<Slot, Vec<Link>>>,
    file: Mutex<FileState>,
    /// Set while the slots load side by side at start-up: a slot that finishes first must
    /// not evict the compiled code another slot is about to record (it would be compiled
    /// again on every first start), so eviction waits for all of them.
    starting: AtomicBool,
}

impl PluginService {
    pub fn new(
        engine: Arc<PolicyEngine>,
        store: Arc<dyn Store>,
        modules_dir: PathBuf,
        plugins_file: PathBuf,
        max_module_bytes: u64,
    ) -> Self {
        Self {
            engine,
            store,
            modules: ModuleFiles::new(modules_dir),
            plugins_file,
            max_module_bytes,
            changes: tokio::sync::Mutex::new(()),
            shadows: Mutex::new(HashMap::new()),
            file: Mutex::new(FileState::default()),
            starting: AtomicBool::new(false),
        }
    }

    pub fn max_module_bytes(&self) -> u64 {
        self.max_module_bytes
    }

    pub fn require_admin(actor: &Actor) -> AppResult<()> {
        if actor.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "policy plugins are for administrators".into(),
            ))
        }
    }

    // ---- reading ----------------------------------------------------------------------------

    pub fn overview(&self, actor: &Actor) -> AppResult<PluginsView> {
        Self::require_admin(actor)?;
        let file = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let statuses: Vec<_> = Slot::ALL.map(|slot| self.engine.status(slot)).into();
        Ok(PluginsView {
            loading: statuses
                .iter()
                .filter(|status| !status.ready)
                .map(|status| status.slot.as_str())
                .collect(),
            slots: statuses.into_iter().map(SlotView::from).collect(),
            file: FileView {
                path: self.plugins_file.clone(),
                checked_at: file.checked_at,
                error: file.error,
            },
        })
    }

    pub fn slot(&self, actor: &Actor, slot: Slot) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        Ok(self.view(slot))
    }

    fn view(&self, slot: Slot) -> SlotView {
        self.engine.status(slot).into()
    }

    /// Uploaded modules, newest first, a page after the module named by `cursor`. Modules
    /// are never deleted and an operator keeps a handful, so the page is cut from the whole
    /// list rather than by the store.
    pub async fn modules(
        &self,
        actor: &Actor,
        cursor: Option<&str>,
        limit: u32,
    ) -> AppResult<Page<PluginModule>> {
        Self::require_admin(actor)?;
        let mut rows = self.store.plugin_modules().await?;
        if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
            let last = rows
                .iter()
                .position(|m| m.sha256 == cursor)
                .ok_or_else(|| {
                    AppError::validation("cursor", "cursor must be a module list's nextCursor")
                })?;
            rows.drain(..=last);
        }
        rows.truncate(limit as usize + 1);
        Ok(super::paging::cut(rows, limit, |m| m.sha256.clone()))
    }

    pub async fn revisions(
        &self,
        actor: &Actor,
        slot: Slot,
        cursor: Option<&str>,
        limit: u32,
    ) -> AppResult<Page<PluginRevision>> {
        Self::require_admin(actor)?;
        let before = match cursor {
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                AppError::validation("cursor", "cursor must be a revision's nextCursor")
            })?),
            None => None,
        };
        let rows = self
            .store
            .plugin_revisions(slot.as_str(), before, limit + 1)
            .await?;
        Ok(super::paging::cut(rows, limit, |r| r.revision.to_string()))
    }

    pub async fn decisions(
        &self,
        actor: &Actor,
        mut query: DecisionQuery,
    ) -> AppResult<Page<PluginDecision>> {
        Self::require_admin(actor)?;
        let limit = query.limit;
        query.limit = limit + 1;
        let rows = self.store.plugin_decisions(&query).await?;
        Ok(super::paging::cut(rows, limit, |d| d.id.to_string()))
    }

    // ---- modules ----------------------------------------------------------------------------

    /// Checks and keeps an uploaded module; `true` when it was new. The checks here are the
    /// ones that need no slot or configuration; the rest run when a chain names it.
    pub async fn install(
        &self,
        actor: &Actor,
        bytes: Vec<u8>,
        name: Option<String>,
    ) -> AppResult<(PluginModule, bool)> {
        Self::require_admin(actor)?;
        if let Some(name) = &name
            && (name.trim().is_empty() || name.chars().count() > 64)
        {
            return Err(AppError::validation(
                "name",
                "name must have 1 to 64 characters",
            ));
        }
        self.install_bytes(bytes, name, None).await
    }

    async fn install_bytes(
        &self,
        bytes: Vec<u8>,
        name: Option<String>,
        slot: Option<Slot>,
    ) -> AppResult<(PluginModule, bool)> {
        let (info, bytes) = tokio::task::spawn_blocking(move || {
            inspect::inspect(&bytes, slot).map(|info| (info, bytes))
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(check_refused)?;
        if let Some(known) = self.store.plugin_module(&info.sha256).await? {
            return Ok((known, false));
        }
        self.modules
            .put(&info.sha256, &bytes)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("storing a plugin module: {e}")))?;
        let module = PluginModule {
            name: name.unwrap_or_else(|| format!("module-{}", &info.sha256[..12])),
            abi: info.abi.as_str().to_owned(),
            world: info.world(),
            wit_version: info.wit_version(),
            size: info.size,
            // At the precision the database keeps: the 201 shows what a later 200 will.
            created_at: now(),
            sha256: info.sha256,
        };
        let created = self.store.insert_plugin_module(&module).await?;
        if !created {
            // Another request stored the same bytes meanwhile: same module.
            return Ok((
                self.store
                    .plugin_module(&module.sha256)
                    .await?
                    .unwrap_or(module),
                false,
            ));
        }
        tracing::info!(sha256 = %module.sha256, name = %module.name, world = %module.world, "plugin module installed");
        Ok((module, true))
    }

    // ---- changes ----------------------------------------------------------------------------

    /// `PUT /plugins/{slot}`: the chain becomes the slot's active chain, as a new revision.
    pub async fn activate(
        &self,
        actor: &Actor,
        slot: Slot,
        body: ChainBody,
    ) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        let _change = self.changes.lock().await;
        self.apply(
            slot,
            &body.chain,
            body.failure(),
            Source::Api,
            Some(actor),
            None,
        )
        .await?;
        Ok(self.view(slot))
    }

    /// `POST /plugins/{slot}/rollback`: the chain before the active one, as a new revision.
    /// Rolling back again goes one further back: a rollback remembers what it restored.
    pub async fn rollback(&self, actor: &Actor, slot: Slot) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        let _change = self.changes.lock().await;
        let latest = self
            .store
            .latest_plugin_revision(slot.as_str())
            .await?
            .ok_or_else(|| {
                AppError::Conflict("the slot has no revision to roll back from".into())
            })?;
        let base = match (latest.source.as_str(), latest.restored_from) {
            ("rollback", Some(restored)) => restored,
            _ => latest.revision,
        };
        let target = self
            .store
            .plugin_revisions(slot.as_str(), Some(base), 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                AppError::Conflict(format!(
                    "no revision before revision {base} to roll back to"
                ))
            })?;
        let links = stored_links(&target)?;
        let failure = stored_failure(&target);
        self.apply(
            slot,
            &links,
            failure,
            Source::Rollback,
            Some(actor),
            Some(target.revision),
        )
        .await?;
        Ok(self.view(slot))
    }

    /// `PUT /plugins/{slot}/shadow`: the candidate runs beside the active chain.
    pub async fn set_shadow(
        &self,
        actor: &Actor,
        slot: Slot,
        body: ShadowBody,
    ) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        let _change = self.changes.lock().await;
        let spec = self.resolve(slot, &body.chain, Failure::FailClosed).await?;
        let prepared = self.prepare(slot, spec, true).await?;
        self.engine.set_shadow(slot, Some(prepared));
        self.shadows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot, body.chain);
        tracing::info!(%slot, actor = %actor.id, "shadow chain started");
        Ok(self.view(slot))
    }

    /// `DELETE /plugins/{slot}/shadow`.
    pub async fn clear_shadow(&self, actor: &Actor, slot: Slot) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        let _change = self.changes.lock().await;
        self.engine.set_shadow(slot, None);
        self.shadows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&slot);
        Ok(self.view(slot))
    }

    /// `POST /plugins/{slot}/shadow/promote`: the candidate becomes the active chain (with
    /// the slot's current failure mode), as a new revision; the shadow ends.
    pub async fn promote(&self, actor: &Actor, slot: Slot) -> AppResult<SlotView> {
        Self::require_admin(actor)?;
        let _change = self.changes.lock().await;
        let links = self
            .shadows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&slot)
            .cloned()
            .ok_or_else(|| AppError::Conflict("the slot has no shadow chain to promote".into()))?;
        let failure = self.engine.status(slot).failure.into();
        self.apply(slot, &links, failure, Source::Promote, Some(actor), None)
            .await?;
        self.engine.set_shadow(slot, None);
        self.shadows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&slot);
        Ok(self.view(slot))
    }

    /// Resolves, prepares, records and activates `links`.
    async fn apply(
        &self,
        slot: Slot,
        links: &[Link],
        failure: Failure,
        source: Source,
        actor: Option<&Actor>,
        restored_from: Option<i64>,
    ) -> AppResult<PluginRevision> {
        let spec = self.resolve(slot, links, failure).await?;
        let prepared = self.prepare(slot, spec, false).await?;
        let chain = serde_json::to_value(links).map_err(|e| AppError::Internal(e.into()))?;
        let revision = self
            .store
            .insert_plugin_revision(
                &NewPluginRevision {
                    slot: slot.as_str().to_owned(),
                    activated_by: actor.map(|a| a.id),
                    source: source.as_str().to_owned(),
                    failure: failure.as_str().to_owned(),
                    chain,
                    restored_from,
                },
                now(),
            )
            .await?;
        self.engine.activate(prepared, activation(&revision));
        tracing::info!(%slot, revision = revision.revision, source = source.as_str(), "plugin chain activated");
        self.evict_unreferenced().await;
        Ok(revision)
    }

    /// Serves a recorded revision again (at start-up), without recording a new one.
    async fn restore(&self, revision: &PluginRevision) -> AppResult<()> {
        let slot = parse_slot(&revision.slot)?;
        let links = stored_links(revision)?;
        let spec = self.resolve(slot, &links, stored_failure(revision)).await?;
        let prepared = self.prepare(slot, spec, false).await?;
        self.engine.activate(prepared, activation(revision));
        Ok(())
    }

    async fn prepare(&self, slot: Slot, spec: ChainSpec, shadow: bool) -> AppResult<PreparedChain> {
        let engine = self.engine.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            if shadow {
                engine.prepare_shadow(slot, &spec)
            } else {
                engine.prepare(slot, &spec)
            }
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
        prepared.map_err(|e| {
            tracing::warn!(%slot, error = %e, "plugin chain refused");
            refused(&e)
        })
    }

    /// Turns links into what the engine prepares: modules read from disk (pinned to their
    /// hash), names, configuration, failure modes and limits.
    async fn resolve(&self, slot: Slot, links: &[Link], failure: Failure) -> AppResult<ChainSpec> {
        if links.len() > MAX_CHAIN {
            return Err(AppError::validation(
                "chain",
                format!("a chain has at most {MAX_CHAIN} plugins"),
            ));
        }
        let mut plugins = Vec::with_capacity(links.len());
        for link in links {
            let mut spec = match builtin_of(&link.module) {
                // Said here, in the contract's terms: the engine would call it a bad chain.
                Some(builtin) if builtin.slot() != slot => {
                    return Err(AppError::PluginRefused {
                        reason: "wrong_world".into(),
                        message: format!(
                            "`{}` exports the {} world; the {slot} slot runs {} plugins",
                            link.module,
                            builtin.slot().world(),
                            slot.world()
                        ),
                        imports: Vec::new(),
                    });
                }
                Some(builtin) => PluginSpec::new(PluginSource::Builtin(builtin)),
                None if is_sha256(&link.module) => {
                    let module = self
                        .store
                        .plugin_module(&link.module)
                        .await?
                        .ok_or_else(|| unknown_module(&link.module))?;
                    let bytes = self
                        .modules
                        .get(&link.module)
                        .await
                        .ok_or_else(|| unknown_module(&link.module))?;
                    PluginSpec::new(PluginSource::Bytes {
                        name: module.name,
                        bytes: bytes.into(),
                    })
                    .with_sha256(&link.module)
                }
                None => return Err(unknown_module(&link.module)),
            };
            if let Some(name) = &link.name {
                spec = spec.with_name(name);
            }
            if let Some(config) = &link.config {
                spec.config = config.clone();
            }
            spec.failure = link.failure.map(Into::into);
            spec.limits = link.limits.map(Into::into).unwrap_or_default();
            plugins.push(spec);
        }
        Ok(ChainSpec {
            failure: failure.into(),
            limits: Default::default(),
            plugins,
        })
    }

    /// Compiled code is kept only for modules some revision names, or that serve now.
    async fn evict_unreferenced(&self) {
        if self.starting.load(Ordering::Acquire) {
            return;
        }
        match self.store.referenced_plugin_modules().await {
            Ok(referenced) => {
                // Built-ins are always a rollback away, and cheap to keep.
                let keep: HashSet<String> = referenced
                    .into_iter()
                    .chain(
                        Slot::ALL
                            .into_iter()
                            .map(|slot| builtin_sha256(Builtin::for_slot(slot)).to_owned()),
                    )
                    .collect();
                let engine = self.engine.clone();
                let _ = tokio::task::spawn_blocking(move || engine.retain_compiled(&keep)).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not list referenced plugin modules"),
        }
    }

    // ---- the plugins file -------------------------------------------------------------------

    /// At start-up, beside a server that already answers: each slot serves the file's chain
    /// when it differs from the file's last revision (recorded as a new `file` revision),
    /// otherwise its newest revision, otherwise (no usable file, nothing recorded) the
    /// built-in chain. Slots load side by side and each serves as soon as its chain is
    /// ready, so a big plugin in one slot holds up no other. Admin changes wait until this
    /// is over.
    pub async fn start(&self) -> anyhow::Result<()> {
        let _change = self.changes.lock().await;
        let file = self.read_file().await;
        self.starting.store(true, Ordering::Release);
        let started =
            futures::future::try_join_all(Slot::ALL.map(|slot| self.start_slot(slot, &file))).await;
        self.starting.store(false, Ordering::Release);
        started?;
        self.evict_unreferenced().await;
        Ok(())
    }

    async fn start_slot(
        &self,
        slot: Slot,
        file: &Result<[ChainBody; 3], String>,
    ) -> anyhow::Result<()> {
        if let Ok(bodies) = file
            && self
                .apply_file_chain(slot, &bodies[slot_index(slot)])
                .await?
        {
            return Ok(());
        }
        if let Some(latest) = self.store.latest_plugin_revision(slot.as_str()).await? {
            return self.restore(&latest).await.map_err(|e| {
                anyhow::anyhow!(
                    "restoring revision {} of the {slot} slot: {e}",
                    latest.revision
                )
            });
        }
        let engine = self.engine.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            engine.prepare(slot, &PluginsConfig::default().chain_spec(slot))
        })
        .await??;
        self.engine.activate(prepared, Activation::unrecorded());
        Ok(())
    }

    /// On a change of the file or `SIGHUP`: slots whose file chain changed get it as a new
    /// revision. An invalid file is refused and logged, and shown by `GET /plugins`; the
    /// active chains keep serving.
    pub async fn sync_file(&self) {
        let _change = self.changes.lock().await;
        let Ok(bodies) = self.read_file().await else {
            return;
        };
        for slot in Slot::ALL {
            if let Err(e) = self.apply_file_chain(slot, &bodies[slot_index(slot)]).await {
                tracing::error!(%slot, error = %e, file = %self.plugins_file.display(), "plugins file refused; the active chain keeps serving");
                self.note_file(Some(format!("{slot}: {e}")));
                return;
            }
        }
    }

    /// Applies the file's chain for `slot` if it differs from the file's last revision;
    /// true when it did.
    async fn apply_file_chain(&self, slot: Slot, body: &ChainBody) -> anyhow::Result<bool> {
        let chain = serde_json::to_value(&body.chain)?;
        let last = self
            .store
            .latest_plugin_revision_from(slot.as_str(), Source::File.as_str())
            .await?;
        if last
            .as_ref()
            .is_some_and(|r| r.chain == chain && r.failure == body.failure().as_str())
        {
            return Ok(false);
        }
        self.apply(slot, &body.chain, body.failure(), Source::File, None, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(true)
    }

    /// The file's three chains as links, file modules installed; an invalid file is
    /// recorded as such.
    async fn read_file(&self) -> Result<[ChainBody; 3], String> {
        let result = match PluginsConfig::load(&self.plugins_file) {
            Ok(config) => self.file_bodies(&config).await,
            Err(e) => Err(e.to_string()),
        };
        match &result {
            Ok(_) => self.note_file(None),
            Err(e) => {
                tracing::error!(error = %e, file = %self.plugins_file.display(), "plugins file refused; the active chains keep serving");
                self.note_file(Some(e.clone()));
            }
        }
        result
    }

    fn note_file(&self, error: Option<String>) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.checked_at = Some(Utc::now());
        file.error = error;
    }

    async fn file_bodies(&self, config: &PluginsConfig) -> Result<[ChainBody; 3], String> {
        let mut bodies = Vec::with_capacity(3);
        for slot in Slot::ALL {
            let spec = config.chain_spec(slot);
            let mut chain = Vec::with_capacity(spec.plugins.len());
            for plugin in &spec.plugins {
                let module = match &plugin.source {
                    PluginSource::Builtin(builtin) => format!("builtin:{}", builtin.as_str()),
                    PluginSource::File(path) => {
                        let bytes = tokio::fs::read(path)
                            .await
                            .map_err(|e| format!("reading {}: {e}", path.display()))?;
                        let sha256 = sha256_hex(&bytes);
                        if let Some(pinned) = &plugin.sha256
                            && !pinned.eq_ignore_ascii_case(&sha256)
                        {
                            return Err(format!(
                                "{} has SHA-256 {sha256}, but the file pins {pinned}",
                                path.display()
                            ));
                        }
                        self.install_bytes(bytes, Some(plugin.name()), Some(slot))
                            .await
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        sha256
                    }
                    PluginSource::Bytes { .. } => {
                        return Err("in-memory plugins cannot come from a file".into());
                    }
                };
                chain.push(Link {
                    module,
                    name: plugin.name.clone(),
                    config: (!plugin.config.is_empty()).then(|| plugin.config.clone()),
                    failure: plugin.failure.map(Into::into),
                    limits: LinkLimits::from_config(spec.limits.merged(&plugin.limits)),
                });
            }
            bodies.push(ChainBody {
                chain,
                failure: Some(spec.failure.into()),
            });
        }
        bodies.try_into().map_err(|_| "three slots".to_owned())
    }
}

fn slot_index(slot: Slot) -> usize {
    Slot::ALL.iter().position(|s| *s == slot).unwrap_or(0)
}

/// `builtin:…`, or the SHA-256 of a builtin's bytes (what `GET /plugins` shows for it).
fn builtin_of(module: &str) -> Option<Builtin> {
    if let Some(name) = module.strip_prefix("builtin:") {
        return Slot::ALL
            .into_iter()
            .map(Builtin::for_slot)
            .find(|b| b.as_str() == name);
    }
    Slot::ALL
        .into_iter()
        .map(Builtin::for_slot)
        .find(|b| builtin_sha256(*b) == module)
}

fn builtin_sha256(builtin: Builtin) -> &'static str {
    static HASHES: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
    let hashes = HASHES
        .get_or_init(|| Slot::ALL.map(|slot| sha256_hex(Builtin::for_slot(slot).component())));
    &hashes[slot_index(builtin.slot())]
}

fn stored_links(revision: &PluginRevision) -> AppResult<Vec<Link>> {
    serde_json::from_value::<Vec<Link>>(revision.chain.clone()).map_err(|e| {
        AppError::Internal(anyhow::anyhow!(
            "revision {} of the {} slot holds an unreadable chain: {e}",
            revision.revision,
            revision.slot
        ))
    })
}

fn stored_failure(revision: &PluginRevision) -> Failure {
    match revision.failure.as_str() {
        "fail-open" => Failure::FailOpen,
        _ => Failure::FailClosed,
    }
}

fn activation(revision: &PluginRevision) -> Activation {
    Activation {
        revision: u64::try_from(revision.revision).unwrap_or(0),
        activated_at: SystemTime::from(revision.activated_at),
        activated_by: revision.activated_by.map(|id| id.to_string()),
    }
}
