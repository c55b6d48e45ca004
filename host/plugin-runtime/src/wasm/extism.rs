//! Extism modules: core WebAssembly that takes and returns the JSON encoding of the WIT
//! values ([`crate::json`]) through the Extism kernel, run by the `extism` crate on the same
//! wasmtime as the components.
//!
//! The limits are the components': the deadline is Extism's call timeout, the memory cap
//! its page budget (which also counts the kernel's memory holding input and output), fuel
//! its fuel limit. `log` and `kv` are the host functions `lyceum_log` and `lyceum_kv` over
//! the same rules and store as the component imports; the configuration is Extism's config,
//! each value as `config.get` gives it. As for components, an instance that failed is
//! dropped and never reused.

use std::sync::{Arc, Mutex, PoisonError};

use extism::{
    CompiledPlugin, CurrentPlugin, Function, Manifest, PTR, Plugin, PluginBuilder, UserData, Val,
    Wasm,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::host::{self, LOG_LINES_PER_CALL, Level};
use crate::config::Limits;
use crate::error::FailureKind;
use crate::json;
use crate::kv::{KvError, KvStore, MemoryKv};
use crate::types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, ModerationInput,
    ModerationVerdict, PolicyContext, Role, SignalCheck, SignalVerdict, Slot,
};

const PAGE_BYTES: usize = 64 * 1024;

/// A loaded Extism module and a pool of instances ready for calls.
pub(crate) struct ExtismPlugin {
    compiled: CompiledPlugin,
    slot: Slot,
    name: Arc<str>,
    kv: Arc<dyn KvStore>,
    pool: Mutex<Vec<Plugin>>,
    pool_size: usize,
}

/// What the host functions need during one call. It travels with the call rather than
/// with the compiled module, so the smoke call can use a throwaway store.
struct CallContext {
    name: Arc<str>,
    kv: Arc<dyn KvStore>,
    logs_left: u32,
}

