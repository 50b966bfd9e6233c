//! Regression tests for the security review (issue 8), through the real router and worker
//! against a fake Gitea. Each test is named for the hole it closes; see SECURITY.md.

mod common;
use common::{promotion::*, *};
use module_webhook::{
    config::{Config, PromotionOverride},
    lifecycle::StagePolicy,
    store::{Lifecycle, RequestState},
};
use powernode_testkit::gitea::{review, review_at};
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

async fn audit(
    e: &Env,
    id: &module_webhook::store::VersionId,
) -> Vec<module_webhook::store::AuditRow> {
    e.r.app.state.store.audit_of(id).await.unwrap()
}

/// Item 1: a command posted in another repository never acts on a module, and no evidence is
/// read from the commenter's repository.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item1_cross_repository_command_is_refused_and_audited(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let e = env(db, |_| {}).await;
    let id = draft(&e.r, "1.0.0").await;
    // mallory owns her playground, and nothing of the module's repository.
    e.gitea.grant("mallory/playground", "mallory", "owner");
    for (n, cmd) in [
        "/promote my-redis@1.0.0 staging",
        "/yank my-redis@1.0.0 gone",
        "/cancel my-redis@1.0.0",
    ]
    .into_iter()
    .enumerate()
    {
        comment_in(
            &e,
            "mallory/playground",
            n as i64 + 1,
            "mallory",
            cmd,
            "created",
        )
        .await;
        let reply = e.last_reply();
        assert!(
            reply.contains("my-redis is promoted only from acme/hello-module"),
            "{cmd}: {reply}"
        );
    }
    assert_eq!(state(&e, &id).await, Lifecycle::Draft);
    let refusals: Vec<_> = audit(&e, &id)
        .await
        .into_iter()
        .filter(|a| a.action == "refused")
        .collect();
    assert_eq!(refusals.len(), 3, "every refusal is audited");
    assert!(refusals.iter().all(|a| a.actor == "gitea:mallory"));
    assert_eq!(refusals[0].evidence["repository"], "mallory/playground");
    // Not one question about permissions or reviews went to mallory's repository.
    let asked: Vec<_> = e
        .gitea
        .calls()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("mallory/playground"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    // Replies go where the command was posted.
    let posted = e.gitea.state.lock().unwrap().comments.clone();
    assert!(
        posted
            .iter()
            .all(|(repo, _, _)| repo == "mallory/playground")
    );
}

