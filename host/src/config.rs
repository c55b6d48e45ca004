//! Configuration: built-in defaults < optional `lyceum.toml` < `LYCEUM_*` environment variables.
//!
//! Every key is flat, so the file key `access_token_ttl` and the variable
//! `LYCEUM_ACCESS_TOKEN_TTL` are the same setting; the README has the table. Start-up stops on
//! an invalid value with a message naming the key, rather than running on a guess.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every key Lyceum reads. Environment variables outside this list (such as the test suite's
/// `LYCEUM_TEST_DATABASE_URL`) are ignored instead of being rejected as unknown keys.
pub const KEYS: &[&str] = &[
    "bind",
    "data_dir",
    "database_url",
    "db_max_connections",
    "upload_dir",
    "jwt_secret",
    "jwt_retired_secrets",
    "jwt_issuer",
    "jwt_audience",
    "access_token_ttl",
    "refresh_token_ttl",
    "cors_origins",
    "redis_url",
    "log_format",
    "max_json_body",
    "shutdown_grace",
    "login_max_failures_per_email",
    "login_max_failures_per_ip",
    "login_failure_window",
    "trust_forwarded_for",
    "argon2_memory_kib",
    "argon2_iterations",
    "password_hash_threads",
    "password_hash_queue",
    "chat_max_message_chars",
    "chat_write_queue",
    "chat_write_batch",
    "chat_write_max_wait",
    "membership_cache_ttl",
    "upload_max_documents",
    "upload_max_images",
    "upload_max_videos",
    "upload_max_misc",
    "upload_user_quota",
    "stun_urls",
    "turn_urls",
    "turn_secret",
    "turn_credential_ttl",
    "plugins_config",
    "plugin_cache_dir",
    "plugin_audit_retention",
    "plugin_audit_queue",
    "plugin_module_max_bytes",
    "plugins_watch",
    "chat_rate_per_second",
    "chat_rate_burst",
    "signed_url_ttl",
    "signal_max_sdp_bytes",
    "signal_max_candidate_bytes",
    "signal_rate_per_second",
    "signal_rate_burst",
    "socket_send_buffer",
    "presence_batch_interval",
    "socket_reauth_grace",
    "socket_max_per_user",
    "socket_max_per_address",
    "socket_event_rate_per_second",
    "socket_event_burst",
    "http_header_timeout",
    "socket_ping_interval",
    "socket_ping_timeout",
    "upload_idle_timeout",
    "upload_min_rate",
    "http_request_timeout",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP and Socket.IO listener binds.
    pub bind: SocketAddr,
    /// Where the embedded database and the generated JWT secret live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://<data_dir>/lyceum.db`.
    pub database_url: Option<Secret>,
    pub db_max_connections: u32,
    pub upload_dir: PathBuf,
    /// HS256 key for access tokens; generated and kept in `<data_dir>/jwt_secret` when unset.
    pub jwt_secret: Option<Secret>,
    /// Earlier `jwt_secret`s whose access tokens are still accepted (never used to sign), so
    /// rotating the secret logs nobody out: keep a retired secret for one `access_token_ttl`.
    #[serde(deserialize_with = "secret_list")]
    pub jwt_retired_secrets: Vec<Secret>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    #[serde(with = "duration")]
    pub access_token_ttl: Duration,
    #[serde(with = "duration")]
    pub refresh_token_ttl: Duration,
    /// Allowed browser origins; empty means same-origin only, `*` allows any.
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    pub redis_url: Option<Secret>,
    pub log_format: LogFormat,
    #[serde(with = "size")]
    pub max_json_body: u64,
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    pub login_max_failures_per_email: u32,
    pub login_max_failures_per_ip: u32,
    #[serde(with = "duration")]
    pub login_failure_window: Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// Threads that hash passwords; 0 means one per core.
    pub password_hash_threads: usize,
    /// Password checks that may wait for a hashing thread before requests are refused.
    pub password_hash_queue: usize,
    pub chat_max_message_chars: usize,
    /// Chat messages waiting to be stored before further sends are refused (`RATE_LIMITED`).
    pub chat_write_queue: usize,
    /// Most chat messages stored in one transaction.
    pub chat_write_batch: usize,
    /// Longest a chat message waits to be stored before it is refused instead.
    #[serde(with = "duration")]
    pub chat_write_max_wait: Duration,
    /// How long this node trusts its memory of courses and enrollments (changes made through
    /// this node are seen at once; this bounds how long changes made elsewhere go unseen).
    #[serde(with = "duration")]
    pub membership_cache_ttl: Duration,
    #[serde(with = "size")]
    pub upload_max_documents: u64,
    #[serde(with = "size")]
    pub upload_max_images: u64,
    #[serde(with = "size")]
    pub upload_max_videos: u64,
    #[serde(with = "size")]
    pub upload_max_misc: u64,
    #[serde(with = "size")]
    pub upload_user_quota: u64,
    /// STUN servers handed to WebRTC clients.
    #[serde(deserialize_with = "list")]
    pub stun_urls: Vec<String>,
    /// TURN servers handed to WebRTC clients.
    #[serde(deserialize_with = "list")]
    pub turn_urls: Vec<String>,
    /// Shared secret of the TURN server's `use-auth-secret` mode.
    pub turn_secret: Option<Secret>,
    #[serde(with = "duration")]
    pub turn_credential_ttl: Duration,
    /// The policy plugin chains (`plugins.toml`); the built-in defaults when the file is absent.
    pub plugins_config: PathBuf,
    /// Where compiled plugins are cached; defaults to `<data_dir>/plugin-cache`.
    pub plugin_cache_dir: Option<PathBuf>,
    /// How long plugin decisions are kept in the audit before they are pruned.
    #[serde(with = "duration")]
    pub plugin_audit_retention: Duration,
    /// Decisions waiting to be written; beyond it they are dropped and counted.
    pub plugin_audit_queue: usize,
    /// Largest plugin module accepted by `POST /api/v1/plugins/modules`.
    #[serde(with = "size")]
    pub plugin_module_max_bytes: u64,
    /// Whether a change of `plugins_config` is picked up while running (besides `SIGHUP`).
    pub plugins_watch: bool,
    /// Sustained chat messages per second per user.
    pub chat_rate_per_second: f64,
    /// Chat messages a user may send in a burst before the rate applies.
    pub chat_rate_burst: u32,
    /// How long a file's `signedUrl` works.
    #[serde(with = "duration")]
    pub signed_url_ttl: Duration,
    /// Largest SDP (offer or answer) relayed, as JSON.
    #[serde(with = "size")]
    pub signal_max_sdp_bytes: u64,
    /// Largest ICE candidate relayed, as JSON.
    #[serde(with = "size")]
    pub signal_max_candidate_bytes: u64,
    /// Sustained signals (offers, answers, candidates) per second per socket.
    pub signal_rate_per_second: f64,
    /// Signals a socket may send in a burst before the rate applies.
    pub signal_rate_burst: u32,
    /// Packets waiting to be written to one socket before further sends to it fail.
    pub socket_send_buffer: usize,
    /// Longest a change of who is online waits before its room hears of it; the changes of
    /// that time go out as one diff per room.
    #[serde(with = "duration")]
    pub presence_batch_interval: Duration,
    /// How long a socket stays connected after its access token expired, waiting for
    /// `auth:refresh`; then it is told `auth:expired` and disconnected.
    #[serde(with = "duration")]
    pub socket_reauth_grace: Duration,
    /// Sockets one user may hold open at once (tabs, devices).
    pub socket_max_per_user: u32,
    /// Sockets one address may hold open at once.
    pub socket_max_per_address: u32,
    /// Sustained events per second per socket, every event counted.
    pub socket_event_rate_per_second: f64,
    /// Events a socket may send at once; refusing this many in a row disconnects it.
    pub socket_event_burst: u32,
    /// Longest a client may take to send a request head (and an idle keep-alive connection
    /// may wait for its next one) before its connection is closed.
    #[serde(with = "duration")]
    pub http_header_timeout: Duration,
    /// How often the server pings each socket (Engine.IO heartbeat).
    #[serde(with = "duration")]
    pub socket_ping_interval: Duration,
    /// How long a socket has to answer a ping before it is closed: a client that stopped
    /// reading stops answering too.
    #[serde(with = "duration")]
    pub socket_ping_timeout: Duration,
    /// The window over which an upload's pace is judged: one that brings fewer than
    /// `upload_min_rate` bytes per second of it (and at least one byte) abandons the upload.
    #[serde(with = "duration")]
    pub upload_idle_timeout: Duration,
    /// Slowest an upload body may arrive, in bytes per second averaged over each
    /// `upload_idle_timeout` window; 0 asks only for one byte per window.
    pub upload_min_rate: u64,
    /// Longest any other API request may take, from its head to its answer (reading a JSON
    /// body included); past it the answer is 503 `UNAVAILABLE`. Uploads are paced instead,
    /// and downloads and sockets are not requests that end.
    #[serde(with = "duration")]
    pub http_request_timeout: Duration,
}

