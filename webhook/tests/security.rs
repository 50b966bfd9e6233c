//! Regression tests for the security review (issue 8), through the real router and worker
//! against a fake Gitea. Each test is named for the hole it closes; see SECURITY.md.

mod common;
use common::{app::TestApp, *};
use module_webhook::{
    config::{Config, PromotionOverride},
    lifecycle::StagePolicy,
    store::{Lifecycle, RequestState},
};
use rstest::rstest;
use std::time::Duration;

fn needs_one_approval(c: &mut Config) {
    let one = StagePolicy {
        min_approvals: 1,
        ..Default::default()
    };
    c.promotion.staging = one.clone();
    c.promotion.blessed = one.clone();
    c.promotion.live = one;
}

/// Item 1: a command posted in another repository never acts on a module, and no evidence is
/// read from the commenter's repository.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item1_cross_repository_command_is_refused_and_audited(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let id = app.draft("1.0.0").await;
    // mallory owns her playground, and nothing of the module's repository.
    app.grant("mallory/playground", "mallory", "owner");
    for cmd in [
        "/promote my-redis@1.0.0 staging",
        "/yank my-redis@1.0.0 gone",
        "/cancel my-redis@1.0.0",
    ] {
        app.comment_in("mallory/playground", "mallory", cmd).await;
        let reply = app.last_reply();
        assert!(
            reply.contains("my-redis is promoted only from acme/hello-module"),
            "{cmd}: {reply}"
        );
    }
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    let refusals: Vec<_> = app
        .audit(&id)
        .await
        .into_iter()
        .filter(|a| a.action == "refused")
        .collect();
    assert_eq!(refusals.len(), 3, "every refusal is audited");
    assert!(refusals.iter().all(|a| a.actor == "gitea:mallory"));
    assert_eq!(refusals[0].evidence["repository"], "mallory/playground");
    // Not one question about permissions or reviews went to mallory's repository.
    let asked: Vec<_> = app
        .gitea_calls()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("mallory/playground"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    // Replies go where the command was posted.
    assert!(
        app.reply_repositories()
            .iter()
            .all(|repo| repo == "mallory/playground")
    );
}

/// Item 2: a Gitea user whose login equals a magic word is a Gitea user.
#[tokio::test(flavor = "multi_thread")]
async fn item2_gitea_user_named_auto_gets_no_permission_bypass() {
    let app = TestApp::start(Backend::Sqlite).await;
    let id = app.draft("1.0.0").await;
    for user in ["auto", "api:ops"] {
        app.comment(user, "/promote 1.0.0 staging").await;
        assert_eq!(app.state(&id).await, Lifecycle::Draft, "{user}");
        app.expect_reply(
            "needs write permission on the module's repository; the requester has no permission",
        );
    }
    let refused: Vec<_> = app
        .audit(&id)
        .await
        .into_iter()
        .filter(|a| a.action == "refused")
        .map(|a| a.actor)
        .collect();
    assert_eq!(refused, ["gitea:auto", "gitea:api:ops"]);
}

/// Item 5: what Markdown renders as code, a quote or a comment never runs.
#[tokio::test(flavor = "multi_thread")]
async fn item5_markdown_hidden_commands_do_not_run() {
    let app = TestApp::start(Backend::Sqlite).await;
    let id = app.draft("1.0.0").await;
    for body in [
        "````\n```\n/promote 1.0.0 staging\n````",
        "<!-- /yank 1.0.0 hidden -->",
        "<!--\n/yank 1.0.0 hidden\n-->",
        "> quoting an earlier comment\n/yank 1.0.0 hidden",
    ] {
        app.comment("bob", body).await;
        assert_eq!(app.state(&id).await, Lifecycle::Draft, "{body:?}");
    }
    assert!(app.replies().is_empty(), "{:?}", app.replies());
}

/// Item 6: an empty or short hook secret would let anyone forge deliveries.
#[tokio::test(flavor = "multi_thread")]
async fn item6_empty_or_short_hook_secrets_are_refused_at_start_up() {
    let db = sqlite().await;
    type Spoil = fn(&mut Config);
    let cases: [(&str, Spoil); 4] = [
        ("hooks.harbor_auth", |c| {
            c.hooks.harbor_auth = Some(String::new())
        }),
        ("hooks.gitea_secrets[1]", |c| {
            c.hooks.gitea_secrets = vec![GITEA_SECRET.into(), String::new()]
        }),
        ("hooks.distribution_token", |c| {
            c.hooks.distribution_token = Some("short".into())
        }),
        ("hooks.gitea_secrets[0]", |c| {
            c.hooks.gitea_secrets = vec!["               ".into()]
        }),
    ];
    for (key, spoil) in cases {
        let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
        spoil(&mut cfg);
        let err = module_webhook::app::App::new(cfg)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key) && err.contains("at least 16"),
            "{key}: {err}"
        );
    }
}

/// Item 8: an approval counts only for the request it answers, on the version's commit, and a
/// version without a commit cannot be approved.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item8_approvals_count_only_for_the_request_they_answer(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = TestApp::builder(backend)
        .config(needs_one_approval)
        .start()
        .await;
    let id = app.draft("1.0.0").await;
    // An approval from before the request does not carry it.
    app.add_old_review("dave", "APPROVED");
    app.comment("alice", "/promote 1.0.0 staging").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Draft,
        "{}",
        app.last_reply()
    );
    app.approve("bob").await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    // The approval that carried staging does not carry blessed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.comment("alice", "/promote 1.0.0 blessed").await;
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    app.expect_reply("0 of 1 required approvals");
    app.approve("carol").await;
    assert_eq!(app.state(&id).await, Lifecycle::Blessed);
}