/// Item 2: a Gitea user whose login equals a magic word is a Gitea user.
#[tokio::test(flavor = "multi_thread")]
async fn item2_gitea_user_named_auto_gets_no_permission_bypass() {
    let e = env(sqlite().await, |_| {}).await;
    let id = draft(&e.r, "1.0.0").await;
    for (n, user) in ["auto", "api:ops"].into_iter().enumerate() {
        comment(&e, n as i64 + 1, user, "/promote 1.0.0 staging", "created").await;
        assert_eq!(state(&e, &id).await, Lifecycle::Draft, "{user}");
        assert!(
            e.last_reply().contains(
                "needs write permission on the module's repository; the requester has no permission"
            ),
            "{user}: {}",
            e.last_reply()
        );
    }
    let refused: Vec<_> = audit(&e, &id)
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
    let e = env(sqlite().await, |_| {}).await;
    let id = draft(&e.r, "1.0.0").await;
    for (n, body) in [
        "````\n```\n/promote 1.0.0 staging\n````",
        "<!-- /yank 1.0.0 hidden -->",
        "<!--\n/yank 1.0.0 hidden\n-->",
        "> quoting an earlier comment\n/yank 1.0.0 hidden",
    ]
    .into_iter()
    .enumerate()
    {
        comment(&e, n as i64 + 1, "bob", body, "created").await;
        assert_eq!(state(&e, &id).await, Lifecycle::Draft, "{body:?}");
    }
    assert!(e.gitea.comments().is_empty(), "{:?}", e.gitea.comments());
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
    let db = backend.db().await;
    let e = env(db, needs_one_approval).await;
    let id = draft(&e.r, "1.0.0").await;
    // An approval from before the request does not carry it.
    e.gitea
        .add_review(GITEA_REPO, 7, review_at(30, "dave", "APPROVED", HEAD));
    comment(&e, 1, "alice", "/promote 1.0.0 staging", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Draft, "{}", e.last_reply());
    e.gitea
        .add_review(GITEA_REPO, 7, review(31, "bob", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    // The approval that carried staging does not carry blessed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    comment(&e, 2, "alice", "/promote 1.0.0 blessed", "created").await;
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    assert!(
        e.last_reply().contains("0 of 1 required approvals"),
        "{}",
        e.last_reply()
    );
    e.gitea
        .add_review(GITEA_REPO, 7, review(32, "carol", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, &id).await, Lifecycle::Blessed);
}

#[tokio::test(flavor = "multi_thread")]
async fn item8_a_version_without_a_commit_cannot_be_approved() {
    let e = env(sqlite().await, needs_one_approval).await;
    let id = published(&e.r, "1.0.0", Lifecycle::Draft, "cd", HEAD).await;
    // The same version, but its commit unknown.
    let store = &e.r.app.state.store;
    let mut v = store.version_by_id(&id).await.unwrap().unwrap();
    v.id = "v-my-redis-1.0.1".into();
    v.version = "1.0.1".into();
    v.source_commit = None;
    let a = module_webhook::store::NewAudit {
        version_id: Some(v.id.clone()),
        template_id: None,
        module: Some("my-redis".into()),
        actor: "test".into(),
        via: module_webhook::store::Via::Ingest,
        action: module_webhook::store::AuditAction::Ingested,
        from_state: None,
        to_state: Some(Lifecycle::Draft),
        reason: None,
        evidence: serde_json::json!({}),
    };
    assert!(store.write_version(&v, &a).await.unwrap());
    e.gitea
        .add_review(GITEA_REPO, 7, review(40, "bob", "APPROVED", HEAD));
    comment(&e, 1, "alice", "/promote 1.0.1 staging", "created").await;
    e.gitea
        .add_review(GITEA_REPO, 7, review(41, "carol", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(state(&e, "v-my-redis-1.0.1").await, Lifecycle::Draft);
    assert!(
        e.gitea.comments()[0].contains("refused")
            && e.gitea.comments()[0].contains("no source commit"),
        "{:?}",
        e.gitea.comments()
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
    let e = env(sqlite().await, lax).await;
    let id = draft(&e.r, "1.0.0").await;
    comment(&e, 1, "reader", "/promote 1.0.0 staging", "created").await;
    assert_eq!(
        state(&e, &id).await,
        Lifecycle::Draft,
        "the manifest's category chose nothing"
    );
    // Pinned in the module's entry, the override applies.
    let e = env(sqlite().await, |c| {
        lax(c);
        c.modules[0].category = Some("userland".into());
    })
    .await;
    let id = draft(&e.r, "1.0.0").await;
    comment(&e, 1, "reader", "/promote 1.0.0 staging", "created").await;
    assert_eq!(
        state(&e, &id).await,
        Lifecycle::Staging,
        "{}",
        e.last_reply()
    );
}

/// Item 10: a `/cancel` that lands while a re-evaluation is deciding stays cancelled.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item10_cancel_is_not_undone_by_a_concurrent_reevaluation(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let e = env(db, needs_one_approval).await;
    draft(&e.r, "1.0.0").await;
    comment(&e, 1, "bob", "/promote 1.0.0 staging", "created").await;
    let pending = e.r.app.state.store.pending_requests(None).await.unwrap();
    assert_eq!(pending.len(), 1);
    // Hold the re-evaluation after it read the pending request, while it reads reviews.
    let (arrived, release) = e.gitea.hold_next_reviews();
    let engine = e.engine();
    let reeval = tokio::spawn(async move { engine.reevaluate(None).await.map(|_| ()) });
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the re-evaluation reads reviews");
    comment(&e, 2, "bob", "/cancel", "created").await;
    assert!(e.last_reply().contains("cancelled 1 pending request(s)"));
    drop(release);
    reeval.await.unwrap().unwrap();
    let r =
        e.r.app
            .state
            .store
            .request_by_id(&pending[0].id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(r.state, RequestState::Cancelled);
    assert!(
        e.r.app
            .state
            .store
            .pending_requests(None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Item 11: a job that runs longer than its lease keeps it (heartbeat) and runs once.
#[tokio::test(flavor = "multi_thread")]
async fn item11_a_long_job_keeps_its_lease_and_runs_once() {
    let e = env(sqlite().await, |c| c.ingest.lease_secs = 1).await;
    let id = draft(&e.r, "1.0.0").await;
    let (arrived, release) = e.gitea.hold_next_reviews();
    assert_eq!(
        post_comment_queued(&e, "long-1", "/promote 1.0.0 staging").await,
        202
    );
    let a = e.r.app.worker.clone();
    let first = tokio::spawn(async move { a.run_once().await.unwrap() });
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the job reads reviews");
    // Past the 1 s lease: another worker finds nothing to take over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !e.r.app.worker.run_once().await.unwrap(),
        "the running job's lease was renewed"
    );
    drop(release);
    assert!(first.await.unwrap());
    assert_eq!(state(&e, &id).await, Lifecycle::Staging);
    // What is left is the transition's own follow-up (the commit status), not the command.
    e.r.app.drain().await.unwrap();
    assert!(!has_pending_jobs(&e.r.app.state.store).await);
    assert_eq!(e.gitea.comments().len(), 1, "one run, one reply");
    let audit = e.r.app.state.store.audit_of(&id).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "transition").count(), 1);
}

/// Item 11: reviews are read past Gitea's first page.
#[tokio::test(flavor = "multi_thread")]
async fn item11_reviews_are_read_past_the_first_page() {
    let e = env(sqlite().await, needs_one_approval).await;
    let id = draft(&e.r, "1.0.0").await;
    comment(&e, 1, "alice", "/promote 1.0.0 staging", "created").await;
    for i in 0..70 {
        e.gitea.add_review(
            GITEA_REPO,
            7,
            review(100 + i, &format!("user{i}"), "COMMENT", HEAD),
        );
    }
    e.gitea
        .add_review(GITEA_REPO, 7, review(500, "carol", "APPROVED", HEAD));
    review_event(&e).await;
    assert_eq!(
        state(&e, &id).await,
        Lifecycle::Staging,
        "{}",
        e.last_reply()
    );
    let pages: Vec<_> = e
        .gitea
        .calls()
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