const MIB: u64 = 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            db_max_connections: 16,
            upload_dir: PathBuf::from("uploads"),
            jwt_secret: None,
            jwt_retired_secrets: Vec::new(),
            jwt_issuer: "lyceum".into(),
            jwt_audience: "lyceum-api".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            cors_origins: Vec::new(),
            redis_url: None,
            log_format: LogFormat::Text,
            max_json_body: MIB,
            shutdown_grace: Duration::from_secs(30),
            login_max_failures_per_email: 5,
            login_max_failures_per_ip: 30,
            login_failure_window: Duration::from_secs(15 * 60),
            trust_forwarded_for: false,
            // OWASP's argon2id baseline (19 MiB, t=2, p=1).
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            password_hash_threads: 0,
            // About a second of sign-ups on two cores; beyond it, refusing is kinder than a wait.
            password_hash_queue: 64,
            chat_max_message_chars: 4000,
            chat_write_queue: 4096,
            chat_write_batch: 512,
            chat_write_max_wait: Duration::from_millis(500),
            membership_cache_ttl: Duration::from_secs(10),
            upload_max_documents: 50 * MIB,
            upload_max_images: 20 * MIB,
            upload_max_videos: 2 * 1024 * MIB,
            upload_max_misc: 50 * MIB,
            upload_user_quota: 5 * 1024 * MIB,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl: Duration::from_secs(3600),
            plugins_config: PathBuf::from("plugins.toml"),
            plugin_cache_dir: None,
            plugin_audit_retention: Duration::from_secs(30 * 24 * 3600),
            plugin_audit_queue: 4096,
            plugin_module_max_bytes: 32 << 20,
            plugins_watch: true,
            chat_rate_per_second: 5.0,
            chat_rate_burst: 20,
            signed_url_ttl: Duration::from_secs(3600),
            signal_max_sdp_bytes: 64 * 1024,
            signal_max_candidate_bytes: 4 * 1024,
            signal_rate_per_second: 50.0,
            signal_rate_burst: 200,
            socket_send_buffer: 1024,
            presence_batch_interval: Duration::from_millis(200),
            socket_reauth_grace: Duration::from_secs(30),
            socket_max_per_user: 20,
            socket_max_per_address: 10_000,
            socket_event_rate_per_second: 100.0,
            socket_event_burst: 400,
            http_header_timeout: Duration::from_secs(10),
            socket_ping_interval: Duration::from_secs(25),
            socket_ping_timeout: Duration::from_secs(20),
            upload_idle_timeout: Duration::from_secs(30),
            upload_min_rate: 1024,
            http_request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}` (env LYCEUM_{env}): {message}")]
    Key {
        key: &'static str,
        env: String,
        message: String,
    },
    #[error("configuration: {0}")]
    Io(#[from] std::io::Error),
}

impl ConfigError {
    fn key(key: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key,
            env: key.to_ascii_uppercase(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads defaults, then `file` (when it exists, or always when `required`), then the
    /// process environment, and validates the result.
    pub fn load(file: &Path, required: bool) -> Result<Config, ConfigError> {
        if required && !file.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("LYCEUM_").filter(|k| KEYS.iter().any(|key| k == *key)));
        let config: Config = figment.extract().map_err(describe_figment_error)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::key(
                    "database_url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::key(
                    "redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError::key(
                "jwt_secret",
                "must be at least 32 bytes long",
            ));
        }
        if self
            .jwt_retired_secrets
            .iter()
            .any(|s| s.expose().len() < 32)
        {
            return Err(ConfigError::key(
                "jwt_retired_secrets",
                "each secret must be at least 32 bytes long",
            ));
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::key("db_max_connections", "must be at least 1"));
        }
        for (key, value) in [
            ("access_token_ttl", self.access_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("turn_credential_ttl", self.turn_credential_ttl),
            ("signed_url_ttl", self.signed_url_ttl),
            ("login_failure_window", self.login_failure_window),
        ] {
            if value.is_zero() {
                return Err(ConfigError::key(key, "must be longer than zero"));
            }
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            return Err(ConfigError::key(
                "refresh_token_ttl",
                "must be longer than access_token_ttl",
            ));
        }
        if self.jwt_issuer.is_empty() {
            return Err(ConfigError::key("jwt_issuer", "must not be empty"));
        }
        if self.jwt_audience.is_empty() {
            return Err(ConfigError::key("jwt_audience", "must not be empty"));
        }
        if self.login_max_failures_per_email == 0 || self.login_max_failures_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "login_max_failures_per_email and login_max_failures_per_ip must be at least 1"
                    .into(),
            ));
        }
        if self.argon2_memory_kib < 8 * 1024 {
            return Err(ConfigError::key(
                "argon2_memory_kib",
                "must be at least 8192 (8 MiB)",
            ));
        }
        if self.argon2_iterations == 0 {
            return Err(ConfigError::key("argon2_iterations", "must be at least 1"));
        }
        if !(1..=1_000_000).contains(&self.plugin_audit_queue) {
            return Err(ConfigError::key(
                "plugin_audit_queue",
                "must be between 1 and 1000000",
            ));
        }
        if self.plugin_audit_retention.is_zero() {
            return Err(ConfigError::key(
                "plugin_audit_retention",
                "must be longer than 0s",
            ));
        }
        if self.plugin_module_max_bytes < 1024 {
            return Err(ConfigError::key(
                "plugin_module_max_bytes",
                "must be at least 1 KiB",
            ));
        }
        if self.password_hash_threads > 1024 {
            return Err(ConfigError::key(
                "password_hash_threads",
                "must be at most 1024 (0 means one per core)",
            ));
        }
        // The queue's slots are allocated up front.
        if !(1..=65536).contains(&self.password_hash_queue) {
            return Err(ConfigError::key(
                "password_hash_queue",
                "must be between 1 and 65536",
            ));
        }
        if !(self.chat_rate_per_second.is_finite() && self.chat_rate_per_second > 0.0) {
            return Err(ConfigError::key(
                "chat_rate_per_second",
                "must be a number above zero",
            ));
        }
        if self.chat_rate_burst == 0 {
            return Err(ConfigError::key("chat_rate_burst", "must be at least 1"));
        }
        if !(self.signal_rate_per_second.is_finite() && self.signal_rate_per_second > 0.0) {
            return Err(ConfigError::key(
                "signal_rate_per_second",
                "must be a number above zero",
            ));
        }
        if self.signal_rate_burst == 0 {
            return Err(ConfigError::key("signal_rate_burst", "must be at least 1"));
        }
        if self.presence_batch_interval.is_zero()
            || self.presence_batch_interval > Duration::from_secs(1)
        {
            return Err(ConfigError::key(
                "presence_batch_interval",
                "must be longer than zero and at most 1s (the contract's bound)",
            ));
        }
        for (key, value) in [
            ("socket_ping_interval", self.socket_ping_interval),
            ("socket_ping_timeout", self.socket_ping_timeout),
            ("upload_idle_timeout", self.upload_idle_timeout),
            ("http_request_timeout", self.http_request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::key(key, "must be longer than zero"));
            }
        }
        if self.http_header_timeout.is_zero() {
            return Err(ConfigError::key(
                "http_header_timeout",
                "must be longer than zero",
            ));
        }
        for (key, value) in [
            ("socket_max_per_user", self.socket_max_per_user),
            ("socket_max_per_address", self.socket_max_per_address),
            ("socket_event_burst", self.socket_event_burst),
        ] {
            if value == 0 {
                return Err(ConfigError::key(key, "must be at least 1"));
            }
        }
        if !(self.socket_event_rate_per_second.is_finite()
            && self.socket_event_rate_per_second > 0.0)
        {
            return Err(ConfigError::key(
                "socket_event_rate_per_second",
                "must be a number above zero",
            ));
        }
        if self.socket_send_buffer < 16 {
            return Err(ConfigError::key(
                "socket_send_buffer",
                "must be at least 16",
            ));
        }
        for (key, value) in [
            ("signal_max_sdp_bytes", self.signal_max_sdp_bytes),
            (
                "signal_max_candidate_bytes",
                self.signal_max_candidate_bytes,
            ),
        ] {
            if value < 256 || value > self.max_json_body {
                return Err(ConfigError::key(
                    key,
                    "must be at least 256 bytes and at most max_json_body",
                ));
            }
        }
        if self.chat_write_queue == 0 {
            return Err(ConfigError::key("chat_write_queue", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.chat_write_batch) {
            return Err(ConfigError::key(
                "chat_write_batch",
                "must be between 1 and 10000",
            ));
        }
        if self.chat_write_max_wait.is_zero() {
            return Err(ConfigError::key(
                "chat_write_max_wait",
                "must be longer than zero",
            ));
        }
        if self.chat_max_message_chars == 0 {
            return Err(ConfigError::key(
                "chat_max_message_chars",
                "must be at least 1",
            ));
        }
        if self.max_json_body < 1024 {
            return Err(ConfigError::key("max_json_body", "must be at least 1 KiB"));
        }
        for url in &self.stun_urls {
            if !(url.starts_with("stun:") || url.starts_with("stuns:")) {
                return Err(ConfigError::key(
                    "stun_urls",
                    format!("`{url}` is not a stun: or stuns: URL"),
                ));
            }
        }
        for url in &self.turn_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:")) {
                return Err(ConfigError::key(
                    "turn_urls",
                    format!("`{url}` is not a turn: or turns: URL"),
                ));
            }
        }
        for origin in &self.cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::key(
                    "cors_origins",
                    format!("`{origin}` is not an http(s) origin or `*`"),
                ));
            }
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("lyceum.db").display()
            ),
        }
    }

    /// Where uploaded plugin modules are kept, named by their SHA-256.
    pub fn plugin_modules_dir(&self) -> PathBuf {
        self.data_dir.join("plugins").join("modules")
    }

    pub fn effective_plugin_cache_dir(&self) -> PathBuf {
        self.plugin_cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugin-cache"))
    }

    /// The configuration as `lyceum config` prints it: TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(Secret(mask_url(&self.effective_database_url())));
        shown.redis_url = self
            .redis_url
            .as_ref()
            .map(|u| Secret(mask_url(u.expose())));
        shown.jwt_secret = self.jwt_secret.as_ref().map(|_| Secret("********".into()));
        for retired in &mut shown.jwt_retired_secrets {
            *retired = Secret("********".into());
        }
        shown.turn_secret = self.turn_secret.as_ref().map(|_| Secret("********".into()));
        let mut text = toml_string(&shown);
        if self.jwt_secret.is_none() {
            text.push_str("# jwt_secret: generated, kept in <data_dir>/jwt_secret\n");
        }
        text
    }
}

fn toml_string(config: &Config) -> String {
    // figment's toml dependency serialises; route through serde_json to keep key order stable.
    let value = serde_json::to_value(config).expect("config serialises");
    let mut out = String::new();
    if let serde_json::Value::Object(map) = value {
        for key in KEYS {
            match map.get(*key) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => out.push_str(&format!("{key} = {v}\n")),
            }
        }
    }
    out
}

/// Hides the password part of `scheme://user:password@host/...`.
pub fn mask_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:********@{host}");
    }
    url.to_owned()
}

