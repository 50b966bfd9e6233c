//! Several `module-webhook serve` processes on one PostgreSQL, as an operator runs them when
//! one receiver is not enough: every push ingested exactly once whichever replica hears of it
//! (duplicated, reordered, one replica SIGKILLed mid-run, the survivor's database
//! connections terminated under load), and one transition when two
//! replicas get a `/promote` for the same version at the same instant.
//!
//! PostgreSQL is required (replicas share nothing else): `DATABASE_URL`, else the local
//! server at 127.0.0.1:5432 these machines run.

mod common;
use common::{promotion::GITEA_REPO, promotion::HEAD, release::*, *};
use module_webhook::store::{Lifecycle, Store};
use powernode_testkit::{
    gitea::FakeGitea,
    registry::{TestRegistry, free_port},
};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

const REPO: &str = "acct/modules/my-redis-module";
const VERSIONS: usize = 200;

/// A fresh database on the PostgreSQL these tests need (`DATABASE_URL`, else the local
/// server); fails loudly without one.
async fn pg() -> TestDb {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // Panics, naming the URL, when no server answers there.
    postgres_in(&base).await
}

/// One replica: a child process with its own port and log, killed (SIGKILL) on drop.
struct Replica {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl Replica {
    fn start(dir: &Path, name: &str, config_body: &str) -> Replica {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        fs::write(
            &config,
            format!("listen = \"127.0.0.1:{port}\"\n{config_body}"),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = spawn_receiver(env!("CARGO_BIN_EXE_module-webhook"), &config, &log);
        Replica {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn ready(&self) {
        assert!(
            common::ready(&self.url).await,
            "replica at {} did not become ready:\n{}",
            self.url,
            self.log_text()
        );
    }

    /// `user` comments `text` (comment `id`) on the pull request: Gitea's signed event
    /// reaches this replica. Returns the replica's answer.
    async fn comment(&self, id: i64, user: &str, text: &str) -> u16 {
        let (body, headers) =
            common::promotion::comment_request(GITEA_REPO, id, user, text, "created");
        let mut r = reqwest::Client::new().post(format!("{}/hooks/gitea", self.url));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.body(body).send().await.unwrap().status().as_u16()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The configuration both replicas share (all but `listen`).
fn shared_config(db: &str, data: &Path, registry_host: &str, modules: &str) -> String {
    format!(
        r#"database_url = "{db}"
data_dir = "{data}"
[registry]
url = "http://{registry_host}"
repositories = ["acct/modules/*"]
[hooks]
distribution_token = "{DIST_TOKEN}"
gitea_secrets = ["{GITEA_SECRET}"]
[[api.tokens]]
name = "ops"
token = "{OPS_TOKEN}"
role = "operator"
[ingest]
workers = 2
max_attempts = 20
backoff_base_ms = 50
backoff_cap_ms = 500
lease_secs = 3
reconcile_interval_secs = 3600
{modules}"#,
        data = data.display(),
    )
}

/// `pg_terminate_backend` on every other connection to the database at `url` (what a
/// failover or an operator's kill does to a replica's pool). Returns how many were cut.
async fn terminate_other_backends(url: &str) -> usize {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .filter(|r| r.try_get::<bool, _>(0).unwrap_or(false))
    .count()
}

/// Deterministic shuffling without a dependency (xorshift; the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Sends one Distribution notification to the receiver at `url`, once: accepted (202:
/// recorded; 200: a duplicate of one already recorded) or why not.
async fn notify(http: &reqwest::Client, url: &str, body: &[u8]) -> Result<(), String> {
    match http
        .post(format!("{url}/hooks/distribution"))
        .bearer_auth(DIST_TOKEN)
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(body.to_vec())
        .send()
        .await
    {
        Ok(r) if matches!(r.status().as_u16(), 200 | 202) => Ok(()),
        Ok(r) => Err(r.status().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until `n` versions of my-redis are drafts and no job is pending (failing after
/// `secs` with `context()`, e.g. a replica's log).
async fn wait_drafts(store: &Store, n: usize, secs: u64, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let drafts = store
            .versions_of("my-redis", None)
            .await
            .unwrap()
            .iter()
            .filter(|v| v.lifecycle == Lifecycle::Draft)
            .count();
        if drafts == n && !has_pending_jobs(store).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{drafts} of {n} drafts, jobs {:?}\n{}",
            store.job_counts().await.unwrap(),
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The audit actions recorded for version `id`, in order.
async fn audit_actions(store: &Store, id: &str) -> Vec<String> {
    store
        .audit_of(&id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action.to_string())
        .collect()
}

/// Releases (build, push, sign) `n` versions of my-redis, two `module-builder`s at a time.
/// Returns each version's manifest digest.
fn release_versions(reg: &TestRegistry, key: &Path, n: usize) -> Vec<(String, String)> {
    let target = reg.repo(REPO);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let m = module("my-redis");
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let version = format!("1.0.{i}");
                    let o = mb(
                        &[
                            "release",
                            "--ref",
                            &target,
                            "--version",
                            &version,
                            "--source-date-epoch",
                            "1700000000",
                        ],
                        Some(m.path()),
                        Some(key),
                    );
                    let digest = o
                        .lines()
                        .find_map(|l| l.trim().rsplit_once('@').map(|(_, d)| d.to_owned()))
                        .unwrap_or_else(|| panic!("no digest reference in release output: {o}"));
                    out.lock().unwrap().push((version, digest));
                }
            });
        }
    });
    let mut v = out.into_inner().unwrap();
    v.sort();
    v
}

/// 200 signed pushes; every notification twice, shuffled, each sent to a replica at random;
/// one replica SIGKILLed after 40% of them, every database connection of the other
/// terminated after 70%. Exactly 200 drafts, one `ingested` audit row each, no job left
/// behind or dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_ingest_every_push_exactly_once_through_duplicates_and_a_sigkill() {
    let db = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let k = keys();
    let released = release_versions(&reg, &k.key, VERSIONS);
    assert_eq!(released.len(), VERSIONS);

    let modules = format!(
        "[[modules]]\nname = \"my-redis\"\nrepository = \"{REPO}\"\nkeys = [\"{}\"]\n",
        k.public.display()
    );
    let cfg = shared_config(&db.url, &dir.path().join("data"), &reg.host, &modules);
    let a = Replica::start(dir.path(), "a", &cfg);
    let b = Replica::start(dir.path(), "b", &cfg);
    a.ready().await;
    b.ready().await;
    let urls = Arc::new(vec![a.url.clone(), b.url.clone()]);
    let mut a = Some(a);

    // Two events per version (the artifact's tag, its signature's tag), each twice.
    let mut events: Vec<(String, String, String)> = Vec::new();
    for (version, digest) in &released {
        let sig = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
        for _ in 0..2 {
            events.push((
                format!("art-{version}"),
                format!("v{version}"),
                digest.clone(),
            ));
            events.push((format!("sig-{version}"), sig.clone(), digest.clone()));
        }
    }
    let seed = 0x5eed_0000_0000_0001u64;
    let mut rng = Rng(seed);
    rng.shuffle(&mut events);
    let kill_at = events.len() * 2 / 5;
    // Later, every PostgreSQL connection of the survivor is terminated under load.
    let cut_at = events.len() * 7 / 10;
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let http = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut sends = tokio::task::JoinSet::new();
    for (n, (id, tag, digest)) in events.into_iter().enumerate() {
        if n == kill_at {
            // Let what was sent so far be acknowledged, then kill replica A mid-ingest.
            while sends.join_next().await.is_some() {}
            let store = Store::connect(&db.url).await.unwrap();
            assert!(
                has_pending_jobs(&store).await,
                "the kill must land while jobs are outstanding: {:?}",
                store.job_counts().await.unwrap()
            );
            a.take().unwrap().kill();
            killed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if n == cut_at {
            let cut = terminate_other_backends(&db.url).await;
            assert!(cut > 0, "replica B holds connections to terminate");
        }
        let first = (rng.next() % 2) as usize;
        let (http, urls, gate, killed) = (http.clone(), urls.clone(), gate.clone(), killed.clone());
        sends.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let body = dist_envelope(&id, REPO, &tag, &digest);
            // A delivery the dead replica cannot take goes to the other (as a registry's
            // load balancer would retry it); an answer of either is durable.
            let order = if killed.load(std::sync::atomic::Ordering::SeqCst) {
                vec![1]
            } else {
                vec![first, 1 - first]
            };
            let mut last = String::new();
            // A registry retries a failed notification; so does this sender, briefly
            // (the survivor answers 5xx while its database connections are re-established).
            let attempts = order.iter().cycle().take(order.len() * 20);
            for (n, &i) in attempts.enumerate() {
                if n >= order.len() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                match notify(&http, &urls[i], &body).await {
                    Ok(()) => return,
                    Err(e) => last = format!("{e} from {}", urls[i]),
                }
            }
            panic!("delivery {id} ({tag}) not accepted: {last}");
        });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap();
    }

    // Replica B finishes everything, including what A held (its leases expire).
    let store = Store::connect(&db.url).await.unwrap();
    wait_drafts(&store, VERSIONS, 240, || {
        format!("seed {seed:#x}\n--- B ---\n{}", b.log_text())
    })
    .await;
    let versions = store.versions_of("my-redis", None).await.unwrap();
    assert_eq!(
        versions.len(),
        VERSIONS,
        "exactly one row per pushed version"
    );
    for v in &versions {
        assert_eq!(
            audit_actions(&store, &v.id).await,
            ["ingested"],
            "seed {seed:#x}: {} must be ingested once",
            v.version
        );
        let digest = &released
            .iter()
            .find(|(ver, _)| *ver == v.version.to_string())
            .unwrap()
            .1;
        assert_eq!(&v.manifest_digest.to_string(), digest, "{}", v.version);
    }
    assert!(
        store.dead_letters().await.unwrap().is_empty(),
        "{:?}",
        store.dead_letters().await.unwrap()
    );
}

/// Two `/promote` comments for one version, posted at the same instant to two replicas:
/// one transition, one audit row; the other comment is answered, not applied twice.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_given_the_same_promote_at_once_transition_once() {
    let db = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let gitea = FakeGitea::start();
    for u in ["alice", "bob"] {
        gitea.grant(GITEA_REPO, u, "write");
    }
    let k = keys();
    let modules = format!(
        "[gitea]\nurl = \"{}\"\ntoken = \"gitea-token\"\n[[modules]]\nname = \"my-redis\"\n\
         repository = \"{REPO}\"\nkeys = [\"{}\"]\ngitea_repository = \"{GITEA_REPO}\"\n",
        gitea.server.url,
        k.public.display()
    );
    let cfg = shared_config(&db.url, &dir.path().join("data"), "127.0.0.1:1", &modules);
    let a = Replica::start(dir.path(), "a", &cfg);
    let b = Replica::start(dir.path(), "b", &cfg);
    a.ready().await;
    b.ready().await;
    let store = Store::connect(&db.url).await.unwrap();
    for round in 0..5 {
        let version = format!("0.{round}.0");
        let id = published_in(&store, &version, Lifecycle::Draft, "cd", HEAD).await;
        let text = format!("/promote {version} staging");
        let (ra, rb) = tokio::join!(
            a.comment(100 + 2 * round, "alice", &text),
            b.comment(101 + 2 * round, "bob", &text),
        );
        assert_eq!((ra, rb), (202, 202));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = store.version_by_id(&id).await.unwrap().unwrap();
            if v.lifecycle == Lifecycle::Staging && !has_pending_jobs(&store).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{version} not promoted: {:?}\n--- A ---\n{}\n--- B ---\n{}",
                v.lifecycle,
                a.log_text(),
                b.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let transitions = store
            .audit_of(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "transition")
            .count();
        assert_eq!(transitions, 1, "{version}: one transition for two comments");
    }
}

/// A PostgreSQL server of this test's own (`initdb` into a temporary directory, run as the
/// `postgres` user), so it can be crashed and restarted without touching the machine's.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").exists())
            .expect("PostgreSQL's server binaries (initdb, pg_ctl) are needed: apt-get install -y postgresql");
        assert!(
            Command::new("id")
                .arg("postgres")
                .status()
                .unwrap()
                .success(),
            "the `postgres` user is needed to run a private server: apt-get install -y postgresql"
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "chown of the server's directory (run as root: .ci/run does)"
        );
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        pg.as_postgres(
            "initdb",
            &["-A", "trust", "-U", "postgres", "-D", &pg.data()],
        );
        pg.pg_ctl(&["start"]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (
            self.data(),
            self.dir.path().join("server.log").display().to_string(),
        );
        let mut all = vec!["-D", &data, "-l", &log, "-w", "-o", &opts];
        all.extend_from_slice(args);
        self.as_postgres("pg_ctl", &all);
    }

