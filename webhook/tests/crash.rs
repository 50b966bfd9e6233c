//! Kill the receiver (SIGKILL), or the registry, in the middle of an ingest; after a restart the
//! version is ingested exactly once and nothing partial is left behind.

mod common;
use common::*;
use module_webhook::{
    ingest::staging::staged_files,
    store::{Lifecycle, Store},
};
use powernode_testkit::{
    copy_tree, example, module_builder,
    proxy::FaultProxy,
    registry::{TestRegistry, free_port},
    running_as_root,
};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const REPO: &str = "acct/modules/my-redis-module";

async fn wait_ready(url: &str) {
    assert!(
        ready(url).await,
        "module-webhook did not become ready at {url}"
    );
}

/// Releases my-redis 3.0.0 with a 96 MiB file (so an ingest, download and verification,
/// takes a while) and writes a receiver configuration for it. Returns (url, db, config).
fn big_release(dir: &Path, reg: &TestRegistry) -> (String, String, PathBuf) {
    big_release_via(dir, reg, &reg.host)
}

/// [`big_release`], with the receiver reaching the registry at `host` (a [`FaultProxy`]).
fn big_release_via(dir: &Path, reg: &TestRegistry, host: &str) -> (String, String, PathBuf) {
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
    let staged = staged_files(&dir.join("state/staging"));
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

/// Waits until the proxy has refused `n` requests.
async fn wait_faulted(proxy: &FaultProxy, n: u64, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.faulted() < n {
        assert!(
            Instant::now() < deadline,
            "only {} requests reached the failing registry:\n{}",
            proxy.faulted(),
            fs::read_to_string(log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The registry (behind a proxy) starts answering 503 in the middle of the 96 MiB blob (the
/// open download is cut), keeps answering 503 and then 500 to the retries, and heals: every
/// failure is transient, retried with backoff, and the version is ingested exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn registry_answering_5xx_for_a_while_ingests_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let proxy = FaultProxy::start(&reg.host);
    let (url, db, config) = big_release_via(dir.path(), &reg, &proxy.host);
    // Enough attempts to outlast the faults below (backoff 100 ms doubling to 1 s).
    let c = fs::read_to_string(&config).unwrap();
    fs::write(&config, c.replace("max_attempts = 5", "max_attempts = 30")).unwrap();
    let (mut child, store, log) = start_ingesting(dir.path(), &url, &db, &config).await;
    // Fail from the middle of the blob's download on (some MiB of it written).
    let staging = dir.path().join("state/staging");
    let deadline = Instant::now() + Duration::from_secs(30);
    let written = |p: &PathBuf| fs::metadata(p).map_or(0, |m| m.len());
    while !staged_files(&staging).iter().any(|p| written(p) > 4 << 20) {
        assert!(Instant::now() < deadline, "the blob was never staged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proxy.fail_with(503);
    assert_not_yet_draft(&store, "the 503s").await;
    wait_faulted(&proxy, 2, &log).await;
    proxy.fail_with(500);
    let n = proxy.faulted();
    wait_faulted(&proxy, n + 2, &log).await;
    assert_not_yet_draft(&store, "the 500s").await;
    proxy.heal();
    let v = wait_draft(&store, &log).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = fs::read_to_string(&log).unwrap();
    // Retried with backoff: by the registry client within an attempt, then by the queue.
    let retried = |l: &&str| l.contains("retrying in") || l.contains("will retry");
    for what in ["HTTP 503", "HTTP 500", "downloading blob"] {
        assert!(
            logged.lines().filter(retried).any(|l| l.contains(what)),
            "{what}: not logged as a transient failure:\n{logged}"
        );
    }
    assert!(!logged.contains("dead-lettered"), "{logged}");
    assert_ingested_once(&store, &v, dir.path()).await;
}

/// A size-limited tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        assert!(
            running_as_root(),
            "this test mounts a size-limited tmpfs as the staging directory: run it as root (CI does: .ci/run)"
        );
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t tmpfs failed at {}", at.display());
        Tmpfs(at.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remounting {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The staging directory is a 32 MiB filesystem and the blob 96 MiB: the write fails with
/// ENOSPC, which is transient (retried with backoff, the reason names the staging
/// directory), and no partial blob accumulates; once the filesystem is grown the version is
/// ingested exactly once and nothing is left staged.
#[tokio::test(flavor = "multi_thread")]
async fn staging_directory_full_fails_transiently_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let (url, db, config) = big_release(dir.path(), &reg);
    let c = fs::read_to_string(&config).unwrap();
    fs::write(&config, c.replace("max_attempts = 5", "max_attempts = 30")).unwrap();
    let staging = dir.path().join("state/staging");
    let fs32 = Tmpfs::mount(&staging, "32m");
    let (mut child, store, log) = start_ingesting(dir.path(), &url, &db, &config).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logged = fs::read_to_string(&log).unwrap();
        let full = logged
            .lines()
            .filter(|l| l.contains("will retry") && l.contains("No space left"))
            .count();
        if full >= 3 {
            assert!(
                logged.contains(&format!("staging directory {}", staging.display())),
                "the reason names the staging directory:\n{logged}"
            );
            break;
        }
        assert!(
            !logged.contains("dead-lettered"),
            "a full disk was taken as permanent:\n{logged}"
        );
        assert!(
            Instant::now() < deadline,
            "no ENOSPC retries seen:\n{logged}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Three attempts failed; at most the current attempt's file is there.
    let staged = staged_files(&staging);
    assert!(
        staged.len() <= 1,
        "partial blobs kept in the staging directory: {staged:?}"
    );
    assert_not_yet_draft(&store, "ENOSPC").await;
    fs32.resize("512m");
    let v = wait_draft(&store, &log).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ingested_once(&store, &v, dir.path()).await;
    drop(fs32);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_ingest_then_restart_ingests_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let (url, db, config) = big_release(dir.path(), &reg);
    let (mut child, store, log) = start_ingesting(dir.path(), &url, &db, &config).await;
    // Kill in the middle of the download: a partial blob is on disk.
    let staging = dir.path().join("state/staging");
    let deadline = Instant::now() + Duration::from_secs(30);
    while staged_files(&staging).is_empty() {
        assert!(Instant::now() < deadline, "the blob was never staged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_not_yet_draft(&store, "the kill").await;
    assert_eq!(
        staged_files(&staging).len(),
        1,
        "the killed receiver left its partial blob"
    );

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
