//! The black-box test harness: starts the real server on 127.0.0.1:0 against SQLite or a
//! private PostgreSQL schema, and talks to it over HTTP and Socket.IO like any client.
//!
//! Every API test is written once and run on each backend with [`backend_tests!`]; the
//! PostgreSQL variant runs when `LYCEUM_TEST_DATABASE_URL` is set and says it skipped otherwise.

pub mod chat;
pub mod check;
pub mod files;
pub mod http;
pub mod paging;
pub mod proxy;
pub mod socket;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use lyceum::{
    config::{Config, Secret},
    store::Store,
};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub use crate::http::{Client, Reply};

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-keys";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for tests, if the environment provides one.
pub fn postgres_url() -> Option<String> {
    std::env::var("LYCEUM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// True (after saying so) when a PostgreSQL test has to skip.
pub fn skip_without_postgres(test: &str) -> bool {
    if postgres_url().is_none() {
        eprintln!("skipped {test}: LYCEUM_TEST_DATABASE_URL is not set");
        return true;
    }
    false
}

/// Runs each listed test against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::skip_without_postgres(concat!(module_path!(), "::", stringify!($name))) {
                        return;
                    }
                    super::$name($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running server with its own data dir and database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    pub backend: Backend,
    dir: tempdir::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pg_schema: Option<String>,
    loading: Option<lyceum::PluginsLoading>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration, and waits until its
    /// policy plugins are loaded, so that every slot enforces its chain from the first request.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut server = Self::start_loading(backend, adjust).await;
        server.plugins_loaded().await;
        server
    }

    /// [`TestServer::start_with`], keeping a small database pool on PostgreSQL (see
    /// [`small_pool`]): for test binaries that start many servers.
    pub async fn start_small(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(backend, |config| {
            small_pool(backend, config);
            adjust(config);
        })
        .await
    }

    /// Waits until the start-up load of the policy plugins is over; panics if it failed.
    pub async fn plugins_loaded(&mut self) {
        if let Some(loading) = self.loading.take() {
            loading.finished().await.expect("policy plugins load");
        }
    }

    /// Whether the start-up load of the policy plugins is still running.
    pub fn plugins_still_loading(&self) -> bool {
        self.loading
            .as_ref()
            .is_some_and(|loading| !loading.is_finished())
    }

    /// Starts a server without waiting for its policy plugins, which load beside it.
    pub async fn start_loading(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempdir::TempDir::new();
        let mut config = base_config(dir.path());
        let mut pg_schema = None;
        if backend == Backend::Postgres {
            let base = postgres_url().expect("LYCEUM_TEST_DATABASE_URL");
            let schema = create_schema(&base).await;
            config.database_url = Some(Secret::new(with_search_path(&base, &schema)));
            pg_schema = Some(schema);
        }
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let app = lyceum::build(config.clone()).await.expect("server builds");
        let loading = app.plugins_loading();
        let task = tokio::spawn(lyceum::run(app, listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            config,
            backend,
            dir,
            shutdown: Some(tx),
            task: Some(task),
            pg_schema,
            loading: Some(loading),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Stops the server and starts a new one on the same configuration, data dir and
    /// database, as an operator's restart would: what it remembers must come from disk. It
    /// listens on a new port (`addr` changes).
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let app = lyceum::build(self.config.clone())
            .await
            .expect("server builds again");
        let loading = app.plugins_loading();
        self.task = Some(tokio::spawn(lyceum::run(app, listener, async move {
            let _ = rx.await;
        })));
        self.shutdown = Some(tx);
        loading.finished().await.expect("policy plugins load again");
    }

    /// Registers a user and returns `(user, accessToken, refreshToken)`.
    pub async fn register(&self, role: &str) -> Account {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let email = format!("{role}{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        let reply = self
            .client()
            .post("/api/v1/auth/register", json!({"email": email, "password": "correct horse battery", "name": format!("{role} {n}"), "role": role}))
            .await;
        assert_eq!(reply.status, 201, "register: {}", reply.body);
        Account::from_session(&reply.data(), "correct horse battery")
    }

    /// Makes an admin through the same service the `lyceum user create` command uses.
    pub async fn admin(&self) -> Account {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        lyceum::accounts(&self.config)
            .await
            .expect("a second handle on the database")
            .create_user(
                &email,
                "correct horse battery",
                "Admin",
                lyceum::domain::Role::Admin,
            )
            .await
            .expect("admin created");
        let reply = self
            .client()
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(reply.status, 200, "admin login: {}", reply.body);
        Account::from_session(&reply.data(), "correct horse battery")
    }

    /// An instructor with a course, and that course.
    pub async fn course(&self) -> (Account, Value) {
        let teacher = self.register("instructor").await;
        let reply = self
            .client()
            .bearer(&teacher.token)
            .post(
                "/api/v1/courses",
                json!({"title": "Distributed Systems", "description": "Consensus and clocks"}),
            )
            .await;
        assert_eq!(reply.status, 201, "create course: {}", reply.body);
        (teacher, reply.data())
    }

    /// Enrolls `who` in `course` as themselves.
    pub async fn enroll(&self, who: &Account, course: &Value) {
        let reply = self
            .client()
            .bearer(&who.token)
            .post(
                &format!(
                    "/api/v1/courses/{}/enrollments",
                    course["id"].as_str().unwrap()
                ),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 201, "enroll: {}", reply.body);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(schema) = self.pg_schema.take() {
            drop_schema(schema);
        }
    }
}

/// A migrated store of its own on one backend, for tests of the persistence layer itself:
/// the services' view of the database without a server in front.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub url: String,
    _dir: tempdir::TempDir,
    pg_schema: Option<String>,
}

impl TestStore {
    pub async fn open(backend: Backend) -> TestStore {
        let dir = tempdir::TempDir::new();
        let (url, pg_schema) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("lyceum.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let base = postgres_url().expect("LYCEUM_TEST_DATABASE_URL");
                let schema = create_schema(&base).await;
                (with_search_path(&base, &schema), Some(schema))
            }
        };
        let store = lyceum::store::connect(&url, 8)
            .await
            .expect("store connects and migrates");
        TestStore {
            store,
            url,
            _dir: dir,
            pg_schema,
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(schema) = self.pg_schema.take() {
            drop_schema(schema);
        }
    }
}

/// Drops a test's PostgreSQL schema. Drop runs outside async context guarantees: a scoped
/// thread with its own runtime.
fn drop_schema(schema: String) {
    let base = postgres_url().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&pool)
                    .await;
            }
        });
    })
    .join()
    .ok();
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password: String,
    pub token: String,
    pub refresh: String,
}