    /// A crash: `immediate` shutdown (no checkpoint; the restart replays the WAL), then
    /// started again.
    fn crash_and_restart(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
        self.pg_ctl(&["start"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

/// The database server crashes (immediate shutdown, WAL replay on restart) while two
/// replicas are taking signed pushes (each notification to one of them, alternately) and
/// ingesting them: every delivery acknowledged before the crash survives it, the ones
/// refused meanwhile are retried by the sender, the leases and the reconciler's advisory lock
/// held at the crash are given up with the connections, and every version is ingested
/// exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_crashed_and_restarted_under_load_loses_and_doubles_nothing() {
    const N: usize = 40;
    let pg = Arc::new(PrivatePostgres::start());
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let k = keys();
    let released = release_versions(&reg, &k.key, N);
    let modules = format!(
        "[[modules]]\nname = \"my-redis\"\nrepository = \"{REPO}\"\nkeys = [\"{}\"]\n",
        k.public.display()
    );
    let cfg = shared_config(&pg.url(), &dir.path().join("data"), &reg.host, &modules);
    let a = Replica::start(dir.path(), "a", &cfg);
    let b = Replica::start(dir.path(), "b", &cfg);
    a.ready().await;
    b.ready().await;
    let logs = || format!("replica a:\n{}\nreplica b:\n{}", a.log_text(), b.log_text());

    let mut events = Vec::new();
    for (version, digest) in &released {
        let sig = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
        events.push((
            format!("art-{version}"),
            format!("v{version}"),
            digest.clone(),
        ));
        events.push((format!("sig-{version}"), sig, digest.clone()));
    }
    let crash_at = events.len() / 2;
    let mut crash = None;
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(4));
    let mut sends = tokio::task::JoinSet::new();
    for (n, (id, tag, digest)) in events.into_iter().enumerate() {
        if n == crash_at {
            // What was sent so far is acknowledged; its ingests are under way.
            while let Some(r) = sends.join_next().await {
                r.unwrap();
            }
            let store = Store::connect(&pg.url()).await.unwrap();
            assert!(
                has_pending_jobs(&store).await,
                "the crash must land while jobs are outstanding"
            );
            drop(store);
            // Crash while deliveries keep coming.
            let pg = pg.clone();
            crash = Some(tokio::task::spawn_blocking(move || pg.crash_and_restart()));
        }
        let url = if n % 2 == 0 { &a.url } else { &b.url };
        let (http, url, gate, refused) = (http.clone(), url.clone(), gate.clone(), refused.clone());
        sends.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let body = dist_envelope(&id, REPO, &tag, &digest);
            let mut last = String::new();
            // As a registry does: a refused notification is sent again (here for 30 s).
            for _ in 0..300 {
                match notify(&http, &url, &body).await {
                    Ok(()) => return,
                    Err(e) => last = e,
                }
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("delivery {id} ({tag}) never accepted: {last}");
        });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap();
    }
    crash.expect("the crash happened").await.unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    wait_drafts(&store, N, 120, logs).await;
    for v in store.versions_of("my-redis", None).await.unwrap() {
        assert_eq!(
            audit_actions(&store, &v.id).await,
            ["ingested"],
            "{} must be ingested once",
            v.version
        );
    }
    assert!(store.dead_letters().await.unwrap().is_empty());
    println!(
        "{N} versions ingested once each; {} deliveries refused during the crash and sent again",
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );
}
