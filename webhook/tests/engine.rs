//! The promotion engine driven by signed Gitea webhooks through the real router, with the
//! real Gitea client talking to a fake Gitea that records every call.

mod common;
use common::{promotion::*, *};
use module_webhook::{
    lifecycle::StagePolicy,
    store::{Clock, Lifecycle},
};
use powernode_testkit::gitea::{Fault, review};
use rstest::rstest;

fn live_needs_two(c: &mut module_webhook::config::Config) {
    c.promotion.live = StagePolicy {
        min_approvals: 2,
        ..Default::default()
    };
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn happy_path_to_live_with_two_approvals(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let name = db.name;
    let e = env(db, live_needs_two).await;
    let id = draft(&e.r, "0.1.0").await;
    assert_eq!(
        comment(&e, 1, "bob", "/promote 0.1.0 staging", "created").await,
        202
    );
    assert_eq!(
        state(&e, &id).await,
        Lifecycle::Staging,
        "{name}: {:?}",
        e.gitea.comments()
    );
    comment(&e, 2, "bob", "/promote my-redis@0.1.0 blessed", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Blessed);
    comment(&e, 3, "alice", "/promote 0.1.0 live", "created").await;
    assert_eq!(
        state(&e, &id).await,
        Lifecycle::Blessed,
        "pending: no approvals yet"
    );
    let last = e.gitea.comments().last().unwrap().clone();
    assert!(
        last.contains("pending") && last.contains("0 of 2 required approvals"),
        "{last}"
    );

    e.gitea
        .add_review(GITEA_REPO, 7, review(11, "carol", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Blessed, "one of two");
    e.gitea
        .add_review(GITEA_REPO, 7, review(12, "dave", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Live, "{name}");
    let comments = e.gitea.comments();
    assert!(
        comments.last().unwrap().contains("blessed → **live**"),
        "{comments:?}"
    );
    let statuses = e.gitea.state.lock().unwrap().set_statuses.clone();
    let last = &statuses.last().unwrap();
    assert_eq!(last.1, HEAD);
    assert_eq!(last.2["context"], "powernode/lifecycle");
    assert!(last.2["description"].as_str().unwrap().ends_with("live"));
    // The audit trail names the reviews that counted.
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    let t = audit.iter().rfind(|a| a.action == "transition").unwrap();
    assert_eq!(t.to_state, Some(Lifecycle::Live));
    let ids: Vec<i64> = t.evidence["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["review_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [11, 12]);
    assert_eq!(t.evidence["digest"], format!("sha256:{}", "cd".repeat(32)));

    // Yank from live.
    comment(
        &e,
        4,
        "bob",
        "/yank 0.1.0 CVE-2026-0001 in redis.conf",
        "created",
    )
    .await;
    assert_eq!(state(&e, &id).await, Lifecycle::Yanked);
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_that_do_not_count() {
    let e = env(sqlite().await, |c| {
        c.promotion.staging = StagePolicy {
            min_approvals: 1,
            ..Default::default()
        }
    })
    .await;
    let id = draft(&e.r, "0.2.0").await;
    comment(&e, 1, "alice", "/promote 0.2.0 staging", "created").await;
    // A read-only reviewer, the requester herself, a dismissed approval, an approval on an old
    // commit, and an approval superseded by a later change request: none counts.
    e.gitea
        .add_review(GITEA_REPO, 7, review(21, "reader", "APPROVED", HEAD));
    e.gitea
        .add_review(GITEA_REPO, 7, review(22, "alice", "APPROVED", HEAD));
    let mut dismissed = review(23, "carol", "APPROVED", HEAD);
    dismissed["dismissed"] = true.into();
    e.gitea.add_review(GITEA_REPO, 7, dismissed);
    e.gitea.add_review(
        GITEA_REPO,
        7,
        review(
            24,
            "dave",
            "APPROVED",
            "0000000000000000000000000000000000000000",
        ),
    );
    e.gitea
        .add_review(GITEA_REPO, 7, review(25, "bob", "APPROVED", HEAD));
    e.gitea
        .add_review(GITEA_REPO, 7, review(26, "bob", "REQUEST_CHANGES", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    // An approval whose webhook arrives after it was dismissed (Gitea sends no webhook for
    // the dismissal): the engine re-reads the reviews and does not count it.
    e.gitea
        .add_review(GITEA_REPO, 7, review(27, "carol", "APPROVED", HEAD));
    for r in e.gitea.state.lock().unwrap().reviews.values_mut().flatten() {
        if r["id"] == 27 {
            r["dismissed"] = true.into();
        }
    }
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    // A fresh approval does count.
    e.gitea
        .add_review(GITEA_REPO, 7, review(28, "carol", "APPROVED", HEAD));
    e.r.app
        .worker
        .engine
        .as_ref()
        .unwrap()
        .reevaluate(None)
        .await
        .unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_check_then_status_event_and_soak_then_timer() {
    let clock = Clock::manual();
    let e = env_with_clock(sqlite().await, clock.clone(), |c| {
        c.promotion.staging = StagePolicy {
            required_checks: vec!["module-builder / build".into()],
            ..Default::default()
        };
        c.promotion.blessed = StagePolicy {
            min_soak_secs: 1,
            ..Default::default()
        };
    })
    .await;
    let id = draft(&e.r, "0.3.0").await;
    e.gitea
        .set_check(GITEA_REPO, HEAD, "module-builder / build", "failure");
    comment(&e, 1, "bob", "/promote 0.3.0 staging", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    assert!(
        e.gitea
            .comments()
            .last()
            .unwrap()
            .contains("is failure, not success")
    );
    e.gitea
        .set_check(GITEA_REPO, HEAD, "module-builder / build", "success");
    let body = data("status-success.json");
    e.r.post(
        "/hooks/gitea",
        body,
        &headers("status-success.headers.json"),
    )
    .await;
    e.r.app.drain().await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);

    comment(&e, 2, "bob", "/promote 0.3.0 blessed", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Staging, "soak not elapsed");
    assert!(e.gitea.comments().last().unwrap().contains("soak"));
    clock.advance(std::time::Duration::from_millis(1100));
    e.r.app
        .worker
        .engine
        .as_ref()
        .unwrap()
        .reevaluate(None)
        .await
        .unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Blessed);
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_comments_non_writers_duplicates_and_help() {
    let e = env(sqlite().await, |_| {}).await;
    let id = draft(&e.r, "0.4.0").await;
    comment(
        &e,
        1,
        "bob",
        "Like this:\n```\n/promote 0.4.0 staging\n```\n> /promote 0.4.0 staging",
        "created",
    )
    .await;
    comment(&e, 2, "bob", "/promote 0.4.0 staging", "edited").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    assert!(
        e.gitea.comments().is_empty(),
        "no reply to ignored comments"
    );

    comment(&e, 3, "reader", "/promote 0.4.0 staging", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    assert!(
        e.gitea
            .comments()
            .last()
            .unwrap()
            .contains("needs write permission"),
        "{:?}",
        e.gitea.comments()
    );

    // The same delivery twice, and the same comment in two deliveries: one transition.
    assert_eq!(
        comment(&e, 4, "bob", "/promote 0.4.0 staging", "created").await,
        202
    );
    assert_eq!(
        comment(&e, 4, "bob", "/promote 0.4.0 staging", "created").await,
        200
    );
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "transition").count(), 1);

    comment(&e, 5, "bob", "/frobnicate", "created").await;
    assert!(
        e.gitea
            .comments()
            .last()
            .unwrap()
            .contains("Unknown command `/frobnicate`")
    );
    comment(&e, 6, "bob", "/status", "created").await;
    assert!(
        e.gitea
            .comments()
            .last()
            .unwrap()
            .contains("| 0.4.0 | staging |")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_down_keeps_the_request_and_retries() {
    let e = env(sqlite().await, |c| c.ingest.max_attempts = 10).await;
    let id = draft(&e.r, "0.5.0").await;
    e.gitea.state.lock().unwrap().down = true;
    assert_eq!(
        post_comment_queued(&e, "down-1", "/promote 0.5.0 staging").await,
        202
    );
    // Two attempts fail while Gitea is down; the job is kept for a retry.
    assert!(e.r.app.worker.run_once().await.unwrap());
    assert!(e.r.app.worker.run_once().await.unwrap());
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    assert!(has_pending_jobs(&e.r.app.state.store).await, "nothing lost");
    e.gitea.state.lock().unwrap().down = false;
    e.r.app.drain().await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    assert_eq!(e.gitea.comments().len(), 1, "one reply");
}

/// Gitea API calls the fake has answered so far.
fn gitea_calls(e: &Env) -> usize {
    e.gitea
        .server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
        .count()
}

/// A 429 with `Retry-After: 30`: the call is not re-sent by the client, and the queue (whose
/// backoff is 0 here, so any earlier retry would show) runs nothing until Gitea's time has
/// passed; then the promotion completes once.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_429_retry_after_is_honoured_without_a_tight_loop() {
    let clock = Clock::manual();
    let e = env_with_clock(sqlite().await, clock.clone(), |_| {}).await;
    let id = draft(&e.r, "0.8.0").await;
    e.gitea
        .state
        .lock()
        .unwrap()
        .faults
        .push_back(Fault::Status {
            status: 429,
            retry_after: Some(30),
        });
    let before = gitea_calls(&e);
    assert_eq!(
        post_comment_queued(&e, "rl-1", "/promote 0.8.0 staging").await,
        202
    );
    assert!(e.r.app.worker.run_once().await.unwrap(), "the attempt ran");
    assert_eq!(
        gitea_calls(&e) - before,
        1,
        "one call, answered 429, not re-sent"
    );
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    clock.advance(std::time::Duration::from_secs(29));
    assert!(
        !e.r.app.worker.run_once().await.unwrap(),
        "nothing is due before Retry-After"
    );
    assert_eq!(gitea_calls(&e) - before, 1);
    clock.advance(std::time::Duration::from_secs(2));
    e.r.app.drain().await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    assert_eq!(e.gitea.comments().len(), 1, "one reply");
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "transition").count(), 1);
}

/// 500 and 502: each attempt makes exactly one call (no retry loop inside the client), the
/// job stays queued, and the promotion completes once Gitea answers.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_5xx_costs_one_call_per_attempt_and_loses_nothing() {
    let e = env(sqlite().await, |c| c.ingest.max_attempts = 10).await;
    let id = draft(&e.r, "0.8.1").await;
    {
        let mut g = e.gitea.state.lock().unwrap();
        for status in [500, 502] {
            g.faults.push_back(Fault::Status {
                status,
                retry_after: None,
            });
        }
    }
    let before = gitea_calls(&e);
    assert_eq!(
        post_comment_queued(&e, "5xx-1", "/promote 0.8.1 staging").await,
        202
    );
    for n in 1..=2 {
        assert!(e.r.app.worker.run_once().await.unwrap());
        assert_eq!(gitea_calls(&e) - before, n, "attempt {n}: one call");
        assert_eq!(state(&e, &id).await, Lifecycle::Draft);
        assert!(has_pending_jobs(&e.r.app.state.store).await, "nothing lost");
    }
    e.r.app.drain().await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    assert_eq!(e.gitea.comments().len(), 1, "one reply");
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "transition").count(), 1);
}

/// The commit status is an outbox job the transition enqueues in its own transaction: with
/// Gitea refusing commit statuses (503) right after the promotion committed, the version is
/// promoted and answered, the status is kept for a retry (not dropped, not dead), and once
/// Gitea takes statuses again the status names the stage. (Sent inline after the commit, as
/// before, the failed call made the command's re-run answer "already decided" and set none.)
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_status_gitea_refused_is_set_when_it_is_back(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let name = db.name;
    let e = env(db, |c| c.ingest.max_attempts = 10).await;
    let id = draft(&e.r, "0.8.3").await;
    e.gitea.state.lock().unwrap().fail_path = Some(("/statuses/".into(), 503));
    assert_eq!(
        post_comment_queued(&e, "cs-1", "/promote 0.8.3 staging").await,
        202
    );
    for _ in 0..2 {
        assert!(e.r.app.worker.run_once().await.unwrap(), "a job ran");
    }
    assert_eq!(state(&e, &id).await, Lifecycle::Staging, "{name}");
    assert!(e.gitea.state.lock().unwrap().set_statuses.is_empty());
    assert!(
        has_pending_jobs(&e.r.app.state.store).await,
        "{name}: the status is kept for a retry"
    );
    e.gitea.state.lock().unwrap().fail_path = None;
    e.r.app.drain().await.unwrap();
    let statuses = e.gitea.state.lock().unwrap().set_statuses.clone();
    assert_eq!(statuses.len(), 1, "{name}: {statuses:?}");
    assert_eq!(statuses[0].1, HEAD);
    assert_eq!(statuses[0].2["context"], "powernode/lifecycle");
    assert_eq!(statuses[0].2["state"], "success");
    assert!(
        statuses[0].2["description"]
            .as_str()
            .unwrap()
            .ends_with("staging"),
        "{statuses:?}"
    );
    assert!(e.r.app.state.store.dead_letters().await.unwrap().is_empty());
    let comments = e.gitea.comments();
    assert_eq!(comments.len(), 1, "one reply: {comments:?}");
    assert!(comments[0].contains("**staging**"), "{comments:?}");
}

/// The reply telling a requester that their pending request was carried out later (an
/// approval arrived) is a job the transition enqueues with itself: with Gitea refusing
/// comments (503) when the re-evaluation promotes, the version is promoted, the reply is kept
/// for a retry (not dropped, not dead), and once Gitea takes comments again it is posted
/// once. (Posted inline after the commit, as before, the failed call made the re-evaluation's
/// retry find the request no longer pending, and the requester was never told.)
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_gitea_refused_after_a_reevaluation_is_posted_when_it_is_back(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let name = db.name;
    let e = env(db, |c| {
        c.ingest.max_attempts = 10;
        c.promotion.staging = StagePolicy {
            min_approvals: 1,
            ..Default::default()
        };
    })
    .await;
    let id = draft(&e.r, "0.8.4").await;
    comment(&e, 1, "bob", "/promote 0.8.4 staging", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft, "{name}: pending");
    e.gitea
        .add_review(GITEA_REPO, 7, review(31, "carol", "APPROVED", HEAD));
    e.gitea.state.lock().unwrap().fail_path = Some(("/comments".into(), 503));
    let body = data("pull-request-review-approved.json");
    let h = headers("pull-request-review-approved.headers.json");
    let (status, text) = e.r.post("/hooks/gitea", body, &h).await;
    assert!(status == 202 || status == 200, "{text}");
    // The re-evaluation, then its follow-ups (the reply fails at least once).
    let mut ran = 0;
    while ran < 3 && e.r.app.worker.run_once().await.unwrap() {
        ran += 1;
    }
    assert!(ran >= 2, "{name}: the re-evaluation and a follow-up ran");
    assert_eq!(state(&e, &id).await, Lifecycle::Staging, "{name}");
    let later = |c: &String| c.contains("(requirements now met)");
    assert!(!e.gitea.comments().iter().any(later));
    assert!(
        has_pending_jobs(&e.r.app.state.store).await,
        "{name}: the reply is kept for a retry"
    );
    e.gitea.state.lock().unwrap().fail_path = None;
    e.r.app.drain().await.unwrap();
    let comments = e.gitea.comments();
    assert_eq!(
        comments.iter().filter(|c| later(c)).count(),
        1,
        "{name}: {comments:?}"
    );
    assert!(
        comments.last().unwrap().starts_with("@bob "),
        "{comments:?}"
    );
    assert!(e.r.app.state.store.dead_letters().await.unwrap().is_empty());
}

/// A Gitea that accepts the connection and then says nothing: the attempt gives up after
/// `[gitea] timeout_secs` (not the 3 s the fake stalls), the job is kept, and the next
/// attempt completes the promotion.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_timing_out_fails_the_attempt_not_the_job() {
    let e = env(sqlite().await, |c| {
        c.ingest.max_attempts = 10;
        c.gitea.as_mut().unwrap().timeout_secs = 1;
    })
    .await;
    let id = draft(&e.r, "0.8.2").await;
    e.gitea
        .state
        .lock()
        .unwrap()
        .faults
        .push_back(Fault::Stall(std::time::Duration::from_secs(3)));
    assert_eq!(
        post_comment_queued(&e, "slow-1", "/promote 0.8.2 staging").await,
        202
    );
    let started = std::time::Instant::now();
    assert!(e.r.app.worker.run_once().await.unwrap());
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2_500),
        "the attempt waited {took:?}: the timeout did not apply"
    );
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    assert!(has_pending_jobs(&e.r.app.state.store).await, "nothing lost");
    e.r.app.drain().await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    assert_eq!(e.gitea.comments().len(), 1, "one reply");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_stage_cancel_and_expiry() {
    let clock = Clock::manual();
    let e = env_with_clock(sqlite().await, clock.clone(), |c| {
        c.promotion.staging = StagePolicy {
            auto: true,
            required_checks: vec!["module-builder / build".into()],
            ..Default::default()
        };
        c.promotion.blessed = StagePolicy {
            min_soak_secs: 3600,
            ..Default::default()
        };
        c.promotion.request_ttl_secs = 0;
    })
    .await;
    let engine = e.r.app.worker.engine.clone().unwrap();
    let id = draft(&e.r, "0.6.0").await;
    // auto: nothing happens until the required check passes, then it promotes by itself.
    engine.reevaluate(None).await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    e.gitea
        .set_check(GITEA_REPO, HEAD, "module-builder / build", "success");
    engine.reevaluate(None).await.unwrap();
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    let t = audit.iter().rfind(|a| a.action == "transition").unwrap();
    assert_eq!((t.actor.as_str(), t.via.as_str()), ("auto", "auto"));

    // A pending request can be cancelled by its requester.
    comment(&e, 1, "bob", "/promote 0.6.0 blessed", "created").await;
    assert_eq!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .len(),
        1
    );
    comment(&e, 2, "carol", "/cancel", "created").await;
    assert_eq!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .len(),
        1,
        "only the requester cancels"
    );
    comment(&e, 3, "bob", "/cancel 0.6.0", "created").await;
    assert!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        e.gitea
            .comments()
            .last()
            .unwrap()
            .contains("cancelled 1 pending request(s)")
    );

    // And expires (the TTL here is 0).
    comment(&e, 4, "bob", "/promote 0.6.0 blessed", "created").await;
    clock.advance(std::time::Duration::from_millis(5));
    engine.reevaluate(None).await.unwrap();
    assert!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .is_empty()
    );
    // The requester is told by the `reply` job the expiry enqueued with itself.
    assert!(
        !e.gitea.comments().last().unwrap().contains("expired"),
        "told by the queue, not inline"
    );
    e.r.app.drain().await.unwrap();
    assert!(
        e.gitea.comments().last().unwrap().contains("expired"),
        "{:?}",
        e.gitea.comments()
    );
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
}