impl Account {
    pub fn from_session(data: &Value, password: &str) -> Account {
        Account {
            id: data["user"]["id"].as_str().unwrap().to_owned(),
            email: data["user"]["email"].as_str().unwrap().to_owned(),
            name: data["user"]["name"].as_str().unwrap().to_owned(),
            password: password.to_owned(),
            token: data["accessToken"].as_str().unwrap().to_owned(),
            refresh: data["refreshToken"].as_str().unwrap().to_owned(),
        }
    }
}

/// Keeps the database pool small on PostgreSQL. A stopped server's pool is never dropped (the
/// chat service and the Socket.IO state hold each other), so its idle connections stay open
/// until the test process exits, and on PostgreSQL they all count against one
/// `max_connections`.
pub fn small_pool(backend: Backend, config: &mut Config) {
    if backend == Backend::Postgres {
        config.db_max_connections = 3;
    }
}

/// Writes `text` as the `plugins.toml` of the server `config` is for (into its own temp dir)
/// and points the configuration at it.
pub fn write_plugins_toml(config: &mut Config, text: &str) {
    let path = config
        .data_dir
        .parent()
        .expect("the server's temp dir")
        .join("plugins.toml");
    std::fs::write(&path, text).expect("plugins.toml written");
    config.plugins_config = path;
}

/// A configuration for one test: its own temp dirs, fixed secret, fast password hashing.
pub fn base_config(dir: &Path) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        upload_dir: dir.join("uploads"),
        jwt_secret: Some(Secret::new(JWT_SECRET)),
        argon2_memory_kib: 8 * 1024,
        argon2_iterations: 1,
        db_max_connections: 8,
        shutdown_grace: Duration::from_secs(5),
        // Shared, so the plugins compile once per test run rather than once per server.
        plugin_cache_dir: Some(std::env::temp_dir().join("lyceum-test-plugin-cache")),
        ..Config::default()
    }
}

async fn create_schema(base: &str) -> String {
    let pool = sqlx::PgPool::connect(base).await.unwrap_or_else(|e| {
        panic!("LYCEUM_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}")
    });
    let schema = format!("lyceum_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    schema
}

fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// A temporary directory removed on drop (kept small on purpose: no extra dependency).
pub mod tempdir {
    use super::*;

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            let path =
                std::env::temp_dir().join(format!("lyceum-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Default for TempDir {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
