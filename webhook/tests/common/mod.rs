//! Shared set-up for the receiver's tests: databases (a store test is one case per
//! [`Backend`]: SQLite, and PostgreSQL at `DATABASE_URL` or 127.0.0.1:5432), configuration, an
//! in-process server on a free port.

#![allow(dead_code)]

pub mod app;
pub mod fleet;
pub mod promotion;
pub mod release;

use module_webhook::{
    app::App,
    config::{
        ApiConfig, ApiToken, Config, HooksConfig, IngestConfig, ModulePolicy, RegistryConfig, Role,
    },
};
use std::path::{Path, PathBuf};

pub const GITEA_SECRET: &str = "fixture-webhook-secret";
pub const DIST_TOKEN: &str = "s3cr3t-token-0123456789";
pub const HARBOR_AUTH: &str = "Basic aGFyYm9yOmhvb2s=";
pub const READ_TOKEN: &str = "read-token-0123456789";
pub const OPS_TOKEN: &str = "ops-token-0123456789";

pub fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

pub fn headers(name: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&data(name)).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// A database for one test: a SQLite file in a temporary directory, or a fresh PostgreSQL
/// database (`mw_test_*`) that is dropped with it.
pub struct TestDb {
    pub url: String,
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
    /// (server URL, database) of a PostgreSQL database to drop.
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, db)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            })
        })
        .join();
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    TestDb {
        url: format!(
            "sqlite://{}",
            dir.path().join("db/module-webhook.db").display()
        ),
        name: "sqlite",
        _dir: Some(dir),
        pg: None,
    }
}

/// A fresh database on the PostgreSQL server at `base` (a `postgres://` URL).
pub async fn postgres_in(base: &str) -> TestDb {
    let base = base.to_owned();
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} does not answer ({e}); the store tests need one: set DATABASE_URL (CI does), or run one there")
        });
    let db = format!("mw_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await
        .unwrap();
    let url = match base.rsplit_once('/') {
        Some((head, _)) if head.contains("://") && head.len() > "postgres://".len() => {
            format!("{head}/{db}")
        }
        _ => format!("{base}/{db}"),
    };
    TestDb {
        url,
        name: "postgres",
        _dir: None,
        pg: Some((base, db)),
    }
}

/// The stores every store test runs on, as one test case each (`#[values(Backend::Sqlite,
/// Backend::Postgres)]` with rstest): a failure names the store in the test's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The server at `DATABASE_URL`, or the machine's own at 127.0.0.1:5432 (CI sets it); a
    /// missing server fails the case, saying so.
    Postgres,
}

impl Backend {
    /// A fresh, empty database of this kind.
    pub async fn db(self) -> TestDb {
        match self {
            Backend::Sqlite => sqlite().await,
            Backend::Postgres => {
                let base = std::env::var("DATABASE_URL")
                    .ok()
                    .filter(|u| u.starts_with("postgres"))
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
                postgres_in(&base).await
            }
        }
    }
}

pub fn config(db: &str, registry_host: &str, modules: Vec<ModulePolicy>) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        database_url: db.into(),
        registry: RegistryConfig {
            url: format!("http://{registry_host}"),
            repositories: vec!["acct/modules/*".into(), "acme/*".into()],
            username: None,
            password: None,
            insecure: false,
        },
        hooks: HooksConfig {
            distribution_token: Some(DIST_TOKEN.into()),
            gitea_secrets: vec!["previous-secret-0123".into(), GITEA_SECRET.into()],
            harbor_auth: Some(HARBOR_AUTH.into()),
            body_limit: 64 << 10,
        },
        api: ApiConfig {
            tokens: vec![
                ApiToken {
                    name: "reader".into(),
                    token: READ_TOKEN.into(),
                    role: Role::Read,
                },
                ApiToken {
                    name: "ops".into(),
                    token: OPS_TOKEN.into(),
                    role: Role::Operator,
                },
            ],
        },
        modules,
        ingest: IngestConfig {
            backoff_base_ms: 0,
            backoff_cap_ms: 0,
            ..Default::default()
        },
        promotion: Default::default(),
        gitea: None,
        fleet: Default::default(),
        mcp: Default::default(),
        server: Default::default(),
        web: Default::default(),
        data_dir: data_dir(db),
    }
}

/// The receiver's data directory for a test: beside a SQLite database (inside its temporary
/// directory), else one shared directory under the system's (staged blobs are unique files).
fn data_dir(db: &str) -> PathBuf {
    match db.strip_prefix("sqlite://") {
        Some(path) => Path::new(path)
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("data"))
            .unwrap(),
        None => std::env::temp_dir().join("module-webhook-tests"),
    }
}

pub fn key_policy(name: &str, repository: &str, key: PathBuf) -> ModulePolicy {
    ModulePolicy {
        name: name.into(),
        repository: repository.into(),
        keys: vec![key],
        identity_regexp: None,
        issuer_regexp: None,
        trusted_root: None,
        require_tlog: true,
        trust_on_first_use: false.into(),
        gitea_repository: None,
        category: None,
    }
}

/// An app serving on a free loopback port.
pub struct Running {
    pub app: App,
    pub url: String,
    pub http: reqwest::Client,
}

pub async fn serve(cfg: Config) -> Running {
    serve_with_clock(cfg, module_webhook::store::Clock::system()).await
}

