//! Incremental recomputation (ARCHITECTURE.md §8): a promotion recomputes only the templates
//! whose closure reaches the module; unchanged inputs compose nothing; and two replicas on
//! one PostgreSQL, changing assignments and promoting at once, one SIGKILLed in the middle
//! of a recomputation, end with every template serving the state its final inputs call for,
//! while no served state ever goes back.

mod common;
use common::{fleet::*, release::*, *};
use module_webhook::{
    fleet::recompute_job,
    store::{Store, TemplateId},
};
use powernode_testkit::registry::{TestRegistry, free_port};
use rstest::rstest;
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

const MODULES: [&str; 4] = ["system-base", "security-hardening", "my-redis", "motd"];

/// A module of its own, reaching nothing else.
fn motd() -> tempfile::TempDir {
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

fn source(name: &str) -> tempfile::TempDir {
    if name == "motd" { motd() } else { module(name) }
}

fn cfg_for(db: &str, reg: &TestRegistry, k: &Keys) -> module_webhook::config::Config {
    let policies = MODULES
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(db, &reg.host, policies);
    cfg.promotion.live = module_webhook::lifecycle::StagePolicy::default();
    cfg
}

/// Promotes a draft through staging and blessed (the last step, to live, is the test's).
async fn bless(r: &Running, id: &str) {
    for to in ["staging", "blessed"] {
        let (s, v) = post(
            r,
            &format!("/versions/{id}/promote"),
            OPS_TOKEN,
            json!({"to": to}),
        )
        .await;
        assert_eq!(s, 200, "{id} → {to}: {v}");
    }
}

fn counts(r: &Running) -> (u64, u64) {
    let m = &r.app.state.metrics;
    (m.compositions("composed"), m.compositions("skipped"))
}

fn version_of(doc: &serde_json::Value, module: &str) -> Option<String> {
    doc["modules"]
        .as_array()?
        .iter()
        .find_map(|m| (m["name"] == module).then(|| m["version"].as_str().unwrap().to_owned()))
}

/// Three templates: two reach system-base (one assigns it, one through security-hardening's
/// dependency), one does not. A new system-base going live recomputes the two, and the
/// third is not even looked at; then recomputing unchanged inputs composes nothing.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_recomputes_only_the_templates_reaching_the_module_and_unchanged_inputs_compose_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let reg = TestRegistry::start();
    let k = keys();
    let r = serve(cfg_for(&db.url, &reg, &k)).await;
    let dirs: BTreeMap<&str, tempfile::TempDir> = ["system-base", "security-hardening", "motd"]
        .map(|m| (m, source(m)))
        .into();
    for (m, d) in &dirs {
        release_live(&r, &reg, &k, d.path(), m, "1.0.0").await;
    }
    template_with(&r, "t-direct", &["system-base"]).await;
    template_with(&r, "t-dep", &["security-hardening"]).await;
    template_with(&r, "t-other", &["motd"]).await;
    r.app.drain().await.unwrap();
    let store = &r.app.state.store;
    let other = store
        .served_state(&"t-other".into())
        .await
        .unwrap()
        .unwrap();
    let other_computed = store
        .last_computation(&"t-other".into())
        .await
        .unwrap()
        .unwrap();
    let before = counts(&r);

    let next = release_draft(
        &r,
        &reg,
        &k,
        dirs["system-base"].path(),
        "system-base",
        "1.1.0",
    )
    .await;
    bless(&r, &next).await;
    let (s, v) = post(
        &r,
        &format!("/versions/{next}/promote"),
        OPS_TOKEN,
        json!({"to": "live"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    r.app.drain().await.unwrap();
    let after = counts(&r);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 0),
        "{}: two templates composed, none other looked at",
        db.name
    );
    for t in ["t-direct", "t-dep"] {
        let st = store.served_state(&t.into()).await.unwrap().unwrap();
        assert_eq!(
            version_of(&st.document, "system-base").as_deref(),
            Some("1.1.0"),
            "{t}"
        );
    }
    let other_now = store
        .served_state(&"t-other".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (other_now.state_id, other_now.sequence),
        (other.state_id, other.sequence)
    );
    assert_eq!(
        store
            .last_computation(&"t-other".into())
            .await
            .unwrap()
            .unwrap()
            .computed_at,
        other_computed.computed_at,
        "t-other was not recomputed"
    );

    // Unchanged inputs: a full recomputation and a repeated assignment compose nothing
    // and record nothing.
    let audit_before = store
        .audit_of_template(&"t-direct".into())
        .await
        .unwrap()
        .len();
    let served_before = store
        .served_state(&"t-direct".into())
        .await
        .unwrap()
        .unwrap();
    store.enqueue(&recompute_job()).await.unwrap();
    r.app.drain().await.unwrap();
    let (s, v) = post(
        &r,
        "/templates/t-direct/assignments",
        OPS_TOKEN,
        json!({"module_name": "system-base"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["desired_state"]["changed"], false, "{v}");
    assert_eq!(
        v["desired_state"]["state_id"],
        served_before.state_id.as_str(),
        "{v}"
    );
    r.app.drain().await.unwrap();
    let end = counts(&r);
    assert_eq!(
        end.0, after.0,
        "{}: nothing composed for unchanged inputs",
        db.name
    );
    assert!(
        end.1 - after.1 >= 4,
        "{}: 3 templates and the assignment skipped: {end:?}",
        db.name
    );
    let served_after = store
        .served_state(&"t-direct".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served_after.sequence, served_before.sequence);
    // Only the assignment's own audit row.
    assert_eq!(
        store
            .audit_of_template(&"t-direct".into())
            .await
            .unwrap()
            .len(),
        audit_before + 1
    );
    let metrics = r.metrics().await;
    assert!(
        metrics.contains("module_webhook_desired_state_compositions_total{outcome=\"skipped\"}"),
        "{metrics}"
    );
}

/// A fresh database on the PostgreSQL this test needs (`DATABASE_URL`, else the local one).
async fn pg() -> TestDb {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    postgres_in(&base).await
}

/// A child replica: its URL, configuration and log.
struct Replica {
    child: Option<Child>,
    url: String,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Replica {
    async fn start(
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

    async fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.child = Some(spawn_receiver_with(
            env!("CARGO_BIN_EXE_module-webhook"),
            &self.config,
            &self.log,
            env,
        ));
        let c = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = c.get(format!("{}/readyz", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "replica {} not ready:\n{}",
            self.url,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn kill(&mut self) {
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
async fn call_replica(
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

fn assign(url: &str, t: &str, m: &str) -> tokio::task::JoinHandle<u16> {
    let (url, path) = (url.to_owned(), format!("/templates/{t}/assignments"));
    let body = json!({"module_name": m});
    tokio::spawn(async move { call_replica(&url, reqwest::Method::POST, &path, Some(body)).await })
}

fn unassign(url: &str, t: &str, m: &str) -> tokio::task::JoinHandle<u16> {
    let (url, path) = (url.to_owned(), format!("/templates/{t}/assignments/{m}"));
    tokio::spawn(async move { call_replica(&url, reqwest::Method::DELETE, &path, None).await })
}

fn promote(url: &str, id: &str) -> tokio::task::JoinHandle<u16> {
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

async fn all_ok(calls: Vec<tokio::task::JoinHandle<u16>>) {
    for c in calls {
        let s = c.await.unwrap();
        assert!(s == 200 || s == 204, "a call answered {s}");
    }
}

/// One served state as the poller saw it: sequence, state id, module → version.
type Seen = (i64, String, BTreeMap<String, String>);

/// Every state each template served, as committed, polled until `stop`.
fn poll_served(
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
async fn recompute_locks(url: &str) -> i64 {
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

async fn settled(store: &Store, log: &Path) {
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

/// Two replicas on one PostgreSQL: assignment changes and promotions sent to both at once,
/// one replica SIGKILLed while it holds a template's recomputation (stalled at
/// `fleet.recompute.before_commit`, its state composed and signed, not written) and
/// restarted. Every template ends serving what its final inputs compose (a recomputation
/// now changes nothing), and a poller that saw every committed state never saw a template's
/// sequence go down or two states under one sequence.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_changing_and_promoting_at_once_with_a_sigkill_mid_recompute_never_go_back() {
    const TEMPLATES: usize = 6;
    let db = pg().await;
    let reg = TestRegistry::start();
    let k = keys();
    let r = serve(cfg_for(&db.url, &reg, &k)).await;
    let dirs: BTreeMap<&str, tempfile::TempDir> = MODULES.map(|m| (m, source(m))).into();
    for (m, d) in &dirs {
        release_live(&r, &reg, &k, d.path(), m, "1.0.0").await;
    }
    // Versions blessed now, taken live by the replicas during the run.
    let mut next = BTreeMap::new();
    for (m, v) in [
        ("system-base", "1.1.0"),
        ("security-hardening", "1.1.0"),
        ("motd", "1.1.0"),
        ("system-base", "1.2.0"),
        ("my-redis", "1.1.0"),
    ] {
        let id = release_draft(&r, &reg, &k, dirs[m].path(), m, v).await;
        bless(&r, &id).await;
        next.insert((m, v), id);
    }
    for i in 0..TEMPLATES {
        let m = MODULES[i % MODULES.len()];
        template_with(&r, &format!("t{i}"), &[m]).await;
    }
    r.app.drain().await.unwrap();
    let store = r.app.state.store.clone();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = (*r.app.state.config).clone();
    cfg.ingest.workers = 2;
    cfg.ingest.lease_secs = 3;
    let mut a = Replica::start(dir.path(), "a", &cfg, &[]).await;
    let b = Replica::start(dir.path(), "b", &cfg, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_served(db.url.clone(), stop.clone());

    // Round 1: both replicas at once, some on the same templates.
    all_ok(vec![
        assign(&a.url, "t0", "motd"),
        assign(&b.url, "t0", "my-redis"),
        promote(&a.url, &next[&("system-base", "1.1.0")]),
        assign(&b.url, "t1", "motd"),
        promote(&b.url, &next[&("security-hardening", "1.1.0")]),
        unassign(&a.url, "t4", "system-base"),
        assign(&a.url, "t4", "security-hardening"),
        assign(&b.url, "t5", "system-base"),
    ])
    .await;

    // Round 2: replica a restarted to stall inside its next recomputation, holding the
    // template's lock with a signed state not yet written; b is sent changes meanwhile.
    a.restart(&[(
        module_webhook::faults::STALL_VAR,
        "fleet.recompute.before_commit",
    )])
    .await;
    let stalled = assign(&a.url, "t2", "motd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&a.log)
        .unwrap_or_default()
        .contains("stalling at this fault point")
    {
        assert!(
            Instant::now() < deadline,
            "replica a never reached its fault point"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = vec![
        assign(&b.url, "t2", "my-redis"),
        promote(&b.url, &next[&("motd", "1.1.0")]),
        unassign(&b.url, "t3", "motd"),
        assign(&b.url, "t3", "system-base"),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        recompute_locks(&db.url).await > 0,
        "replica a holds a template's recomputation lock when it is killed"
    );
    a.kill();
    assert_eq!(stalled.await.unwrap(), 0, "the stalled call got no answer");
    all_ok(during).await;
    a.restart(&[]).await;

    // Round 3: both again, after the restart.
    all_ok(vec![
        promote(&a.url, &next[&("system-base", "1.2.0")]),
        assign(&b.url, "t1", "security-hardening"),
        promote(&b.url, &next[&("my-redis", "1.1.0")]),
        unassign(&a.url, "t0", "motd"),
        assign(&a.url, "t5", "motd"),
    ])
    .await;
    settled(&store, &b.log).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    assert!(
        store.dead_letters().await.unwrap().is_empty(),
        "nothing dead-lettered"
    );

    // Every change is reflected: recomputing from the final inputs changes nothing, and
    // each template serves the newest live version of every module it reaches.
    let newest = [
        ("system-base", "1.2.0"),
        ("security-hardening", "1.1.0"),
        ("my-redis", "1.1.0"),
        ("motd", "1.1.0"),
    ];
    for i in 0..TEMPLATES {
        let t = TemplateId::from(format!("t{i}"));
        let again = r
            .app
            .state
            .fleet
            .recompute(
                &t,
                &module_webhook::lifecycle::Actor::Auto,
                module_webhook::store::Via::Auto,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            !again.changed && !again.blocked,
            "{t} did not serve its final inputs: {again:?}"
        );
        let st = store.served_state(&t).await.unwrap().unwrap();
        let assigned = store.assignments(&t).await.unwrap();
        assert!(!assigned.is_empty());
        for a in &assigned {
            let (_, v) = newest.iter().find(|(m, _)| *m == a.module_name).unwrap();
            assert_eq!(
                version_of(&st.document, &a.module_name).as_deref(),
                Some(*v),
                "{t}: {}",
                st.document
            );
        }
        // No served state ever went back: the sequence only rises, and no module is ever
        // served at an older version than before (versions only went live upwards here, so
        // a state computed from older inputs would show one).
        let states = &seen[t.as_str()];
        for w in states.windows(2) {
            assert!(
                w[1].0 > w[0].0,
                "{t}: sequence {} after {} ({states:?})",
                w[1].0,
                w[0].0
            );
        }
        let mut newest_seen: BTreeMap<&str, semver::Version> = BTreeMap::new();
        for (seq, _, versions) in states {
            for (m, v) in versions {
                let v = semver::Version::parse(v).unwrap();
                if let Some(before) = newest_seen.get(m.as_str()) {
                    assert!(&v >= before, "{t}: {m} {v} served at {seq} after {before}");
                }
                newest_seen.insert(m.as_str(), v);
            }
        }
        let last = states.last().unwrap();
        assert_eq!((last.0, &last.1), (st.sequence, &st.state_id), "{t}");
    }
    let transitions: usize = seen.values().map(Vec::len).sum();
    println!("{transitions} served states observed across {TEMPLATES} templates; none went back");
}