/// A failure retrying cannot mend (Gitea refuses the token) is dead-lettered at once with its
/// reason; an outage (503) is retried (`gitea_down_keeps_the_request_and_retries`).
#[tokio::test(flavor = "multi_thread")]
async fn gitea_refusing_the_token_dead_letters_at_once() {
    let e = env(sqlite().await, |c| c.ingest.max_attempts = 10).await;
    draft(&e.r, "0.7.0").await;
    e.gitea.state.lock().unwrap().fail_with = Some(403);
    comment(&e, 1, "bob", "/promote 0.7.0 staging", "created").await;
    let dead = e.r.app.state.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("403"),
        "{:?}",
        dead[0].last_error
    );
}

/// `/cancel <module>@<version>` withdraws that module's request only, not another module's
/// request for the same version number from the same repository.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_names_one_module_exactly() {
    let e = env(sqlite().await, |c| {
        live_needs_two(c);
        let mut chrony = c.modules[0].clone();
        chrony.name = "chrony".into();
        chrony.repository = "acct/modules/chrony".into();
        c.modules.push(chrony);
    })
    .await;
    let redis = draft(&e.r, "0.1.0").await;
    // A chrony 0.1.0, promoted from the same repository.
    let store = &e.r.app.state.store;
    let mut v = store.version_by_id(&redis).await.unwrap().unwrap();
    v.id = "v-chrony-0.1.0".into();
    v.module = "chrony".into();
    v.repository = "acct/modules/chrony".into();
    let a = module_webhook::store::NewAudit {
        version_id: Some(v.id.clone()),
        template_id: None,
        module: Some("chrony".into()),
        actor: "test".into(),
        via: module_webhook::store::Via::Ingest,
        action: module_webhook::store::AuditAction::Ingested,
        from_state: None,
        to_state: Some(Lifecycle::Draft),
        reason: None,
        evidence: serde_json::json!({}),
    };
    assert!(store.write_version(&v, &a).await.unwrap());
    for (n, id) in [(1, "my-redis"), (2, "chrony")] {
        for (m, stage) in [(0, "staging"), (1, "blessed")] {
            comment(
                &e,
                n * 10 + m,
                "bob",
                &format!("/promote {id}@0.1.0 {stage}"),
                "created",
            )
            .await;
        }
        comment(
            &e,
            n * 10 + 5,
            "bob",
            &format!("/promote {id}@0.1.0 live"),
            "created",
        )
        .await;
    }
    assert_eq!(store.pending_requests(None).await.unwrap().len(), 2);
    comment(&e, 99, "bob", "/cancel my-redis@0.1.0", "created").await;
    let left = store.pending_requests(None).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].version_id, "v-chrony-0.1.0");
}