impl ExtismPlugin {
    /// Compiles `bytes` with the plugin's configuration and limits baked into its manifest.
    /// The error is the compiler's (or linker's) explanation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile(
        slot: Slot,
        name: &str,
        bytes: &[u8],
        plugin_config: &serde_json::Map<String, Value>,
        limits: Limits,
        fuel_enabled: bool,
        kv: Arc<dyn KvStore>,
        pool_size: usize,
    ) -> Result<Self, String> {
        let pages = u32::try_from(limits.memory_bytes / PAGE_BYTES)
            .unwrap_or(u32::MAX)
            .max(1);
        let config = plugin_config.iter().map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        });
        let manifest = Manifest::new([Wasm::data(bytes.to_vec())])
            .with_memory_max(pages)
            .with_timeout(limits.deadline)
            .with_config(config);
        let mut builder = PluginBuilder::new(manifest)
            .with_wasi(false)
            // Compiled code is kept in memory by the runtime; Extism's own disk cache would
            // write wherever the process's user keeps wasmtime's.
            .with_cache_disabled()
            .with_functions([log_function(), kv_function()]);
        if fuel_enabled && let Some(fuel) = limits.fuel {
            builder = builder.with_fuel_limit(fuel);
        }
        let compiled = CompiledPlugin::new(builder).map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            compiled,
            slot,
            name: name.into(),
            kv,
            pool: Mutex::new(Vec::new()),
            pool_size,
        })
    }

    fn instantiate(&self) -> Result<Plugin, extism::Error> {
        Plugin::new_from_compiled(&self.compiled)
    }

    /// Starts one instance, so that linking problems surface at load.
    pub(crate) fn start(&self) -> Result<(), String> {
        let plugin = self.instantiate().map_err(|e| format!("{e:#}"))?;
        self.release(plugin);
        Ok(())
    }

    /// Idle instances in the pool now.
    pub(crate) fn idle(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Fills the pool up to `warm` instances; best effort, as for components.
    pub(crate) fn prewarm(&self, warm: usize) {
        for _ in self.idle()..warm.min(self.pool_size) {
            match self.instantiate() {
                Ok(plugin) => self.release(plugin),
                Err(_) => break,
            }
        }
    }

    fn release(&self, plugin: Plugin) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.pool_size {
            pool.push(plugin);
        }
    }

    /// Calls `function` with `input` as JSON and reads its answer as `O`, on a pooled
    /// instance with `kv` as the store its host functions use.
    fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        function: &str,
        input: &I,
        kv: Arc<dyn KvStore>,
    ) -> Result<O, FailureKind> {
        let input = serde_json::to_vec(input).map_err(|_| FailureKind::Invalid)?;
        let idle = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut plugin = match idle {
            Some(plugin) => plugin,
            None => self.instantiate().map_err(|e| {
                tracing::warn!(plugin = %self.name, error = %format!("{e:#}"), "could not start a plugin instance");
                FailureKind::Unavailable
            })?,
        };
        let context = CallContext {
            name: self.name.clone(),
            kv,
            logs_left: LOG_LINES_PER_CALL,
        };
        let answer = plugin
            .call_with_host_context::<&[u8], &[u8], CallContext>(function, &input, context)
            .map(|output| serde_json::from_slice::<O>(output));
        match answer {
            Ok(Ok(verdict)) => {
                self.release(plugin);
                Ok(verdict)
            }
            Ok(Err(e)) => {
                // The instance is sound; only its answer is not a verdict.
                self.release(plugin);
                tracing::warn!(plugin = %self.name, function, error = %e, "the plugin's answer is not a verdict in the JSON encoding");
                Err(FailureKind::Invalid)
            }
            Err(e) => Err(classify(&e)),
        }
    }

    /// One call with the plugin's configuration on a harmless input and a throwaway store,
    /// as for components: a plugin that cannot work with its configuration is refused
    /// before it takes traffic.
    pub(crate) fn smoke(&self) -> Result<(), FailureKind> {
        let ctx = PolicyContext::new("smoke-test", "smoke-test", Role::Student);
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        match self.slot {
            Slot::Chat => self
                .call::<_, json::Verdict>(
                    json::MODERATE,
                    &json::ModerateInput {
                        ctx: (&ctx).into(),
                        message: json::Message::new(
                            &ModerationInput::send("smoke-test", "Hello, class."),
                            "Hello, class.",
                        ),
                    },
                    kv,
                )
                .map(drop),
            Slot::Files => {
                let upload = FilePrecheck {
                    name: "notes.txt".into(),
                    folder: None,
                    declared_type: Some("text/plain".into()),
                    declared_size: Some(13),
                    sniffed_type: Some("text/plain".into()),
                    head: b"Hello, class.".to_vec(),
                };
                self.call::<_, json::FileVerdict>(
                    json::PRECHECK,
                    &json::PrecheckInput {
                        ctx: (&ctx).into(),
                        upload: json::UploadHead::new(&upload, "notes.txt", None),
                    },
                    kv,
                )
                .map(drop)
            }
            Slot::Signaling => {
                let request = JoinCheck {
                    session_id: "smoke-test".into(),
                    state: crate::types::SessionState::Live,
                    participant_count: 0,
                    max_participants: None,
                };
                self.call::<_, json::JoinVerdict>(
                    json::CHECK_JOIN,
                    &json::CheckJoinInput {
                        ctx: (&ctx).into(),
                        request: (&request).into(),
                    },
                    kv,
                )
                .map(drop)
            }
        }
    }

    pub(crate) fn moderate(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
        content: &str,
    ) -> Result<ModerationVerdict, FailureKind> {
        let input = json::ModerateInput {
            ctx: ctx.into(),
            message: json::Message::new(input, content),
        };
        self.call::<_, json::Verdict>(json::MODERATE, &input, self.kv.clone())
            .map(Into::into)
    }

    pub(crate) fn precheck(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        let input = json::PrecheckInput {
            ctx: ctx.into(),
            upload: json::UploadHead::new(input, name, folder),
        };
        self.call::<_, json::FileVerdict>(json::PRECHECK, &input, self.kv.clone())
            .map(Into::into)
    }

    pub(crate) fn finish(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        let input = json::FinishInput {
            ctx: ctx.into(),
            upload: json::UploadDone::new(input, name, folder),
        };
        self.call::<_, json::FileVerdict>(json::FINISH, &input, self.kv.clone())
            .map(Into::into)
    }

    pub(crate) fn check_join(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, FailureKind> {
        let input = json::CheckJoinInput {
            ctx: ctx.into(),
            request: input.into(),
        };
        self.call::<_, json::JoinVerdict>(json::CHECK_JOIN, &input, self.kv.clone())
            .map(Into::into)
    }

    pub(crate) fn check_signal(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
        payload: &str,
    ) -> Result<SignalVerdict, FailureKind> {
        let input = json::CheckSignalInput {
            ctx: ctx.into(),
            signal: json::Signal::new(input, payload),
        };
        self.call::<_, json::SignalVerdict>(json::CHECK_SIGNAL, &input, self.kv.clone())
            .map(Into::into)
    }
}