fn describe_figment_error(error: figment::Error) -> ConfigError {
    let key = error.path.first().cloned();
    let message = error.kind.to_string();
    let source = error
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_else(|| "configuration".into());
    match key {
        Some(key) => {
            let static_key = KEYS.iter().find(|k| **k == key);
            match static_key {
                Some(k) => ConfigError::Key {
                    key: k,
                    env: k.to_ascii_uppercase(),
                    message: format!("{message} (from {source})"),
                },
                None => ConfigError::Invalid(format!("key `{key}`: {message} (from {source})")),
            }
        }
        None => ConfigError::Invalid(format!("{message} (from {source})")),
    }
}

/// A string that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// Durations as `"15m"`, `"30d"`, `"500ms"` or a bare number of seconds.
mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a duration such as 15m or 30d ({e})"
                ))
            }),
        }
    }
}

/// Byte sizes as `"50MiB"`, `"2GiB"`, `"512KB"` or a bare number of bytes.
mod size {
    use super::*;

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(b),
            Raw::Text(t) => parse_size(&t).ok_or_else(|| {
                serde::de::Error::custom(format!("`{t}` is not a size such as 50MiB or 1048576"))
            }),
        }
    }
}

pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A [`list`] of secrets.
fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    Ok(list(d)?.into_iter().map(Secret).collect())
}

