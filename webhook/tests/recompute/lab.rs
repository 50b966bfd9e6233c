//! The recomputation tests' scene: the example modules (and `motd`, reaching nothing),
//! a receiver configured for them, and child replicas on one PostgreSQL with the calls an
//! operator sends them.

use crate::common::{fleet::*, release::*, *};
use module_webhook::store::Store;
use powernode_testkit::registry::{TestRegistry, free_port};
use serde_json::json;
use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

pub const MODULES: [&str; 4] = ["system-base", "security-hardening", "my-redis", "motd"];

/// A module of its own, reaching nothing else.
pub fn motd() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("rootfs/etc")).unwrap();
    fs::write(
        t.path().join("manifest.yaml"),
        "schema_version: 1\nidentity:\n  name: motd\n  category: userland\n  variety: subscription\n  description: The message of the day\nfile_spec:\n  include: [\"/etc/motd\"]\ndependency_spec: []\n",
    )
    .unwrap();
    fs::write(t.path().join("rootfs/etc/motd"), "welcome\n").unwrap();
    t
}

pub fn source(name: &str) -> tempfile::TempDir {
    if name == "motd" { motd() } else { module(name) }
}

pub fn cfg_for(db: &str, reg: &TestRegistry, k: &Keys) -> module_webhook::config::Config {
    let policies = MODULES
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(db, &reg.host, policies);
    cfg.promotion.live = module_webhook::lifecycle::StagePolicy::default();
    cfg
}

pub fn version_of(doc: &serde_json::Value, module: &str) -> Option<String> {
    doc["modules"]
        .as_array()?
        .iter()
        .find_map(|m| (m["name"] == module).then(|| m["version"].as_str().unwrap().to_owned()))
}

pub async fn pg() -> TestDb {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    postgres_in(&base).await
}

/// A child replica: its URL, configuration and log.
pub struct Replica {
    child: Option<Child>,
    pub url: String,
    config: std::path::PathBuf,
    pub log: std::path::PathBuf,
}

impl Replica {
    pub async fn start(
        dir: &Path,
        name: &str,
        cfg: &module_webhook::config::Config,
        env: &[(&str, &str)],
    ) -> Replica {
        let port = free_port();
        let mut cfg = cfg.clone();
        cfg.listen = format!("127.0.0.1:{port}");
        let config = dir.join(format!("{name}.toml"));
        fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut r = Replica {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            config,
            log,
        };
        r.restart(env).await;
        r
    }

    pub async fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.child = Some(spawn_receiver_with(
            env!("CARGO_BIN_EXE_module-webhook"),
            &self.config,
            &self.log,
            env,
        ));
        assert!(
            ready(&self.url).await,
            "replica {} not ready:\n{}",
            self.url,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One operator call to a replica; the answer's status (0: no answer, e.g. killed).
pub async fn call_replica(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> u16 {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let mut req = c
        .request(method, format!("{url}/api/v1{path}"))
        .bearer_auth(OPS_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.map_or(0, |r| r.status().as_u16())
}

pub fn assign(url: &str, t: &str, m: &str) -> tokio::task::JoinHandle<u16> {
    let (url, path) = (url.to_owned(), format!("/templates/{t}/assignments"));
    let body = json!({"module_name": m});
    tokio::spawn(async move { call_replica(&url, reqwest::Method::POST, &path, Some(body)).await })
}

pub fn unassign(url: &str, t: &str, m: &str) -> tokio::task::JoinHandle<u16> {
    let (url, path) = (url.to_owned(), format!("/templates/{t}/assignments/{m}"));
    tokio::spawn(async move { call_replica(&url, reqwest::Method::DELETE, &path, None).await })
}

pub fn promote(url: &str, id: &str) -> tokio::task::JoinHandle<u16> {
    let (url, path) = (url.to_owned(), format!("/versions/{id}/promote"));
    tokio::spawn(async move {
        call_replica(
            &url,
            reqwest::Method::POST,
            &path,
            Some(json!({"to": "live"})),
        )
        .await
    })
}

pub async fn all_ok(calls: Vec<tokio::task::JoinHandle<u16>>) {
    for c in calls {
        let s = c.await.unwrap();
        assert!(s == 200 || s == 204, "a call answered {s}");
    }
}

/// One served state as the poller saw it: sequence, state id, module → version.
pub type Seen = (i64, String, BTreeMap<String, String>);

/// Every state each template served, as committed, polled until `stop`.
pub fn poll_served(
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, Vec<Seen>>> {
    tokio::spawn(async move {
        use sqlx::Row;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let mut seen: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        while !stop.load(Ordering::SeqCst) {
            for r in
                sqlx::query("SELECT template_id, sequence, state_id, document FROM desired_states")
                    .fetch_all(&pool)
                    .await
                    .unwrap()
            {
                let v = seen.entry(r.get("template_id")).or_default();
                let (seq, id) = (r.get::<i64, _>("sequence"), r.get::<String, _>("state_id"));
                if v.last().is_some_and(|l| (l.0, &l.1) == (seq, &id)) {
                    continue;
                }
                let doc: serde_json::Value =
                    serde_json::from_str(&r.get::<String, _>("document")).unwrap();
                let versions = doc["modules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        let f = |k: &str| m[k].as_str().unwrap().to_owned();
                        (f("name"), f("version"))
                    })
                    .collect();
                v.push((seq, id, versions));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        pool.close().await;
        seen
    })
}

/// Template recomputation locks held now (advisory class "pnds", `store/template_locks.rs`).
pub async fn recompute_locks(url: &str) -> i64 {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = 1886282867 AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut c)
    .await
    .unwrap()
    .get(0)
}

pub async fn settled(store: &Store, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while has_pending_jobs(store).await {
        assert!(
            Instant::now() < deadline,
            "jobs never finished:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