/// Extism reports its limits as errors with fixed texts; anything else is a trap.
fn classify(error: &extism::Error) -> FailureKind {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => FailureKind::Timeout,
            wasmtime::Trap::OutOfFuel => FailureKind::Fuel,
            _ => FailureKind::Trap,
        };
    }
    match error.root_cause().to_string().as_str() {
        "timeout" => FailureKind::Timeout,
        "oom" => FailureKind::Memory,
        "plugin ran out of fuel" => FailureKind::Fuel,
        _ => FailureKind::Trap,
    }
}

fn call_context(plugin: &mut CurrentPlugin) -> Result<&mut CallContext, extism::Error> {
    plugin.host_context::<CallContext>()
}

/// `lyceum_log({"level", "message"})`: the `log` interface.
fn log_function() -> Function {
    Function::new(
        "lyceum_log",
        [PTR],
        [],
        UserData::new(()),
        |plugin: &mut CurrentPlugin, inputs: &[Val], _outputs: &mut [Val], _: UserData<()>| {
            #[derive(serde::Deserialize)]
            struct Line {
                level: String,
                message: String,
            }
            let text: String = plugin.memory_get_val(&inputs[0])?;
            let line: Line = serde_json::from_str(&text)?;
            let level = match line.level.as_str() {
                "trace" => Level::Trace,
                "debug" => Level::Debug,
                "info" => Level::Info,
                "warn" => Level::Warn,
                "error" => Level::Error,
                other => return Err(extism::Error::msg(format!("unknown log level `{other}`"))),
            };
            let context = call_context(plugin)?;
            let name = context.name.clone();
            host::write_log(&name, &mut context.logs_left, level, line.message);
            Ok(())
        },
    )
}

/// `lyceum_kv(request) -> result`: the `kv` interface, one operation per request.
fn kv_function() -> Function {
    Function::new(
        "lyceum_kv",
        [PTR],
        [PTR],
        UserData::new(()),
        |plugin: &mut CurrentPlugin, inputs: &[Val], outputs: &mut [Val], _: UserData<()>| {
            let text: String = plugin.memory_get_val(&inputs[0])?;
            let answer = match serde_json::from_str::<KvRequest>(&text) {
                Ok(request) => {
                    let context = call_context(plugin)?;
                    kv_answer(&*context.kv, &context.name, request)
                }
                Err(e) => kv_err(KvError::Invalid(format!("not a kv request: {e}"))),
            };
            let handle = plugin.memory_new(answer.to_string())?;
            outputs[0] = plugin.memory_to_val(handle);
            Ok(())
        },
    )
}

/// A `lyceum_kv` request: the `kv` functions by name with their parameters.
#[derive(serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvRequest {
    Get {
        key: String,
    },
    #[serde(rename_all = "camelCase")]
    Set {
        key: String,
        value: String,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Incr {
        key: String,
        delta: i64,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
}

fn kv_answer(kv: &dyn KvStore, plugin: &str, request: KvRequest) -> Value {
    let result = match request {
        KvRequest::Get { key } => host::kv_get(kv, plugin, &key).map(|v| json!(v)),
        KvRequest::Set { key, value, ttl_ms } => {
            host::kv_set(kv, plugin, &key, &value, ttl_ms).map(|()| Value::Null)
        }
        KvRequest::Incr { key, delta, ttl_ms } => {
            host::kv_incr(kv, plugin, &key, delta, ttl_ms).map(|n| json!(n))
        }
    };
    match result {
        Ok(Value::Null) => json!({"tag": "ok", "val": null}),
        Ok(value) => json!({"tag": "ok", "val": value}),
        Err(e) => kv_err(e),
    }
}

/// `kv-error` in the JSON encoding, inside the result's `err`.
fn kv_err(error: KvError) -> Value {
    let error = match error {
        KvError::Unavailable => json!({"tag": "unavailable"}),
        KvError::Invalid(why) => json!({"tag": "invalid", "val": why}),
        KvError::Full => json!({"tag": "full"}),
    };
    json!({"tag": "err", "val": error})
}
