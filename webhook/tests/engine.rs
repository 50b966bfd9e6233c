//! The promotion engine driven by signed Gitea webhooks through the real router, with the
//! real Gitea client talking to a fake Gitea that records every call.

mod common;
use common::{
    Backend,
    app::{DRAFT_DIGEST_BYTE, PR, TestApp},
    promotion::{GITEA_REPO, HEAD},
};
use module_webhook::{
    lifecycle::StagePolicy,
    store::{Clock, Lifecycle},
};
use powernode_testkit::gitea::Fault;
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
    let app = TestApp::builder(backend)
        .config(live_needs_two)
        .start()
        .await;
    let id = app.draft("0.1.0").await;
    assert_eq!(app.comment("bob", "/promote 0.1.0 staging").await, 202);
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Staging,
        "{backend:?}: {:?}",
        app.replies()
    );
    app.comment("bob", "/promote my-redis@0.1.0 blessed").await;
    assert_eq!(app.state(&id).await, Lifecycle::Blessed);
    app.comment("alice", "/promote 0.1.0 live").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Blessed,
        "pending: no approvals yet"
    );
    let last = app.expect_reply("pending");
    assert!(last.contains("0 of 2 required approvals"), "{last}");

    let carol = app.approve("carol").await;
    assert_eq!(app.state(&id).await, Lifecycle::Blessed, "one of two");
    let dave = app.approve("dave").await;
    assert_eq!(app.state(&id).await, Lifecycle::Live, "{backend:?}");
    app.expect_reply("blessed → **live**");
    let statuses = app.commit_statuses();
    let (commit, status) = statuses.last().unwrap();
    assert_eq!(commit, HEAD);
    assert_eq!(status["context"], "powernode/lifecycle");
    assert!(status["description"].as_str().unwrap().ends_with("live"));
    // The audit trail names the reviews that counted.
    let audit = app.audit(&id).await;
    let t = audit.iter().rfind(|a| a.action == "transition").unwrap();
    assert_eq!(t.to_state, Some(Lifecycle::Live));
    let ids: Vec<i64> = t.evidence["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["review_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [carol, dave]);
    assert_eq!(
        t.evidence["digest"],
        format!("sha256:{}", DRAFT_DIGEST_BYTE.repeat(32))
    );

    // Yank from live.
    app.comment("bob", "/yank 0.1.0 CVE-2026-0001 in redis.conf")
        .await;
    assert_eq!(app.state(&id).await, Lifecycle::Yanked);
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_that_do_not_count() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.promotion.staging = StagePolicy {
                min_approvals: 1,
                ..Default::default()
            }
        })
        .start()
        .await;
    let id = app.draft("0.2.0").await;
    app.comment("alice", "/promote 0.2.0 staging").await;
    // A read-only reviewer, the requester herself, a dismissed approval, an approval on an old
    // commit, and an approval superseded by a later change request: none counts.
    app.add_review("reader", "APPROVED");
    app.add_review("alice", "APPROVED");
    let dismissed = app.add_review("carol", "APPROVED");
    app.dismiss_review(dismissed);
    app.add_review_on(
        PR,
        "dave",
        "APPROVED",
        "0000000000000000000000000000000000000000",
    );
    app.add_review("bob", "APPROVED");
    app.add_review("bob", "REQUEST_CHANGES");
    app.review_event().await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    // An approval whose webhook arrives after it was dismissed (Gitea sends no webhook for
    // the dismissal): the engine re-reads the reviews and does not count it.
    let dismissed = app.add_review("carol", "APPROVED");
    app.dismiss_review(dismissed);
    app.review_event().await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    // A fresh approval does count.
    app.add_review("carol", "APPROVED");
    app.reevaluate().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_check_then_status_event_and_soak_then_timer() {
    let clock = Clock::manual();
    let app = TestApp::builder(Backend::Sqlite)
        .clock(clock.clone())
        .config(|c| {
            c.promotion.staging = StagePolicy {
                required_checks: vec!["module-builder / build".into()],
                ..Default::default()
            };
            c.promotion.blessed = StagePolicy {
                min_soak_secs: 1,
                ..Default::default()
            };
        })
        .start()
        .await;
    let id = app.draft("0.3.0").await;
    app.set_check("module-builder / build", "failure");
    app.comment("bob", "/promote 0.3.0 staging").await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    app.expect_reply("is failure, not success");
    app.set_check("module-builder / build", "success");
    app.status_event().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);

    app.comment("bob", "/promote 0.3.0 blessed").await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging, "soak not elapsed");
    app.expect_reply("soak");
    clock.advance(std::time::Duration::from_millis(1100));
    app.reevaluate().await;
    assert_eq!(app.state(&id).await, Lifecycle::Blessed);
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_comments_non_writers_duplicates_and_help() {
    let app = TestApp::start(Backend::Sqlite).await;
    let id = app.draft("0.4.0").await;
    app.comment(
        "bob",
        "Like this:\n```\n/promote 0.4.0 staging\n```\n> /promote 0.4.0 staging",
    )
    .await;
    app.edit_comment("bob", "/promote 0.4.0 staging").await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    assert!(app.replies().is_empty(), "no reply to ignored comments");

    app.comment("reader", "/promote 0.4.0 staging").await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    app.expect_reply("needs write permission");

    // The same delivery twice: one transition.
    assert_eq!(app.comment("bob", "/promote 0.4.0 staging").await, 202);
    assert_eq!(app.redeliver_last_comment().await, 200);
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    assert_eq!(app.transitions(&id).await, 1);

    app.comment("bob", "/frobnicate").await;
    app.expect_reply("Unknown command `/frobnicate`");
    app.comment("bob", "/status").await;
    app.expect_reply("| 0.4.0 | staging |");
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_down_keeps_the_request_and_retries() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.ingest.max_attempts = 10)
        .start()
        .await;
    let id = app.draft("0.5.0").await;
    app.gitea_goes_down();
    assert_eq!(app.post_comment("bob", "/promote 0.5.0 staging").await, 202);
    // Two attempts fail while Gitea is down; the job is kept for a retry.
    assert!(app.run_job().await);
    assert!(app.run_job().await);
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    assert!(app.has_pending_jobs().await, "nothing lost");
    app.gitea_recovers();
    app.step_worker().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    assert_eq!(app.replies().len(), 1, "one reply");
}

