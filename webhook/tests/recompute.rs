//! Incremental recomputation (ARCHITECTURE.md §8): a promotion recomputes only the templates
//! whose closure reaches the module; unchanged inputs compose nothing; and two replicas on
//! one PostgreSQL, changing assignments and promoting at once, one SIGKILLed in the middle
//! of a recomputation, end with every template serving the state its final inputs call for,
//! while no served state ever goes back; and a recomputation paused after reading the live
//! set it shares never serves it once another replica served from a newer one.

mod common;
#[path = "recompute/lab.rs"]
mod lab;
use common::{fleet::*, release::*, *};
use lab::*;
use module_webhook::{fleet::recompute_job, store::TemplateId};
use powernode_testkit::registry::TestRegistry;
use rstest::rstest;
use serde_json::json;
use std::{
    collections::BTreeMap,
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

fn counts(r: &Running) -> (u64, u64) {
    let m = &r.app.state.metrics;
    (m.compositions("composed"), m.compositions("skipped"))
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

/// Two replicas on one PostgreSQL, ordered by a pause instead of raced: replica a reads the
/// live set for a recomputation of two templates (a promotion of system-base) and pauses
/// there (`fleet.recompute_many.after_live_read`); meanwhile motd 1.1.0 goes live through
/// replica b, which serves both templates with it. When a goes on, its live set is older
/// than what is served: it must not serve motd 1.0.0 again (the live epoch it read before
/// its live set has moved on, so it reads the live set again).
#[tokio::test(flavor = "multi_thread")]
async fn a_recomputation_paused_after_reading_the_live_set_never_serves_it_once_it_is_stale() {
    let db = pg().await;
    let reg = TestRegistry::start();
    let k = keys();
    let r = serve(cfg_for(&db.url, &reg, &k)).await;
    let dirs: BTreeMap<&str, tempfile::TempDir> =
        ["system-base", "motd"].map(|m| (m, source(m))).into();
    let mut next = BTreeMap::new();
    for (m, d) in &dirs {
        release_live(&r, &reg, &k, d.path(), m, "1.0.0").await;
        let id = release_draft(&r, &reg, &k, d.path(), m, "1.1.0").await;
        bless(&r, &id).await;
        next.insert(*m, id);
    }
    for t in ["t0", "t1"] {
        template_with(&r, t, &["system-base", "motd"]).await;
    }
    r.app.drain().await.unwrap();
    let store = r.app.state.store.clone();
    let served = |t: &'static str| {
        let store = store.clone();
        async move {
            let st = store.served_state(&t.into()).await.unwrap().unwrap();
            (
                version_of(&st.document, "system-base"),
                version_of(&st.document, "motd"),
            )
        }
    };
    let v = |s: &str| Some(s.to_owned());

    let dir = tempfile::tempdir().unwrap();
    let go_on = dir.path().join("go-on");
    let pause = format!("fleet.recompute_many.after_live_read={}", go_on.display());
    let mut cfg = (*r.app.state.config).clone();
    // One worker on a, held by the paused job: b's workers take everything else.
    cfg.ingest.workers = 1;
    let a = Replica::start(
        dir.path(),
        "a",
        &cfg,
        &[(module_webhook::faults::PAUSE_VAR, &pause)],
    )
    .await;
    all_ok(vec![promote(&a.url, &next["system-base"])]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&a.log)
        .unwrap_or_default()
        .contains("pausing at this fault point")
    {
        assert!(
            Instant::now() < deadline,
            "replica a never paused after reading the live set:\n{}",
            fs::read_to_string(&a.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cfg.ingest.workers = 2;
    let b = Replica::start(dir.path(), "b", &cfg, &[]).await;
    all_ok(vec![promote(&b.url, &next["motd"])]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in ["t0", "t1"] {
        while served(t).await != (v("1.1.0"), v("1.1.0")) {
            assert!(
                Instant::now() < deadline,
                "replica b never served {t} from the new live set:\n{}",
                fs::read_to_string(&b.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Replica a goes on with the live set it read before motd 1.1.0 went live.
    fs::write(&go_on, b"").unwrap();
    settled(&store, &a.log).await;
    assert!(
        fs::read_to_string(&a.log)
            .unwrap_or_default()
            .contains("going on"),
        "replica a went on past its pause"
    );
    for t in ["t0", "t1"] {
        assert_eq!(
            served(t).await,
            (v("1.1.0"), v("1.1.0")),
            "{t} went back to what replica a's stale live set held"
        );
    }
}
