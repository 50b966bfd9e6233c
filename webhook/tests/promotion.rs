//! Promotion through the API goes through the same policy as comment commands; every
//! transition and refusal is audited; concurrent requests transition once.

mod common;
use common::{
    app::{DRAFT_DIGEST_BYTE, TestApp},
    *,
};
use module_webhook::{
    config::{ApiToken, PromotionOverride, Role},
    lifecycle::StagePolicy,
    store::Lifecycle,
};
use rstest::rstest;

const BREAK_GLASS: &str = "break-glass-token-0123456789";

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn api_promotion_follows_the_policy_and_is_audited(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = TestApp::builder(backend)
        .api_only()
        .config(|c| {
            c.api.tokens.push(ApiToken {
                name: "oncall".into(),
                token: BREAK_GLASS.into(),
                role: Role::BreakGlass,
            })
        })
        .start()
        .await;
    let id = app.draft("0.1.0").await;

    let (s, v) = app.promote_as(READ_TOKEN, &id, Lifecycle::Staging).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = app.promote(&id, Lifecycle::Live).await;
    assert_eq!(s, 409, "{backend:?}: {v}");
    assert_eq!(v["decision"]["outcome"], "refused");
    assert_eq!(v["decision"]["missing"][0]["kind"], "not_allowed");
    let (s, v) = app.promote(&id, Lifecycle::Staging).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decision"]["to"], "staging");
    let (s, _) = app.promote(&id, Lifecycle::Blessed).await;
    assert_eq!(s, 200);
    // Live needs an approval (the default, as in the seed); the API has no PR to find one.
    let (s, v) = app.promote(&id, Lifecycle::Live).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["decision"]["outcome"], "pending");
    assert_eq!(v["decision"]["missing"][0]["kind"], "approvals");
    assert_eq!(app.state(&id).await, Lifecycle::Blessed);
    // Break-glass waives it, and says so in the audit trail.
    let (s, v) = app.promote_as(BREAK_GLASS, &id, Lifecycle::Live).await;
    assert_eq!(s, 200, "{v}");
    // Yank from live, with a reason; nothing leaves yanked.
    let (s, _) = app.yank(&id, "  ").await;
    assert_eq!(s, 409);
    let (s, _) = app.yank(&id, "CVE-2026-0001").await;
    assert_eq!(s, 200);
    let (s, _) = app.promote_as(BREAK_GLASS, &id, Lifecycle::Live).await;
    assert_eq!(s, 409);
    assert_eq!(app.state(&id).await, Lifecycle::Yanked);

    let a = app.audit_via_api(&id, READ_TOKEN).await;
    let actions: Vec<&str> = a["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "ingested",
            "refused",
            "transition",
            "transition",
            "pending",
            "transition_break_glass",
            "refused",
            "transition",
            "refused"
        ],
        "{backend:?}"
    );
    let bg = &a["audit"].as_array().unwrap()[5];
    assert_eq!(bg["actor"], "api:oncall");
    assert_eq!(bg["evidence"]["break_glass"], true);
    assert_eq!(
        bg["evidence"]["digest"],
        format!("sha256:{}", DRAFT_DIGEST_BYTE.repeat(32))
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_transition_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let app = TestApp::builder(backend).api_only().start().await;
    let id = app.draft("0.2.0").await;
    let codes = app.promote_concurrently(8, &id, Lifecycle::Staging).await;
    assert_eq!(
        codes.iter().filter(|c| **c == 200).count(),
        1,
        "{backend:?}: {codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 7);
    assert_eq!(app.transitions(&id).await, 1);
    assert_eq!(app.state(&id).await, Lifecycle::Staging);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_module_override_requires_soak() {
    let app = TestApp::builder(Backend::Sqlite)
        .api_only()
        .config(|c| {
            c.promotion.overrides.push(PromotionOverride {
                module: Some("my-redis".into()),
                category: None,
                stage: Lifecycle::Staging,
                policy: StagePolicy {
                    min_soak_secs: 3600,
                    ..Default::default()
                },
            })
        })
        .start()
        .await;
    let id = app.draft("0.3.0").await;
    let (s, v) = app.promote(&id, Lifecycle::Staging).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["decision"]["missing"][0]["kind"], "soak");
}

/// The reason an operator gives for a promotion is kept in the audit row, as a yank's is.
#[tokio::test(flavor = "multi_thread")]
async fn api_reasons_reach_the_audit_trail() {
    let app = TestApp::builder(Backend::Sqlite).api_only().start().await;
    let id = app.draft("0.4.0").await;
    let (s, v) = app
        .promote_because(&id, Lifecycle::Staging, "CAB-1234 approved")
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app.yank(&id, "CVE-2026-0002").await;
    assert_eq!(s, 200, "{v}");
    let audit = app.audit(&id).await;
    let reasons: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "transition")
        .map(|a| (a.actor.as_str(), a.reason.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("api:ops", Some("CAB-1234 approved")),
            ("api:ops", Some("CVE-2026-0002"))
        ]
    );
}

