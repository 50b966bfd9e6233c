//! What a signed desired state may say (issue 25): yank is the emergency switch, so no
//! served state names a version that is not live, even when the template cannot be composed
//! without it (it is served degraded, loudly); and every state carries its template, a
//! sequence and an expiry, re-issued before it runs out.

mod common;
use common::{fleet::*, release::*, *};
use powernode_module::{desired_state::DesiredState, lifecycle::StagePolicy};
use powernode_testkit::registry::TestRegistry;
use rstest::rstest;
use serde_json::{Value, json};

const MODULES: [&str; 3] = ["system-base", "security-hardening", "my-redis"];

/// A receiver (going by `clock`) with the example modules live and a template `edge` with
/// `assigned`; an instance `node-1` of it, and its token.
async fn edge(
    db: &TestDb,
    clock: module_webhook::store::Clock,
    assigned: &[&str],
) -> (Running, TestRegistry, String) {
    let reg = TestRegistry::start();
    let k = keys();
    let policies = MODULES
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    let r = serve_with_clock(cfg, clock).await;
    for name in MODULES {
        let dir = module(name);
        let v = if name == "my-redis" { "0.1.0" } else { "1.0.0" };
        release_live(&r, &reg, &k, dir.path(), name, v).await;
    }
    template_with(&r, "edge", assigned).await;
    let token = r.fleet().register("node-1", "edge").await;
    (r, reg, token)
}

fn names(doc: &DesiredState) -> Vec<&str> {
    doc.modules.iter().map(|m| m.name.as_str()).collect()
}

async fn template(r: &Running) -> Value {
    r.fleet().template("edge").await
}

/// Yanking a module another assigned module depends on: the full state cannot be composed
/// (`DEP_MISSING`), yet the state that named the yanked version is not served any more.
/// The template is served without the yanked module and what needs it, says so, and an
/// instance still running the yanked digest drifts with `yanked_running`.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_yanked_dependency_is_never_served_again(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let (r, _reg, token) = edge(
        &db,
        module_webhook::store::Clock::system(),
        &["system-base", "my-redis"],
    )
    .await;
    let fleet = r.fleet();
    let (first_id, first) = fleet.signed_state("node-1", &token).await;
    assert_eq!(
        names(&first),
        ["system-base", "security-hardening", "my-redis"]
    );
    fleet
        .report_applied("node-1", &token, &first_id, &first)
        .await;
    let yanked = first.modules[1].clone();
    assert!(template(&r).await["degraded"].is_null());

    fleet.yank("v-security-hardening-1.0.0", "CVE").await;

    let (id, doc) = fleet.signed_state("node-1", &token).await;
    assert_ne!(
        id, first_id,
        "the state naming the yanked version is replaced"
    );
    assert_eq!(names(&doc), ["system-base"], "without it and what needs it");
    assert!(doc.sequence > first.sequence);
    assert!(
        doc.modules
            .iter()
            .all(|m| m.manifest_digest != yanked.manifest_digest)
    );
    let t = template(&r).await;
    assert_eq!(t["degraded"]["mode"], "degraded", "{t}");
    assert_eq!(t["degraded"]["dropped"], json!(["my-redis"]), "{t}");
    assert!(
        t["degraded"]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer live"),
        "{t}"
    );
    assert!(
        t["degraded"]["findings"]
            .to_string()
            .contains("DEP_MISSING"),
        "{t}"
    );
    assert_eq!(t["desired_state"]["state_id"], id.as_str(), "{t}");

    // The instance has not moved yet: it runs the yanked digest, and drift says so.
    let v = fleet.drift("node-1").await;
    assert_eq!(v["drift"], true, "{v}");
    assert_eq!(
        v["yanked_running"][0]["module"], "security-hardening",
        "{v}"
    );
    assert_eq!(
        v["yanked_running"][0]["digest"],
        yanked.composefs_digest.to_string()
    );
    assert!(v["reasons"].to_string().contains("yanked"), "{v}");

    // Recomputing the same inputs serves the same state (no new sequence).
    fleet.recompute().await;
    let (again, _) = fleet.signed_state("node-1", &token).await;
    assert_eq!(again, id);
}

/// A served state is signed with its template, sequence and expiry, and re-issued (same
/// content, next sequence) once half its validity has passed.
#[tokio::test(flavor = "multi_thread")]
async fn a_served_state_is_reissued_before_it_expires() {
    let db = sqlite().await;
    let clock = module_webhook::store::Clock::manual();
    let (r, _reg, token) = edge(&db, clock.clone(), &["system-base"]).await;
    let fleet = r.fleet();
    let (id, doc) = fleet.signed_state("node-1", &token).await;
    assert_eq!(doc.template_id, "edge");
    assert_eq!(doc.expires_at - doc.issued_at, 7 * 24 * 3600, "the default");
    assert_eq!(doc.issued_at, clock.now_ms() / 1000);
    // Three days on by the injected clock: every cache entry has aged past its TTL too.
    clock.advance(std::time::Duration::from_secs(3 * 24 * 3600));
    let (same, _) = fleet.signed_state("node-1", &token).await;
    assert_eq!(same, id, "still fresh: not re-issued");
    assert_eq!(
        fleet.poll("node-1", &token, &id).await,
        (304, id.clone()),
        "a poll naming it"
    );
    // A serving receiver refreshes its poll cache ahead of the polls; a state past half its
    // validity is left out of it, so the next poll takes the path that re-issues it.
    let served = &r.app.state.fleet;
    served.refresh_states().await.unwrap();
    assert_eq!(served.cache.state("edge"), Some(id.clone()));
    clock.advance(std::time::Duration::from_secs(24 * 3600));
    served.refresh_states().await.unwrap();
    assert_eq!(served.cache.state("edge"), None);
    clock.advance(module_webhook::fleet::cache::STATE_TTL);
    // Past half its validity, a poll naming the old state gets the re-issued one, not 304.
    let (status, reissued) = fleet.poll("node-1", &token, &id).await;
    assert_eq!(status, 200);
    assert_ne!(reissued, id);
    let (next, doc2) = fleet.signed_state("node-1", &token).await;
    assert_eq!(next, reissued);
    assert_ne!(next, id);
    assert_eq!(doc2.content_id(), doc.content_id());
    assert_eq!(doc2.sequence, doc.sequence + 1);
    assert!(doc2.expires_at > doc.expires_at);
    let t = template(&r).await;
    assert_eq!(t["desired_state"]["sequence"], doc2.sequence, "{t}");
}