/// A 429 with `Retry-After: 30`: the call is not re-sent by the client, and the queue (whose
/// backoff is 0 here, so any earlier retry would show) runs nothing until Gitea's time has
/// passed; then the promotion completes once.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_429_retry_after_is_honoured_without_a_tight_loop() {
    let clock = Clock::manual();
    let app = TestApp::builder(Backend::Sqlite)
        .clock(clock.clone())
        .start()
        .await;
    let id = app.draft("0.8.0").await;
    app.gitea_fault(Fault::Status {
        status: 429,
        retry_after: Some(30),
    });
    let before = app.gitea_calls().len();
    assert_eq!(app.post_comment("bob", "/promote 0.8.0 staging").await, 202);
    assert!(app.run_job().await, "the attempt ran");
    assert_eq!(
        app.gitea_calls().len() - before,
        1,
        "one call, answered 429, not re-sent"
    );
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    clock.advance(std::time::Duration::from_secs(29));
    assert!(!app.run_job().await, "nothing is due before Retry-After");
    assert_eq!(app.gitea_calls().len() - before, 1);
    clock.advance(std::time::Duration::from_secs(2));
    app.step_worker().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    assert_eq!(app.replies().len(), 1, "one reply");
    assert_eq!(app.transitions(&id).await, 1);
}

