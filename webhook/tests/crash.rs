//! Kill the receiver (SIGKILL), or the registry, in the middle of an ingest; after a restart the
//! version is ingested exactly once and nothing partial is left behind.

mod common;
use common::*;
use module_webhook::store::{Lifecycle, Store};
use powernode_testkit::{
    copy_tree, example, module_builder,
    registry::{TestRegistry, free_port},
};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const REPO: &str = "acct/modules/my-redis-module";

async fn wait_ready(url: &str) {
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("module-webhook did not become ready at {url}");
}

/// Releases my-redis 3.0.0 with a 96 MiB file (so an ingest, download and verification,
/// takes a while) and writes a receiver configuration for it. Returns (url, db, config).
fn big_release(dir: &Path, reg: &TestRegistry) -> (String, String, PathBuf) {
    let m = dir.join("module");
    copy_tree(&example("my-redis"), &m);
    let big: Vec<u8> = (0..(96u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::create_dir_all(m.join("rootfs/var/lib/redis")).unwrap();
    fs::write(m.join("rootfs/var/lib/redis/seed.rdb"), &big).unwrap();
    let manifest = fs::read_to_string(m.join("manifest.yaml"))
        .unwrap()
        .replace("\"/var/lib/redis/.gitkeep\"", "\"/var/lib/redis/**\"");
    fs::write(m.join("manifest.yaml"), manifest).unwrap();
    let keys = dir.join("cosign");
    let keygen = Command::new(module_builder())
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(&keys)
        .env("COSIGN_PASSWORD", "pw")
        .status()
        .unwrap();
    assert!(keygen.success());
    let rel = Command::new(module_builder())
        .arg("release")
        .arg(&m)
        .args(["--ref", &reg.repo(REPO), "--version", "3.0.0", "--key"])
        .arg(dir.join("cosign.key"))
        .env("COSIGN_PASSWORD", "pw")
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        rel.status.success(),
        "{}",
        String::from_utf8_lossy(&rel.stderr)
    );

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = format!("sqlite://{}", dir.join("state/db.sqlite").display());
    let config = dir.join("module-webhook.toml");
    fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
database_url = "{db}"
data_dir = "{data}"
[registry]
url = "http://{host}"
repositories = ["acct/modules/*"]
[hooks]
distribution_token = "{DIST_TOKEN}"
[ingest]
workers = 1
max_attempts = 5
backoff_base_ms = 100
backoff_cap_ms = 1000
signature_timeout_secs = 3600
reconcile_interval_secs = 3600
lease_secs = 120
max_artifact_bytes = 1073741824
[[modules]]
name = "my-redis"
repository = "{REPO}"
keys = ["{key}"]
"#,
            host = reg.host,
            key = dir.join("cosign.pub").display(),
            data = dir.join("state").display(),
        ),
    )
    .unwrap();
    (url, db, config)
}

/// Starts the receiver on `config` and waits until its ingest job runs (the first start's
/// reconcile pass may pick the tag up; either way a job runs). Returns the child, the store
/// and the log path.
async fn start_ingesting(
    dir: &Path,
    url: &str,
    db: &str,
    config: &Path,
) -> (std::process::Child, Store, PathBuf) {
    let log = dir.join("webhook.log");
    let child = spawn_receiver(env!("CARGO_BIN_EXE_module-webhook"), config, &log);
    wait_ready(url).await;
    let store = Store::connect(db).await.unwrap();
    wait_running(&store, &log).await;
    (child, store, log)
}

/// The fault (`what`) landed mid-ingest: my-redis 3.0.0 is not a draft yet.
async fn assert_not_yet_draft(store: &Store, what: &str) {
    let v = store.version("my-redis", "3.0.0").await.unwrap();
    assert!(
        v.is_none_or(|v| v.lifecycle != Lifecycle::Draft),
        "{what} did not land mid-ingest (already a draft); make the artifact larger"
    );
}

/// Waits until an ingest job is running (the receiver is downloading or verifying).
async fn wait_running(store: &Store, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.job_counts().await.unwrap();
        if counts.iter().any(|(s, n)| s == "running" && *n > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no job started: {counts:?}\n{}",
            fs::read_to_string(log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until my-redis 3.0.0 is a draft.
async fn wait_draft(store: &Store, log: &Path) -> module_webhook::store::VersionRow {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = store.version("my-redis", "3.0.0").await.unwrap()
            && v.lifecycle == Lifecycle::Draft
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "not ingested:\n{}",
            fs::read_to_string(log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Exactly one `ingested` audit row for `v`, one version, nothing left queued, nothing
/// dead-lettered, nothing left in the staging directory.
async fn assert_ingested_once(store: &Store, v: &module_webhook::store::VersionRow, dir: &Path) {
    let audit = store.audit_of(&v.id).await.unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.action == "ingested").count(),
        1,
        "{audit:?}"
    );
    assert_eq!(store.versions_of("my-redis", None).await.unwrap().len(), 1);
    assert!(
        !has_pending_jobs(store).await,
        "{:?}",
        store.job_counts().await.unwrap()
    );
    assert!(store.dead_letters().await.unwrap().is_empty());
    let staged: Vec<_> = fs::read_dir(dir.join("state/staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "partial blobs left behind: {staged:?}");
}

/// The registry dies while the receiver streams the 96 MiB blob and comes back a moment
/// later: the ingest fails transiently, retries with backoff, and ingests exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn registry_stopped_mid_blob_then_restarted_ingests_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start();
    let (url, db, config) = big_release(dir.path(), &reg);
    let (mut child, store, log) = start_ingesting(dir.path(), &url, &db, &config).await;
    reg.stop();
    assert_not_yet_draft(&store, "the outage").await;
    // Down for longer than the first backoffs: at least one attempt fails.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reg.restart();
    let v = wait_draft(&store, &log).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("retry") || logged.contains("transient"),
        "the outage was seen and retried:\n{logged}"
    );
    assert_ingested_once(&store, &v, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_ingest_then_restart_ingests_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let (url, db, config) = big_release(dir.path(), &reg);
    let (mut child, store, log) = start_ingesting(dir.path(), &url, &db, &config).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_not_yet_draft(&store, "the kill").await;

    let mut child = spawn_receiver(env!("CARGO_BIN_EXE_module-webhook"), &config, &log);
    wait_ready(&url).await;
    let v = wait_draft(&store, &log).await;
    // Let any duplicate work finish, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ingested_once(&store, &v, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_cleanly_and_keeps_queued_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{db}\"\ndata_dir = \"{data}\"\n[registry]\nurl = \"http://127.0.0.1:9\"\nrepositories = [\"acme/*\"]\n[hooks]\ndistribution_token = \"{DIST_TOKEN}\"\n",
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = spawn_receiver(env!("CARGO_BIN_EXE_module-webhook"), &config, &log);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url).await;
    let res = reqwest::Client::new()
        .post(format!("{url}/hooks/distribution"))
        .header("Authorization", format!("Bearer {DIST_TOKEN}"))
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(data("push-manifest-tagged.envelope.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.success(),
        "{status:?}\n{}",
        fs::read_to_string(&log).unwrap()
    );
    // Nothing was lost: the delivery is recorded and its job is not half-done.
    let store = Store::connect(&db).await.unwrap();
    assert_eq!(deliveries_in(&db).await, 1);
    let counts = store.job_counts().await.unwrap();
    assert!(
        !counts.iter().any(|(s, n)| s == "running" && *n > 0),
        "{counts:?}"
    );
}