/// An API request has no PR: the engine finds the open PR whose head is the version's commit,
/// records the pending request (via `api`), and the approval given there later completes it,
/// exactly as for a comment. Asking again while pending does not open a second request.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn api_promotion_waits_for_approval_on_the_commits_pull_request(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let e = env(db, |c| {
        c.promotion.live = StagePolicy {
            min_approvals: 1,
            ..Default::default()
        }
    })
    .await;
    let id = draft(&e.r, "0.4.0").await;
    let promote = format!("/versions/{id}/promote");
    for to in ["staging", "blessed"] {
        let (s, v) =
            common::fleet::post(&e.r, &promote, OPS_TOKEN, serde_json::json!({"to": to})).await;
        assert_eq!(s, 200, "{to}: {v}");
    }
    for _ in 0..2 {
        let (s, v) =
            common::fleet::post(&e.r, &promote, OPS_TOKEN, serde_json::json!({"to": "live"})).await;
        assert_eq!(s, 409, "{v}");
        assert_eq!(v["decision"]["outcome"], "pending", "{v}");
        assert_eq!(v["decision"]["missing"][0]["kind"], "approvals", "{v}");
    }
    let pending = e.r.app.state.store.pending_requests(None).await.unwrap();
    assert_eq!(pending.len(), 1, "one request, however often asked");
    assert_eq!(pending[0].via.as_str(), "api");
    assert!(
        pending[0].id.as_str().starts_with("api:"),
        "{}",
        pending[0].id
    );
    assert_eq!(pending[0].pr_number, None, "no PR open yet");

    // The PR is opened after the request and approved there: the review event completes it.
    e.gitea
        .open_pull(GITEA_REPO, 9, "0000000000000000000000000000000000000001");
    e.gitea.open_pull(GITEA_REPO, 12, HEAD);
    e.gitea
        .add_review(GITEA_REPO, 12, review(41, "carol", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Live);
    assert!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .is_empty()
    );
    let calls = e.gitea.calls();
    assert!(
        calls
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("/pulls/12/reviews")),
        "{calls:?}"
    );
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    let live = audit
        .iter()
        .find(|a| a.action == "transition" && a.to_state == Some(Lifecycle::Live))
        .unwrap();
    assert_eq!(
        live.evidence["approvals"][0]["user"], "carol",
        "{:?}",
        live.evidence
    );
}