/// As [`serve`], going by `clock`.
pub async fn serve_with_clock(cfg: Config, clock: module_webhook::store::Clock) -> Running {
    let app = App::with_clock(cfg, clock).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = module_webhook::app::router(app.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Running {
        app,
        url,
        http: reqwest::Client::new(),
    }
}

impl Running {
    pub async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> (u16, String) {
        let mut r = self.http.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    /// The receiver's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let res = self.http.get(format!("{}/metrics", self.url)).send().await;
        res.unwrap().text().await.unwrap()
    }

    /// The value of the counter `name` (its full exposition name) in `/metrics`.
    pub async fn counter(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }
}

/// How many deliveries the database at `url` has recorded (read with SQL: the receiver
/// itself has no use for the number).
pub async fn deliveries_in(url: &str) -> i64 {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let url = match url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite://{path}?mode=ro"),
        None => url.to_owned(),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    pool.close().await;
    n
}

/// Whether any job is queued or running.
pub async fn has_pending_jobs(store: &module_webhook::store::Store) -> bool {
    store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .any(|(state, n)| (state == "queued" || state == "running") && *n > 0)
}

impl Running {
    /// Deliveries recorded by this receiver's database.
    pub async fn deliveries(&self) -> i64 {
        deliveries_in(&self.app.state.config.database_url).await
    }
}

pub fn dist_headers() -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {DIST_TOKEN}")),
        (
            "Content-Type".into(),
            "application/vnd.docker.distribution.events.v1+json".into(),
        ),
    ]
}

/// Writes a published version of my-redis (the example manifest) straight into the store,
/// in `state`, with `source_commit`, and returns its id.
pub async fn published(
    r: &Running,
    version: &str,
    state: module_webhook::store::Lifecycle,
    digest_byte: &str,
    source_commit: &str,
) -> module_webhook::store::VersionId {
    published_in(
        &r.app.state.store,
        version,
        state,
        digest_byte,
        source_commit,
    )
    .await
}

/// As [`published`], into any store (another replica's, a child process's database).
pub async fn published_in(
    store: &module_webhook::store::Store,
    version: &str,
    state: module_webhook::store::Lifecycle,
    digest_byte: &str,
    source_commit: &str,
) -> module_webhook::store::VersionId {
    published_module_in(
        store,
        "my-redis",
        "acct/modules/my-redis-module",
        version,
        state,
        digest_byte,
        Some(source_commit),
    )
    .await
}

/// As [`published_in`], as module `module` of `repository` (with my-redis's manifest: a
/// second module promoted from the same pull request), built from `source_commit` if known.
pub async fn published_module_in(
    store: &module_webhook::store::Store,
    module: &str,
    repository: &str,
    version: &str,
    state: module_webhook::store::Lifecycle,
    digest_byte: &str,
    source_commit: Option<&str>,
) -> module_webhook::store::VersionId {
    use module_webhook::store::{NewAudit, VersionRow, now_ms};
    let manifest =
        std::fs::read_to_string(powernode_testkit::example("my-redis").join("manifest.yaml"))
            .unwrap();
    let id = format!("v-{module}-{version}");
    let v = VersionRow {
        id: id.clone().into(),
        module: module.parse().unwrap(),
        version: version.parse().unwrap(),
        lifecycle: state,
        repository: repository.into(),
        tag: format!("v{version}"),
        manifest_digest: format!("sha256:{}", digest_byte.repeat(32))
            .parse()
            .unwrap(),
        artifact_digest: None,
        composefs_digest: None,
        composefs_format: Some(1),
        source_repository: None,
        source_commit: source_commit.map(str::to_owned),
        signer_identity: None,
        signer_issuer: None,
        file_index: None,
        manifest: Some(manifest),
        reject_reason: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    };
    let a = NewAudit {
        version_id: Some(id.clone().into()),
        template_id: None,
        module: Some(module.into()),
        actor: "test".into(),
        via: module_webhook::store::Via::Ingest,
        action: module_webhook::store::AuditAction::Ingested,
        from_state: None,
        to_state: Some(state),
        reason: None,
        evidence: serde_json::json!({}),
    };
    assert!(store.write_version(&v, &a).await.unwrap());
    id.into()
}

/// A Distribution notification envelope with one push event (`tag` of `repo` at `digest`).
pub fn dist_envelope(id: &str, repo: &str, tag: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"events": [{
        "id": id, "timestamp": "2026-11-26T00:00:00Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": digest,
                   "length": 1, "repository": repo, "url": "http://x", "tag": tag},
        "request": {"id": "r", "addr": "a", "host": "h", "method": "PUT", "useragent": "t"},
        "actor": {}, "source": {"addr": "x", "instanceID": "i"}
    }]}))
    .unwrap()
}

/// `BIN serve --config CONFIG` as a child process, logging to `log` (appended across
/// restarts). `BIN` is the test's `env!("CARGO_BIN_EXE_module-webhook")`, which only the
/// receiver's own tests have.
pub fn spawn_receiver(bin: &str, config: &Path, log: &Path) -> std::process::Child {
    spawn_receiver_with(bin, config, log, &[])
}

/// Whether the receiver at `url` answers `GET /readyz` within 15 s (a spawned receiver
/// migrates and binds first). Callers say what failed, with its log.
pub async fn ready(url: &str) -> bool {
    let c = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = c.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// [`spawn_receiver`] with more environment variables (e.g. a fault point to stall at).
pub fn spawn_receiver_with(
    bin: &str,
    config: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        ))
        .spawn()
        .unwrap()
}