/// A list from TOML arrays or from a comma-separated environment variable.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_a_known_key() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        for field in &fields {
            assert!(KEYS.contains(&field.as_str()), "{field} missing from KEYS");
        }
        assert_eq!(fields.len(), KEYS.len());
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("50MiB"), Some(50 * MIB));
        assert_eq!(parse_size("2 GiB"), Some(2 * 1024 * MIB));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn retired_jwt_secrets_are_a_list_of_full_length_masked_secrets() {
        let long = "r".repeat(32);
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::default(
                "jwt_retired_secrets",
                format!("{long}, {}", "s".repeat(40)),
            ))
            .extract()
            .unwrap();
        assert_eq!(config.jwt_retired_secrets.len(), 2);
        assert!(config.validate().is_ok());
        let shown = config.to_masked_toml();
        assert!(!shown.contains(&long), "{shown}");

        let short = Config {
            jwt_retired_secrets: vec![Secret::new(long), Secret::new("x".repeat(31))],
            ..Config::default()
        };
        let error = short.validate().unwrap_err().to_string();
        assert!(error.contains("jwt_retired_secrets"), "{error}");
    }

    #[test]
    fn masks_passwords_in_urls() {
        assert_eq!(
            mask_url("postgres://app:hunter2@db:5432/lyceum"),
            "postgres://app:********@db:5432/lyceum"
        );
        assert_eq!(
            mask_url("sqlite://data/lyceum.db"),
            "sqlite://data/lyceum.db"
        );
    }
}
