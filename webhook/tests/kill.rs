//! SIGKILL of a `module-webhook serve` child process at the moments where a kill could
//! leave a half-made change: between a hook's commit and its answer, in the middle of a
//! promotion (after its transition committed, before its reply reached Gitea) and in the
//! middle of a desired-state recomputation that touches many templates. After a restart nothing is doubled, nothing is lost, and every
//! template serves the state the promotion called for.
//!
//! The state each test starts from is made in-process (the common helpers), then the same
//! configuration is written as a file for the child.

mod common;
use common::{fleet::*, promotion::*, release::*, *};
use module_webhook::store::{Lifecycle, Store, TemplateId};
use powernode_module::desired_state::{self, Envelope};
use powernode_testkit::registry::{TestRegistry, free_port};
use serde_json::json;
use std::{
    fs,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

/// Writes `cfg` (listening on a free port) as the child's configuration file. Returns the
/// child's base URL.
fn write_config(cfg: &module_webhook::config::Config, path: &Path) -> String {
    let port = free_port();
    let mut cfg = cfg.clone();
    cfg.listen = format!("127.0.0.1:{port}");
    fs::write(path, toml::to_string(&cfg).unwrap()).unwrap();
    format!("http://127.0.0.1:{port}")
}

async fn start(config: &Path, log: &Path, url: &str) -> Child {
    start_with(config, log, url, &[]).await
}

/// [`start`] with more environment variables (a fault point to stall at).
async fn start_with(config: &Path, log: &Path, url: &str, env: &[(&str, &str)]) -> Child {
    let mut child = spawn_receiver_with(env!("CARGO_BIN_EXE_module-webhook"), config, log, env);
    if ready(url).await {
        return child;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "module-webhook did not become ready at {url}:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Polls `cond` every millisecond until it holds (or fails after `secs`, saying `what`).
async fn until<F, Fut>(secs: u64, what: &str, log: &Path, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "{what}:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the child logs that it holds a task at its fault point
/// (`module_webhook::faults`).
async fn until_stalled(log: &Path) {
    until(
        10,
        "the receiver never reached its fault point",
        log,
        || async {
            fs::read_to_string(log)
                .unwrap_or_default()
                .contains("stalling at this fault point")
        },
    )
    .await;
}

async fn jobs_in(store: &Store, state: &str) -> i64 {
    store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .filter(|(s, _)| s == state)
        .map(|(_, n)| n)
        .sum()
}

/// Each template's served state id, `t000` first.
async fn served_ids(store: &Store, templates: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for i in 0..templates {
        out.push(
            store
                .served_state_head(&format!("t{i:03}").into())
                .await
                .unwrap()
                .map(|(id, _)| id),
        );
    }
    out
}

/// How many of the first `old.len()` templates no longer serve the state they served.
async fn changed(store: &Store, old: &[Option<String>]) -> usize {
    let now = served_ids(store, old.len()).await;
    now.iter().zip(old).filter(|(n, o)| n != o).count()
}

/// A push notification whose delivery and ingest job have committed when the receiver is
/// killed, before its 202 left (the receiver is told to stall at that point, so the kill
/// lands there every time): the sender saw no answer and sends the notification again, as a
/// registry does. The delivery and its job outlived the process; after the restart the resend
/// is a duplicate (200, no new job) and the version is ingested exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_a_hook_commit_and_its_202_loses_and_doubles_nothing() {
    let reg = TestRegistry::start();
    let k = keys();
    let db = sqlite().await;
    let repository = repo("my-redis");
    let cfg = config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", &repository, k.public.clone())],
    );
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("c.toml"), dir.path().join("log"));
    let url = write_config(&cfg, &config);
    let stall = [(module_webhook::faults::STALL_VAR, "hooks.after_commit")];
    let child = start_with(&config, &log, &url, &stall).await;
    let store = Store::connect(&db.url).await.unwrap();
    // Pushed after the start's reconcile pass: only the hook knows about it.
    let m = module("my-redis");
    mb(
        &[
            "release",
            "--ref",
            &reg.repo(&repository),
            "--version",
            "0.1.0",
        ],
        Some(m.path()),
        Some(&k.key),
    );
    let body = dist_envelope(
        "kill-before-202",
        &repository,
        "0.1.0",
        &format!("sha256:{}", "0".repeat(64)),
    );
    let notify = || {
        let mut req = reqwest::Client::new()
            .post(format!("{url}/hooks/distribution"))
            .timeout(Duration::from_secs(60))
            .body(body.clone());
        for (k, v) in dist_headers() {
            req = req.header(k, v);
        }
        req.send()
    };
    let first = tokio::spawn(notify());
    until(30, "the delivery was never committed", &log, || async {
        deliveries_in(&db.url).await == 1
    })
    .await;
    until_stalled(&log).await;
    assert!(
        !first.is_finished(),
        "the hook was answered before the kill"
    );
    kill(child);
    let answer = first.await.unwrap();
    assert!(answer.is_err(), "the sender got an answer: {answer:?}");
    // Durable before the answer: the delivery and the job it asked for outlived the process.
    assert_eq!(deliveries_in(&db.url).await, 1);
    let jobs: i64 = store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        jobs, 1,
        "the hook's ingest job was committed with its delivery"
    );

    // The sender tries again; the restarted receiver knows the delivery.
    let child = start(&config, &log, &url).await;
    let again = notify().await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "a duplicate is answered 200");
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 1, "jobs": 0})
    );
    until(60, "the version was never ingested", &log, || async {
        store
            .version("my-redis", "0.1.0")
            .await
            .unwrap()
            .is_some_and(|v| v.lifecycle == Lifecycle::Draft)
            && !has_pending_jobs(&store).await
    })
    .await;
    kill(child);
    let v = store.version("my-redis", "0.1.0").await.unwrap().unwrap();
    let audit = store.audit_of(&v.id).await.unwrap();
    let ingested = audit.iter().filter(|a| a.action == "ingested").count();
    assert_eq!(ingested, 1, "{audit:?}");
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert_eq!(
        deliveries_in(&db.url).await,
        1,
        "the resend added no delivery"
    );
}