/// 500 and 502: each attempt makes exactly one call (no retry loop inside the client), the
/// job stays queued, and the promotion completes once Gitea answers.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_5xx_costs_one_call_per_attempt_and_loses_nothing() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.ingest.max_attempts = 10)
        .start()
        .await;
    let id = app.draft("0.8.1").await;
    for status in [500, 502] {
        app.gitea_fault(Fault::Status {
            status,
            retry_after: None,
        });
    }
    let before = app.gitea_calls().len();
    assert_eq!(app.post_comment("bob", "/promote 0.8.1 staging").await, 202);
    for n in 1..=2 {
        assert!(app.run_job().await);
        assert_eq!(app.gitea_calls().len() - before, n, "attempt {n}: one call");
        assert_eq!(app.state(&id).await, Lifecycle::Draft);
        assert!(app.has_pending_jobs().await, "nothing lost");
    }
    app.step_worker().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    assert_eq!(app.replies().len(), 1, "one reply");
    assert_eq!(app.transitions(&id).await, 1);
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
    let app = TestApp::builder(backend)
        .config(|c| c.ingest.max_attempts = 10)
        .start()
        .await;
    let id = app.draft("0.8.3").await;
    app.gitea_refuses("/statuses/", 503);
    assert_eq!(app.post_comment("bob", "/promote 0.8.3 staging").await, 202);
    for _ in 0..2 {
        assert!(app.run_job().await, "a job ran");
    }
    assert_eq!(app.state(&id).await, Lifecycle::Staging, "{backend:?}");
    assert!(app.commit_statuses().is_empty());
    assert!(
        app.has_pending_jobs().await,
        "{backend:?}: the status is kept for a retry"
    );
    app.gitea_recovers();
    app.step_worker().await;
    let statuses = app.commit_statuses();
    assert_eq!(statuses.len(), 1, "{backend:?}: {statuses:?}");
    let (commit, status) = &statuses[0];
    assert_eq!(commit, HEAD);
    assert_eq!(status["context"], "powernode/lifecycle");
    assert_eq!(status["state"], "success");
    assert!(
        status["description"].as_str().unwrap().ends_with("staging"),
        "{statuses:?}"
    );
    assert!(app.dead_letters().await.is_empty());
    let replies = app.replies();
    assert_eq!(replies.len(), 1, "one reply: {replies:?}");
    assert!(replies[0].contains("**staging**"), "{replies:?}");
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
    let app = TestApp::builder(backend)
        .config(|c| {
            c.ingest.max_attempts = 10;
            c.promotion.staging = StagePolicy {
                min_approvals: 1,
                ..Default::default()
            };
        })
        .start()
        .await;
    let id = app.draft("0.8.4").await;
    app.comment("bob", "/promote 0.8.4 staging").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Draft,
        "{backend:?}: pending"
    );
    app.add_review("carol", "APPROVED");
    app.gitea_refuses("/comments", 503);
    let status = app.post_review_event().await;
    assert!(status == 202 || status == 200, "{status}");
    // The re-evaluation, then its follow-ups (the reply fails at least once).
    let mut ran = 0;
    while ran < 3 && app.run_job().await {
        ran += 1;
    }
    assert!(
        ran >= 2,
        "{backend:?}: the re-evaluation and a follow-up ran"
    );
    assert_eq!(app.state(&id).await, Lifecycle::Staging, "{backend:?}");
    let later = |c: &String| c.contains("(requirements now met)");
    assert!(!app.replies().iter().any(later));
    assert!(
        app.has_pending_jobs().await,
        "{backend:?}: the reply is kept for a retry"
    );
    app.gitea_recovers();
    app.step_worker().await;
    let replies = app.replies();
    assert_eq!(
        replies.iter().filter(|c| later(c)).count(),
        1,
        "{backend:?}: {replies:?}"
    );
    assert!(replies.last().unwrap().starts_with("@bob "), "{replies:?}");
    assert!(app.dead_letters().await.is_empty());
}