#[tokio::test(flavor = "multi_thread")]
async fn item8_a_version_without_a_commit_cannot_be_approved() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(needs_one_approval)
        .start()
        .await;
    app.draft("1.0.0").await;
    // The same version, but its commit unknown.
    let id = app.draft_without_commit("1.0.1").await;
    app.add_review("bob", "APPROVED");
    app.comment("alice", "/promote 1.0.1 staging").await;
    app.approve("carol").await;
    assert_eq!(app.state(&id).await, Lifecycle::Draft);
    let replies = app.replies();
    assert!(
        replies[0].contains("refused") && replies[0].contains("no source commit"),
        "{replies:?}"
    );
}

/// Item 9: a category override applies by the category pinned in configuration, never the
/// one the artifact's own manifest declares.
#[tokio::test(flavor = "multi_thread")]
async fn item9_category_override_follows_the_pinned_category_not_the_manifest() {
    // A lax policy for `userland` (what my-redis's manifest declares): readers may promote.
    let lax = |c: &mut Config| {
        c.promotion.overrides.push(PromotionOverride {
            module: None,
            category: Some("userland".into()),
            stage: Lifecycle::Staging,
            policy: StagePolicy {
                who: module_webhook::lifecycle::Permission::Read,
                ..Default::default()
            },
        })
    };
    let app = TestApp::builder(Backend::Sqlite).config(lax).start().await;
    let id = app.draft("1.0.0").await;
    app.comment("reader", "/promote 1.0.0 staging").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Draft,
        "the manifest's category chose nothing"
    );
    // Pinned in the module's entry, the override applies.
    let app = TestApp::builder(Backend::Sqlite)
        .config(lax)
        .config(|c| c.modules[0].category = Some("userland".into()))
        .start()
        .await;
    let id = app.draft("1.0.0").await;
    app.comment("reader", "/promote 1.0.0 staging").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Staging,
        "{}",
        app.last_reply()
    );
}

/// Item 10: a `/cancel` that lands while a re-evaluation is deciding stays cancelled.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item10_cancel_is_not_undone_by_a_concurrent_reevaluation(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = TestApp::builder(backend)
        .config(needs_one_approval)
        .start()
        .await;
    app.draft("1.0.0").await;
    app.comment("bob", "/promote 1.0.0 staging").await;
    let pending = app.pending_requests().await;
    assert_eq!(pending.len(), 1);
    // Hold the re-evaluation after it read the pending request, while it reads reviews.
    let (arrived, release) = app.hold_next_review_read();
    let reeval = app.reevaluate_in_background();
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the re-evaluation reads reviews");
    app.comment("bob", "/cancel").await;
    app.expect_reply("cancelled 1 pending request(s)");
    drop(release);
    reeval.await.unwrap();
    assert_eq!(
        app.request(&pending[0].id).await.state,
        RequestState::Cancelled
    );
    assert!(app.pending_requests().await.is_empty());
}

/// Item 11: a job that runs longer than its lease keeps it (heartbeat) and runs once.
#[tokio::test(flavor = "multi_thread")]
async fn item11_a_long_job_keeps_its_lease_and_runs_once() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.ingest.lease_secs = 1)
        .start()
        .await;
    let id = app.draft("1.0.0").await;
    let (arrived, release) = app.hold_next_review_read();
    assert_eq!(app.post_comment("bob", "/promote 1.0.0 staging").await, 202);
    let first = app.run_job_in_background();
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the job reads reviews");
    // Past the 1 s lease: another worker finds nothing to take over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!app.run_job().await, "the running job's lease was renewed");
    drop(release);
    assert!(first.await.unwrap());
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
    // What is left is the transition's own follow-up (the commit status), not the command.
    app.step_worker().await;
    assert!(!app.has_pending_jobs().await);
    assert_eq!(app.replies().len(), 1, "one run, one reply");
    assert_eq!(app.transitions(&id).await, 1);
}

/// Item 11: reviews are read past Gitea's first page.
#[tokio::test(flavor = "multi_thread")]
async fn item11_reviews_are_read_past_the_first_page() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(needs_one_approval)
        .start()
        .await;
    let id = app.draft("1.0.0").await;
    app.comment("alice", "/promote 1.0.0 staging").await;
    for i in 0..70 {
        app.add_review(&format!("user{i}"), "COMMENT");
    }
    app.approve("carol").await;
    assert_eq!(
        app.state(&id).await,
        Lifecycle::Staging,
        "{}",
        app.last_reply()
    );
    let pages: Vec<_> = app
        .gitea_calls()
        .into_iter()
        .filter(|(_, p)| p.contains("/reviews?"))
        .map(|(_, p)| p)
        .collect();
    assert!(pages.iter().any(|p| p.contains("page=2")), "{pages:?}");
}

/// Item 13: blobs are staged under the receiver's data directory (private to it), not the
/// system's shared temporary directory.
#[tokio::test(flavor = "multi_thread")]
async fn item13_blobs_are_staged_under_the_data_directory() {
    use std::os::unix::fs::PermissionsExt;
    let db = sqlite().await;
    let cfg = config(&db.url, "127.0.0.1:1", vec![]);
    let staging = cfg.data_dir.join("staging");
    let r = serve(cfg).await;
    assert_eq!(r.app.worker.ctx.work_dir.parent(), Some(staging.as_path()));
    let mode = std::fs::metadata(&staging).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}
