//! The durable job queue on both stores: dedupe, leases, retries with backoff, dead letters
//! and the operator's retry through the API.

mod common;
use common::*;
use module_webhook::store::{AuditAction, Job, NewJob, Store, Via};
use rstest::rstest;

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn dedupe_leases_and_takeover(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let s = Store::connect(&db.url).await.unwrap();
    let j = Job::for_tag("acct/modules/x", "v1").to_new();
    assert!(s.enqueue(&j).await.unwrap());
    assert!(
        !s.enqueue(&j).await.unwrap(),
        "{}: an identical queued job is collapsed",
        db.name
    );
    let claimed = s.claim(60_000).await.unwrap().expect("a job");
    assert_eq!(claimed.attempts, 1);
    assert!(
        s.claim(60_000).await.unwrap().is_none(),
        "leased jobs are not handed out twice"
    );
    // A hint that arrives while the job runs is kept for after it.
    assert!(s.enqueue(&j).await.unwrap());
    let second = s.claim(60_000).await.unwrap().expect("the follow-up job");
    assert_ne!(second.id, claimed.id);
    assert!(s.complete(&second).await.unwrap());
    // A crashed worker's lease expires and another worker takes the job over.
    let other = NewJob {
        kind: module_webhook::store::JobKind::Ingest,
        dedupe_key: "k2".into(),
        payload: serde_json::json!({}),
    };
    s.enqueue(&other).await.unwrap();
    let mut lost = None;
    while let Some(j) = s.claim(1).await.unwrap() {
        if j.id != claimed.id {
            lost = Some(j);
            break;
        }
    }
    let lost = lost.expect("the new job");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = loop {
        let j = s
            .claim(60_000)
            .await
            .unwrap()
            .expect("the expired lease is claimable");
        if j.id == lost.id {
            break j;
        }
    };
    assert_eq!(again.attempts, 2);
    // Item 11: the worker that lost the lease can neither complete nor fail the job.
    assert!(
        !s.complete(&lost).await.unwrap(),
        "a stale lease completes nothing"
    );
    assert_eq!(s.fail(&lost, "late", 0, 10).await.unwrap(), None);
    assert!(!s.renew_lease(&lost, 60_000).await.unwrap());
    assert!(s.renew_lease(&again, 60_000).await.unwrap());
    // Restart of a single instance: running jobs go back to the queue.
    assert!(s.requeue_running().await.unwrap() >= 1);
    assert!(has_pending_jobs(&s).await);
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn registry_down_retries_then_dead_letters_and_operator_retries(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    // Nothing listens on port 1: every attempt fails with a connection error.
    let mut cfg = config(
        &db.url,
        "127.0.0.1:1",
        vec![key_policy(
            "my-redis",
            "acct/modules/my-redis-module",
            "/dev/null".into(),
        )],
    );
    cfg.modules.clear();
    let root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        root.path(),
        powernode_testkit::sigstore::TestCa::new("fulcio").trusted_root(None),
    )
    .unwrap();
    cfg.modules.push(module_webhook::config::ModulePolicy {
        trust_on_first_use: true.into(),
        trusted_root: Some(root.path().to_owned()),
        keys: vec![],
        ..key_policy(
            "my-redis",
            "acct/modules/my-redis-module",
            "/dev/null".into(),
        )
    });
    cfg.ingest.max_attempts = 3;
    let r = serve(cfg).await;
    r.app
        .state
        .store
        .enqueue(&Job::for_tag("acct/modules/my-redis-module", "v1.0.0").to_new())
        .await
        .unwrap();
    let runs = r.app.drain().await.unwrap();
    assert_eq!(runs, 3, "{}: three attempts, then dead", db.name);
    let (s, v) = r.get("/api/v1/dead-letters", Some(READ_TOKEN)).await;
    assert_eq!(s, 200);
    let dead = v["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{v}");
    assert_eq!(dead[0]["attempts"], 3);
    let err = dead[0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("127.0.0.1:1"),
        "the reason names the registry: {err}"
    );
    let (_, m) = r.get("/metrics", None).await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("module_webhook_jobs{state=\"dead\"} 1"),
        "{m}"
    );

    let id = dead[0]["id"].as_str().unwrap();
    let res = r
        .http
        .post(format!("{}/api/v1/dead-letters/{id}/retry", r.url))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    assert!(has_pending_jobs(&r.app.state.store).await);
    let retried = r
        .app
        .state
        .store
        .audit_of_action(AuditAction::DeadLetterRetried)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1, "the retry is audited: {retried:?}");
    assert_eq!(
        (retried[0].via, retried[0].actor.as_str()),
        (Via::Api, "api:ops")
    );
    assert_eq!(retried[0].evidence["job_id"], id);
    let (_, v) = r.get("/api/v1/dead-letters", Some(READ_TOKEN)).await;
    assert_eq!(v["dead_letters"].as_array().unwrap().len(), 0);
    assert_eq!(r.app.drain().await.unwrap(), 3, "a fresh attempt budget");
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn singletons_exclude_other_instances_on_postgres(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let held = a
        .singleton(module_webhook::store::RECONCILER_LOCK)
        .await
        .unwrap();
    assert!(held.is_some());
    let other = b
        .singleton(module_webhook::store::RECONCILER_LOCK)
        .await
        .unwrap();
    match a.backend {
        module_webhook::store::Backend::Postgres => assert!(
            other.is_none(),
            "a second replica must not run the reconciler"
        ),
        module_webhook::store::Backend::Sqlite => {
            assert!(other.is_some(), "one instance: always held")
        }
    }
    drop(other);
    drop(held);
    assert!(
        b.singleton(module_webhook::store::RECONCILER_LOCK)
            .await
            .unwrap()
            .is_some(),
        "released on drop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_job_kinds_are_dead_lettered_with_the_reason() {
    let db = sqlite().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    r.app
        .state
        .store
        .enqueue(&NewJob {
            kind: module_webhook::store::JobKind::Unknown("frobnicate".into()),
            dedupe_key: "f".into(),
            payload: serde_json::json!({}),
        })
        .await
        .unwrap();
    assert_eq!(r.app.drain().await.unwrap(), 1);
    let dead = r.app.state.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("frobnicate")
    );
}