/// A `/promote` comment whose transition has committed but whose reply to Gitea is still on
/// its way when the receiver is killed: after a restart the command runs again, finds the
/// version already promoted, and does not transition it a second time.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_promotion_transitions_once() {
    sigkill_mid_promotion(None).await;
}

/// As above, killed at the earliest moment after the transition's commit (the receiver is
/// told to stall there, so the kill lands there every run). This is where a kill used to
/// leave the version promoted and its request unrecorded: the re-run decided the request
/// again and answered "staging → staging is not a lifecycle step". The transition now
/// records its request in its own transaction.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_right_after_a_promotions_commit_transitions_once() {
    sigkill_mid_promotion(Some("promotion.after_transition")).await;
}

/// Promotes 0.1.0 to staging by a comment, SIGKILLs the receiver once the transition has
/// committed (held at `fault`, or with Gitea holding the reply), restarts it and checks that
/// the command finished with one transition and told the requester it was already decided.
async fn sigkill_mid_promotion(fault: Option<&str>) {
    let e = env(sqlite().await, |_| {}).await;
    let id = draft(&e.r, "0.1.0").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("c.toml"), dir.path().join("log"));
    let url = write_config(&e.r.app.state.config, &config);
    let store = e.r.app.state.store.clone();

    let env = match fault {
        Some(point) => vec![(module_webhook::faults::STALL_VAR, point)],
        None => {
            // Replies (`…/comments`) hang: the job is caught between its transition and its end.
            e.gitea.state.lock().unwrap().stall =
                Some(("/comments".into(), Duration::from_secs(8)));
            Vec::new()
        }
    };
    let child = start_with(&config, &log, &url, &env).await;
    let (body, headers) =
        comment_request(GITEA_REPO, 41, "bob", "/promote 0.1.0 staging", "created");
    let mut req = reqwest::Client::new()
        .post(format!("{url}/hooks/gitea"))
        .body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
    until(30, "the promotion never committed", &log, || async {
        store.version_by_id(&id).await.unwrap().unwrap().lifecycle == Lifecycle::Staging
    })
    .await;
    if fault.is_some() {
        until_stalled(&log).await;
    }
    assert_eq!(
        jobs_in(&store, "running").await,
        1,
        "the command is mid-flight"
    );
    kill(child);

    e.gitea.state.lock().unwrap().stall = None;
    let child = start(&config, &log, &url).await;
    until(
        60,
        "the interrupted command was not finished",
        &log,
        || async { !has_pending_jobs(&store).await },
    )
    .await;
    kill(child);
    assert_eq!(
        store.version_by_id(&id).await.unwrap().unwrap().lifecycle,
        Lifecycle::Staging
    );
    let audit = store.audit_of(&id).await.unwrap();
    let transitions: Vec<_> = audit.iter().filter(|a| a.action == "transition").collect();
    assert_eq!(transitions.len(), 1, "{audit:?}");
    assert!(store.dead_letters().await.unwrap().is_empty());
    let replies: Vec<String> = e
        .gitea
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/comments"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    // The re-run recognises the decided request and says so, instead of deciding again.
    assert!(
        replies
            .last()
            .is_some_and(|r| r.contains("@bob") && r.contains("already decided")),
        "the requester got an answer: {replies:?}"
    );
    // The commit status was queued with the transition, so the kill did not lose it (the
    // re-run decides nothing and so would never have set it).
    let statuses = e.gitea.state.lock().unwrap().set_statuses.clone();
    assert!(
        statuses.last().is_some_and(|(_, sha, body)| sha == HEAD
            && body["context"] == "powernode/lifecycle"
            && body["description"].as_str().unwrap().ends_with("staging")),
        "the commit status names the new stage: {statuses:?}"
    );
}