/// A Gitea that accepts the connection and then says nothing: the attempt gives up after
/// `[gitea] timeout_secs` (not the 3 s the fake stalls), the job is kept, and the next
/// attempt completes the promotion.
#[tokio::test(flavor = "multi_thread")]
async fn gitea_timing_out_fails_the_attempt_not_the_job() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.ingest.max_attempts = 10;
            c.gitea.as_mut().unwrap().timeout_secs = 1;
        })
        .start()
        .await;
    let id = app.draft("0.8.2").await;
    app.gitea_fault(Fault::Stall(std::time::Duration::from_secs(3)));
    assert_eq!(app.post_comment("bob", "/promote 0.8.2 staging").await, 202);
    let started = std::time::Instant::now();
    assert!(app.run_job().await);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2_500),
        "the attempt waited {took:?}: the timeout did not apply"
    );
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    assert!(app.has_pending_jobs().await, "nothing lost");
    app.step_worker().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    assert_eq!(app.replies().len(), 1, "one reply");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_stage_cancel_and_expiry() {
    let clock = Clock::manual();
    let app = TestApp::builder(Backend::Sqlite)
        .clock(clock.clone())
        .config(|c| {
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
        .start()
        .await;
    let id = app.draft("0.6.0").await;
    // auto: nothing happens until the required check passes, then it promotes by itself.
    app.reevaluate().await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    app.set_check("module-builder / build", "success");
    app.reevaluate().await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    let audit = app.audit(&id).await;
    let t = audit.iter().rfind(|a| a.action == "transition").unwrap();
    assert_eq!((t.actor.as_str(), t.via.as_str()), ("auto", "auto"));

    // A pending request can be cancelled by its requester.
    app.comment("bob", "/promote 0.6.0 blessed").await;
    assert_eq!(app.pending_requests().await.len(), 1);
    app.comment("carol", "/cancel").await;
    assert_eq!(
        app.pending_requests().await.len(),
        1,
        "only the requester cancels"
    );
    app.comment("bob", "/cancel 0.6.0").await;
    assert!(app.pending_requests().await.is_empty());
    app.expect_reply("cancelled 1 pending request(s)");

    // And expires (the TTL here is 0).
    app.comment("bob", "/promote 0.6.0 blessed").await;
    clock.advance(std::time::Duration::from_millis(5));
    app.reevaluate().await;
    assert!(app.pending_requests().await.is_empty());
    // The requester is told by the `reply` job the expiry enqueued with itself.
    assert!(
        !app.last_reply().contains("expired"),
        "told by the queue, not inline"
    );
    app.step_worker().await;
    app.expect_reply("expired");
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
}

/// A failure retrying cannot mend (Gitea refuses the token) is dead-lettered at once with its
/// reason; an outage (503) is retried (`gitea_down_keeps_the_request_and_retries`).
#[tokio::test(flavor = "multi_thread")]
async fn gitea_refusing_the_token_dead_letters_at_once() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.ingest.max_attempts = 10)
        .start()
        .await;
    app.draft("0.7.0").await;
    app.gitea_answers_every_call(403);
    app.comment("bob", "/promote 0.7.0 staging").await;
    let dead = app.dead_letters().await;
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
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            live_needs_two(c);
            let mut chrony = c.modules[0].clone();
            chrony.name = "chrony".into();
            chrony.repository = "acct/modules/chrony".into();
            c.modules.push(chrony);
        })
        .start()
        .await;
    app.draft("0.1.0").await;
    // A chrony 0.1.0, promoted from the same repository.
    app.draft_of("chrony", "acct/modules/chrony", "0.1.0").await;
    for module in ["my-redis", "chrony"] {
        for stage in ["staging", "blessed", "live"] {
            app.comment("bob", &format!("/promote {module}@0.1.0 {stage}"))
                .await;
        }
    }
    assert_eq!(app.pending_requests().await.len(), 2);
    app.comment("bob", "/cancel my-redis@0.1.0").await;
    let left = app.pending_requests().await;
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
    let app = TestApp::builder(backend)
        .config(|c| {
            c.promotion.live = StagePolicy {
                min_approvals: 1,
                ..Default::default()
            }
        })
        .start()
        .await;
    let id = app.draft("0.4.0").await;
    for to in [Lifecycle::Staging, Lifecycle::Blessed] {
        let (s, v) = app.promote(&id, to).await;
        assert_eq!(s, 200, "{to}: {v}");
    }
    for _ in 0..2 {
        let (s, v) = app.promote(&id, Lifecycle::Live).await;
        assert_eq!(s, 409, "{v}");
        assert_eq!(v["decision"]["outcome"], "pending", "{v}");
        assert_eq!(v["decision"]["missing"][0]["kind"], "approvals", "{v}");
    }
    let pending = app.pending_requests().await;
    assert_eq!(pending.len(), 1, "one request, however often asked");
    assert_eq!(pending[0].via.as_str(), "api");
    assert!(
        pending[0].id.as_str().starts_with("api:"),
        "{}",
        pending[0].id
    );
    assert_eq!(pending[0].pr_number, None, "no PR open yet");

    // The PR is opened after the request and approved there: the review event completes it.
    app.open_pull(9, "0000000000000000000000000000000000000001");
    app.open_pull(12, HEAD);
    app.add_review_on(12, "carol", "APPROVED", HEAD);
    app.review_event().await;
    assert_eq!(app.state(&id).await, Lifecycle::Live);
    assert!(app.pending_requests().await.is_empty());
    let calls = app.gitea_calls();
    assert!(
        calls
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("/pulls/12/reviews")),
        "{calls:?}"
    );
    let audit = app.audit(&id).await;
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

/// The promotion timer re-evaluates on the replica holding the singleton lock only: while
/// another replica holds it, a tick here does nothing (ARCHITECTURE.md: one replica at a
/// time). PostgreSQL only: SQLite serves one receiver, whose lock is always held.
#[tokio::test(flavor = "multi_thread")]
async fn the_promotion_timer_runs_only_on_the_replica_holding_its_lock() {
    let app = TestApp::builder(Backend::Postgres)
        .config(|c| {
            c.promotion.staging = StagePolicy {
                auto: true,
                required_checks: vec!["module-builder / build".into()],
                ..Default::default()
            };
        })
        .start()
        .await;
    let id = app.draft("0.7.0").await;
    app.set_check("module-builder / build", "success");
    let other = app.another_replica_holds_the_timer().await;
    app.timer_tick().await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Draft,
        "another replica holds the timer: nothing re-evaluated here"
    );
    drop(other);
    app.timer_tick().await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Staging,
        "the lock holder promotes"
    );
}