/// The Gitea adapter reads Actions runs in Gitea's `ActionWorkflowRunsResponse` shape.
#[tokio::test(flavor = "multi_thread")]
async fn workflow_runs_are_read_from_gitea_actions() {
    let gitea = powernode_testkit::gitea::FakeGitea::start();
    for (id, status) in [(1, "completed"), (2, "in_progress")] {
        gitea.add_run(
            GITEA_REPO,
            serde_json::json!({
                "id": id, "display_title": "feat: my-redis module v0.1.0",
                "path": "build.yaml@refs/tags/v0.1.0", "event": "push", "run_attempt": 1,
                "run_number": id, "head_sha": HEAD, "head_branch": "v0.1.0", "status": status,
                "conclusion": if status == "completed" { "success" } else { "" },
                "started_at": "2026-12-02T10:00:00Z", "completed_at": null,
                "html_url": format!("https://gitea.example.org/acme/hello-module/actions/runs/{id}"),
                "repository_id": 3, "actor": {"login": "alice"}, "trigger_actor": {"login": "alice"}
            }),
        );
    }
    let client = module_webhook::gitea::Gitea::new(
        &gitea.server.url,
        Some("gitea-token"),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let (runs, total) = client
        .workflow_runs("acme", "hello-module", 10)
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(runs[0].id, 2);
    assert_eq!(runs[0].status, "in_progress");
    assert_eq!(runs[1].conclusion.as_deref(), Some("success"));
    let calls = gitea.calls();
    assert!(
        calls
            .iter()
            .any(|(m, p)| m == "GET"
                && p.starts_with("/api/v1/repos/acme/hello-module/actions/runs?")),
        "{calls:?}"
    );
}