/// A module shipping `/etc/<file>` (protected when `protect`), with no dependencies.
fn plain(dir: &std::path::Path, name: &str, file: &str, protect: bool) {
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    let protected = if protect {
        format!("protected_spec:\n  - \"/etc/{file}\"\n")
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("manifest.yaml"),
        format!(
            "schema_version: 1\nidentity:\n  name: {name}\n  category: userland\n  variety: subscription\n  description: x\nfile_spec:\n  include: [\"/etc/{file}\"]\n{protected}dependency_spec: []\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("rootfs/etc").join(file), format!("{name}\n")).unwrap();
}

/// When even the assignments that compose on their own conflict together, the state naming
/// the yanked version is replaced by a signed hold (no modules: nodes keep what they run).
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn nothing_composable_without_a_yanked_version_serves_a_hold(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let reg = TestRegistry::start();
    let k = keys();
    let policies = ["alpha", "beta"]
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    let r = serve(cfg).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    plain(a.path(), "alpha", "alpha.conf", false);
    plain(b.path(), "beta", "shared.conf", true);
    release_live(&r, &reg, &k, a.path(), "alpha", "1.0.0").await;
    release_live(&r, &reg, &k, b.path(), "beta", "1.0.0").await;
    let fleet = r.fleet();
    let (s, v) = fleet.create_template("edge", "p").await;
    assert_eq!(s, 201, "{v}");
    for m in ["alpha", "beta"] {
        let (s, v) = fleet.assign("edge", m, None).await;
        assert_eq!(s, 200, "{v}");
    }
    let first = template(&r).await["desired_state"]["document"].clone();
    assert_eq!(first["modules"].as_array().unwrap().len(), 2, "{first}");

    // alpha 1.1.0 protects beta's file too: blocked, the served state stays (all live).
    let a2 = tempfile::tempdir().unwrap();
    plain(a2.path(), "alpha", "shared.conf", true);
    release_live(&r, &reg, &k, a2.path(), "alpha", "1.1.0").await;
    let t = template(&r).await;
    assert_eq!(t["last_computation"]["blocked"], true, "{t}");
    assert_eq!(t["desired_state"]["document"], first, "{t}");
    assert!(t["degraded"].is_null(), "{t}");

    // alpha 1.0.0 yanked: each assignment composes alone, not together. A hold.
    fleet.yank("v-alpha-1.0.0", "CVE").await;
    let t = template(&r).await;
    assert_eq!(t["degraded"]["mode"], "held", "{t}");
    assert_eq!(t["degraded"]["dropped"], json!(["alpha", "beta"]), "{t}");
    let doc: DesiredState = serde_json::from_value(t["desired_state"]["document"].clone()).unwrap();
    assert!(doc.modules.is_empty(), "{t}");
    assert!(
        doc.hold.as_deref().unwrap().contains("no longer live"),
        "{t}"
    );
    assert!(doc.sequence > first["sequence"].as_u64().unwrap());
}

/// A state served before schema 2 (the migration leaves it with sequence 0 and no expiry)
/// is re-issued as schema 2, same content, when it is next read: nodes refuse schema 1.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_1_state_is_reissued_as_schema_2_when_read(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let clock = module_webhook::store::Clock::manual();
    let (r, _reg, token) = edge(&db, clock.clone(), &["system-base"]).await;
    let fleet = r.fleet();
    let (id, doc) = fleet.signed_state("node-1", &token).await;
    let mut v1 = serde_json::to_value(&doc).unwrap();
    let o = v1.as_object_mut().unwrap();
    for k in ["sequence", "issued_at", "expires_at"] {
        o.remove(k);
    }
    o.insert("schema_version".into(), 1.into());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "UPDATE desired_states SET document = $1, sequence = 0, expires_at = 0, state_id = 'sha256:old'",
    )
    .bind(v1.to_string())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    // The cached state id ages out (by the injected clock) and the poll reads the row.
    clock.advance(module_webhook::fleet::cache::STATE_TTL);
    let (next, doc2) = fleet.signed_state("node-1", &token).await;
    assert_ne!(next, id);
    assert_eq!(doc2.schema_version, 2);
    assert_eq!(doc2.sequence, 1);
    assert_eq!(doc2.content_id(), doc.content_id());
}