/// A transition records the request it carries out in its own transaction: a new request is
/// inserted `done`, a pending one moves to `done`, one that already left `pending` keeps its
/// state, and a transition that loses its compare-and-set writes no request at all.
#[rstest]
#[tokio::test]
async fn a_transition_settles_its_request_in_the_same_transaction(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    use module_webhook::{
        lifecycle::Actor,
        store::{
            AuditAction, NewAudit, PromotionRequest, RequestId, RequestState, Store, VersionId, Via,
        },
    };
    let db = backend.db().await;
    let store = Store::connect(&db.url).await.unwrap();
    let request = |id: &str, version_id: &VersionId, state: RequestState| PromotionRequest {
        id: id.into(),
        version_id: version_id.clone(),
        to_state: Lifecycle::Staging,
        digest: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
        requester: Actor::Gitea("bob".into()),
        via: Via::Comment,
        repository: Some("acme/hello-module".into()),
        pr_number: Some(7),
        state,
        missing: serde_json::json!(["approvals"]),
        reason: None,
        created_at: 1,
        expires_at: i64::MAX,
    };
    let audit = |v: &VersionId| NewAudit {
        version_id: Some(v.clone()),
        template_id: None,
        module: Some("my-redis".into()),
        actor: "gitea:bob".into(),
        via: Via::Comment,
        action: AuditAction::Transition,
        from_state: Some(Lifecycle::Draft),
        to_state: Some(Lifecycle::Staging),
        reason: None,
        evidence: serde_json::json!({}),
    };
    let transition = |v: VersionId, r: Option<PromotionRequest>| {
        let store = store.clone();
        async move {
            store
                .transition_version(
                    &v,
                    Lifecycle::Draft,
                    Lifecycle::Staging,
                    &audit(&v),
                    &[],
                    r.as_ref(),
                )
                .await
                .unwrap()
        }
    };

    // What was recorded before the transition (None: nothing) → what it leaves.
    let cases = [
        ("0.1.0", "a1", "r-new", None, RequestState::Done),
        (
            "0.2.0",
            "a2",
            "r-pending",
            Some(RequestState::Pending),
            RequestState::Done,
        ),
        (
            "0.3.0",
            "a3",
            "r-cancelled",
            Some(RequestState::Cancelled),
            RequestState::Cancelled,
        ),
    ];
    let mut v1 = None;
    for (version, digest, id, before, after) in cases {
        let v = published_in(&store, version, Lifecycle::Draft, digest, "c0ffee").await;
        let r = request(id, &v, before.unwrap_or(RequestState::Pending));
        if before.is_some() {
            assert!(store.insert_request(&r).await.unwrap());
        }
        assert!(transition(v.clone(), Some(r)).await, "{}: {id}", db.name);
        let got = store
            .request_by_id(&RequestId::from(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.state, after, "{}: {id}", db.name);
        if after == RequestState::Done {
            assert_eq!(got.missing, serde_json::json!([]), "{}: {id}", db.name);
        }
        v1.get_or_insert(v);
    }
    let v1 = v1.unwrap();

    // Lost compare-and-set (the version is no longer a draft): nothing written.
    assert!(
        !transition(
            v1.clone(),
            Some(request("r-lost", &v1, RequestState::Pending))
        )
        .await
    );
    assert!(
        store
            .request_by_id(&"r-lost".into())
            .await
            .unwrap()
            .is_none(),
        "{}",
        db.name
    );
}