/// Kills the receiver while the recomputation a `live` promotion queued is half-way through
/// 120 templates (asserted: some templates serve the new state, some the old), then restarts
/// it: every template ends up serving the new state, signed by the receiver's key, and no
/// template records the change twice.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_desired_state_recomputation_completes_every_template_once() {
    const TEMPLATES: usize = 120;
    let db = sqlite().await;
    let reg = TestRegistry::start();
    let k = keys();
    let names = ["system-base", "security-hardening", "my-redis"];
    let policies = names
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.ingest.workers = 1;
    cfg.promotion.live = module_webhook::lifecycle::StagePolicy::default();
    let r = serve(cfg).await;
    let redis = module("my-redis");
    for name in names {
        let m = module(name);
        let v = if name == "my-redis" { "0.1.0" } else { "1.0.0" };
        release_live(&r, &reg, &k, m.path(), name, v).await;
    }
    // my-redis 0.2.0, blessed: the child takes it live.
    let next = release_draft(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    bless(&r, &next).await;
    for i in 0..TEMPLATES {
        let t = format!("t{i:03}");
        let (s, v) = post(
            &r,
            "/templates",
            OPS_TOKEN,
            json!({"id": t, "platform": "rpi4"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = post(
            &r,
            &format!("/templates/{t}/assignments"),
            OPS_TOKEN,
            json!({"module_name": "my-redis"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    r.app.drain().await.unwrap();
    let store = r.app.state.store.clone();
    let old = served_ids(&store, TEMPLATES).await;
    assert!(
        old.iter().all(Option::is_some),
        "every template serves a state"
    );
    let (_, key_pem) = r.get("/api/v1/signing-key", None).await;
    let key = powernode_module::trust::keys::public_from_pem(key_pem.as_str().unwrap().as_bytes())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("c.toml"), dir.path().join("log"));
    let url = write_config(&r.app.state.config, &config);
    let child = start(&config, &log, &url).await;
    let res = reqwest::Client::new()
        .post(format!("{url}/api/v1/versions/{next}/promote"))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"to": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // Kill as soon as the recomputation (templates in id order) has replaced the first
    // template's state.
    until(30, "the recomputation never started", &log, || {
        let (s, old) = (store.clone(), old.clone());
        async move { jobs_in(&s, "running").await == 1 && changed(&s, &old[..1]).await == 1 }
    })
    .await;
    kill(child);
    let at_kill = changed(&store, &old).await;
    assert!(
        at_kill > 0 && at_kill < TEMPLATES,
        "the kill did not land mid-recomputation: {at_kill} of {TEMPLATES} templates changed"
    );

    let child = start(&config, &log, &url).await;
    until(
        60,
        "the interrupted recomputation was not finished",
        &log,
        || async { !has_pending_jobs(&store).await },
    )
    .await;
    kill(child);
    assert!(store.dead_letters().await.unwrap().is_empty());
    for (i, old) in old.iter().enumerate() {
        let t = TemplateId::from(format!("t{i:03}"));
        let s = store.served_state(&t).await.unwrap().unwrap();
        assert_ne!(
            Some(&s.state_id),
            old.as_ref(),
            "{t} still serves the old state"
        );
        let env: Envelope = serde_json::from_value(s.envelope).unwrap();
        let (doc, id) = desired_state::verify(&env, &key).unwrap();
        assert_eq!(id.to_string(), s.state_id);
        let redis = doc.modules.iter().find(|m| m.name == "my-redis").unwrap();
        assert_eq!(redis.version, "0.2.0", "{t}");
        let changes = store
            .audit_of_template(&t)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| {
                a.action == "desired_state_changed" && a.evidence["state_id"] == s.state_id.as_str()
            })
            .count();
        assert_eq!(
            changes, 1,
            "{t}: the change to {} recorded {changes} times",
            s.state_id
        );
    }
    println!(
        "killed with {at_kill} of {TEMPLATES} templates recomputed; all {TEMPLATES} serve the new state after the restart"
    );
}
