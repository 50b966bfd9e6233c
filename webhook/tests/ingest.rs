//! End to end: a real registry notifies the receiver; `module-builder` releases and signs;
//! the receiver ingests to `draft`. Plus every way an ingest must not produce a draft.

mod common;
use common::{release::*, *};
use module_webhook::{
    ingest::{Outcome, Rejection},
    jobs::reconcile::reconcile,
    store::Lifecycle,
};
use powernode_module::{
    digest::Digest,
    registry::{Credentials, Registry, parse_reference},
    trust::{keys, sign},
};
use powernode_testkit::registry::{TestRegistry, free_port};
use rstest::rstest;
use std::{fs, path::Path, time::Duration};

const REPO: &str = "acct/modules/my-redis-module";

/// Builds and pushes (unsigned); returns the digest reference.
fn push(m: &Path, target: &str, version: &str) -> String {
    mb(
        &[
            "build",
            "--source-date-epoch",
            "1700000000",
            "--version",
            version,
        ],
        Some(m),
        None,
    );
    mb(&["push", "--ref", target], Some(m), None)
        .trim()
        .to_owned()
}

fn digest_of(reference: &str) -> String {
    reference.rsplit_once('@').unwrap().1.to_owned()
}

async fn wait_for_deliveries(r: &Running, n: i64) {
    for _ in 0..200 {
        if r.deliveries().await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the registry did not deliver {n} notifications");
}

async fn audit_actions(r: &Running, id: &str) -> Vec<String> {
    r.app
        .state
        .store
        .audit_of(&id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action.to_string())
        .collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn release_is_ingested_to_draft_through_registry_notifications(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let k = keys();
    let port = free_port();
    let r = serve(config(
        &db.url,
        &format!("127.0.0.1:{port}"),
        vec![key_policy("my-redis", REPO, k.public.clone())],
    ))
    .await;
    let reg =
        TestRegistry::start_notifying(port, &format!("{}/hooks/distribution", r.url), DIST_TOKEN);
    let m = module("my-redis");
    let out = mb(
        &[
            "release",
            "--ref",
            &reg.repo(REPO),
            "--version",
            "0.1.0",
            "--source-date-epoch",
            "1700000000",
        ],
        Some(m.path()),
        Some(&k.key),
    );
    let reference = out.lines().last().unwrap().trim().to_owned();
    // Artifact manifest + signature manifest.
    wait_for_deliveries(&r, 2).await;
    r.app.drain().await.unwrap();
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.1.0")
        .await
        .unwrap()
        .expect("a version");
    assert_eq!(
        v.lifecycle,
        Lifecycle::Draft,
        "{}: {:?}",
        db.name,
        v.reject_reason
    );
    assert_eq!(v.id, "v-my-redis-0.1.0");
    assert_eq!(v.manifest_digest.to_string(), digest_of(&reference));
    let mj: serde_json::Value =
        serde_json::from_slice(&fs::read(m.path().join("dist/module.json")).unwrap()).unwrap();
    assert_eq!(
        v.composefs_digest.map(|d| d.to_string()).as_deref(),
        mj["composefs"]["digest"].as_str()
    );
    assert_eq!(
        v.artifact_digest.map(|d| d.to_string()).as_deref(),
        mj["tar"]["sha256"].as_str()
    );
    assert_eq!(v.composefs_format, Some(1));
    assert!(v.manifest.as_deref().unwrap().contains("name: my-redis"));
    assert!(
        v.file_index
            .as_ref()
            .unwrap()
            .to_string()
            .contains("rootfs/etc/redis/redis.conf")
    );
    let actions = audit_actions(&r, &v.id).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "ingested").count(),
        1,
        "{actions:?}"
    );

    // The API shows it.
    let (s, body) = r
        .get(
            "/api/v1/modules/my-redis/versions?state=draft",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["versions"][0]["id"], "v-my-redis-0.1.0");
    let (s, body) = r
        .get("/api/v1/versions/v-my-redis-0.1.0/audit", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200);
    assert!(
        body["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["to_state"] == "draft"),
        "{body}"
    );
    let (_, body) = r.get("/api/v1/modules", Some(READ_TOKEN)).await;
    assert_eq!(body["modules"][0]["name"], "my-redis");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciler_ingests_what_was_pushed_while_the_receiver_was_down() {
    let db = sqlite().await;
    let k = keys();
    let reg = TestRegistry::start();
    let m = module("my-redis");
    mb(
        &["release", "--ref", &reg.repo(REPO), "--version", "0.2.0"],
        Some(m.path()),
        Some(&k.key),
    );
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", REPO, k.public.clone())],
    ))
    .await;
    assert_eq!(r.deliveries().await, 0);
    let n = reconcile(&r.app.worker.ctx).await.unwrap();
    assert_eq!(
        n, 1,
        "one tag without a version (the .sig tag is not a version)"
    );
    r.app.drain().await.unwrap();
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.2.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Draft);
    // A second pass finds nothing to do.
    assert_eq!(reconcile(&r.app.worker.ctx).await.unwrap(), 0);
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn signature_after_and_before_the_artifact_and_duplicates_give_one_version(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let k = keys();
    let reg = TestRegistry::start();
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", REPO, k.public.clone())],
    ))
    .await;
    let m = module("my-redis");
    let target = reg.repo(REPO);

    // Artifact first, unsigned: pending_signature.
    let reference = push(m.path(), &target, "0.3.0");
    let d = digest_of(&reference);
    r.post(
        "/hooks/distribution",
        dist_envelope("e1", REPO, "v0.3.0", &d),
        &dist_headers(),
    )
    .await;
    r.app.drain().await.unwrap();
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.3.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::PendingSignature, "{}", db.name);
    assert!(
        v.reject_reason.as_deref().unwrap().contains("not signed"),
        "{:?}",
        v.reject_reason
    );

    // The signature arrives: its .sig push re-checks the pending version.
    mb(&["sign", &reference], None, Some(&k.key));
    let sig_tag = format!("sha256-{}.sig", d.trim_start_matches("sha256:"));
    r.post(
        "/hooks/distribution",
        dist_envelope("e2", REPO, &sig_tag, "sha256:00"),
        &dist_headers(),
    )
    .await;
    r.app.drain().await.unwrap();
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.3.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        v.lifecycle,
        Lifecycle::Draft,
        "{}: {:?}",
        db.name,
        v.reject_reason
    );
    assert_eq!(
        audit_actions(&r, &v.id).await,
        ["awaiting_signature", "ingested"]
    );

    // Signature event before the artifact event, and every event twice.
    let m2 = module("my-redis");
    let reference = push(m2.path(), &target, "0.4.0");
    let d = digest_of(&reference);
    mb(&["sign", &reference], None, Some(&k.key));
    let sig_tag = format!("sha256-{}.sig", d.trim_start_matches("sha256:"));
    for (id, tag) in [
        ("s1", sig_tag.as_str()),
        ("a1", "v0.4.0"),
        ("s1", sig_tag.as_str()),
        ("a1", "v0.4.0"),
    ] {
        r.post(
            "/hooks/distribution",
            dist_envelope(id, REPO, tag, &d),
            &dist_headers(),
        )
        .await;
    }
    r.app.drain().await.unwrap();
    reconcile(&r.app.worker.ctx).await.unwrap();
    r.app.drain().await.unwrap();
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.4.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Draft);
    assert_eq!(
        audit_actions(&r, &v.id).await,
        ["ingested"],
        "exactly one ingest"
    );
    let all = r
        .app
        .state
        .store
        .versions_of("my-redis", None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{}", db.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_signer_and_unsigned_never_become_drafts() {
    let db = sqlite().await;
    let trusted = keys();
    let other = keys();
    let reg = TestRegistry::start();
    let mut cfg = config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", REPO, trusted.public.clone())],
    );
    let r = serve(cfg.clone()).await;
    let m = module("my-redis");
    let reference = push(m.path(), &reg.repo(REPO), "0.5.0");
    mb(&["sign", &reference], None, Some(&other.key));
    let out = r.app.worker.ctx.ingest(REPO, "v0.5.0").await.unwrap();
    assert!(matches!(out, Outcome::PendingSignature(_)), "{out:?}");
    let v = r
        .app
        .state
        .store
        .version("my-redis", "0.5.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::PendingSignature);
    assert!(
        v.reject_reason
            .as_deref()
            .unwrap()
            .contains("does not verify with any trusted key"),
        "{:?}",
        v.reject_reason
    );
    let (_, metrics) = r.get("/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("verification_failures_total{reason=\"key_mismatch\"} 1"),
        "{metrics}"
    );

    // Past the signature timeout, it is rejected, with the reason.
    cfg.ingest.signature_timeout_secs = 0;
    let clock = module_webhook::store::Clock::manual();
    let r2 = serve_with_clock(cfg, clock.clone()).await;
    clock.advance(Duration::from_millis(5));
    let out = r2.app.worker.ctx.ingest(REPO, "v0.5.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SignatureTimeout(_))),
        "{out:?}"
    );
    let v = r2
        .app
        .state
        .store
        .version("my-redis", "0.5.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Rejected);
    assert_eq!(
        audit_actions(&r2, &v.id).await,
        ["awaiting_signature", "rejected"]
    );
}

/// Pushes `manifest` (JSON, edited) under `tag` and signs it with `key`.
async fn push_signed(
    reg: &TestRegistry,
    tag: &str,
    manifest: &serde_json::Value,
    key: &Path,
) -> Digest {
    let r = parse_reference(&format!("{}:{tag}", reg.repo(REPO))).unwrap();
    let c = Registry::new(&r, Credentials::Anonymous, false);
    let d = c
        .push_manifest(
            &r,
            &serde_json::to_vec(manifest).unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .unwrap();
    let signer = keys::load_private(key, b"pw").unwrap();
    sign::sign(
        &c,
        &reqwest::Client::new(),
        &r,
        &d,
        &sign::Material::Key(signer),
        None,
    )
    .await
    .unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_content_is_rejected_even_when_signed() {
    let db = sqlite().await;
    let k = keys();
    let reg = TestRegistry::start();
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", REPO, k.public.clone())],
    ))
    .await;
    let m = module("my-redis");
    let reference = push(m.path(), &reg.repo(REPO), "1.0.0");
    let rr = parse_reference(&reference).unwrap();
    let c = Registry::new(&rr, Credentials::Anonymous, false);
    let (bytes, _) = c.fetch_manifest(&rr).await.unwrap().unwrap();
    let original: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

    // A signed manifest whose composefs annotation lies.
    let mut lie = original.clone();
    lie["annotations"]["org.powernode.module.composefs-digest"] =
        format!("sha256:{}", "0".repeat(64)).into();
    lie["annotations"]["org.opencontainers.image.version"] = "1.0.1".into();
    push_signed(&reg, "v1.0.1", &lie, &k.key).await;
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.1").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::ComposefsMismatch { .. })),
        "{out:?}"
    );

    // A signed manifest pointing at a tar whose content does not match its index.
    let mut tar = fs::read(m.path().join("dist/module.tar")).unwrap();
    let at = tar.windows(9).position(|w| w == b"port 6379").unwrap();
    tar[at + 5] = b'7';
    let blob = parse_reference(&format!("{}:x", reg.repo(REPO))).unwrap();
    let bd = c.push_small_blob(&blob, &tar).await.unwrap();
    let mut bad = original.clone();
    bad["layers"][0]["digest"] = bd.to_string().into();
    bad["annotations"]["org.opencontainers.image.version"] = "1.0.2".into();
    push_signed(&reg, "v1.0.2", &bad, &k.key).await;
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.2").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::ArtifactInvalid(_)) && why.to_string().contains("redis.conf")),
        "{out:?}"
    );
    for v in ["1.0.1", "1.0.2"] {
        let row = r
            .app
            .state
            .store
            .version("my-redis", v)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.lifecycle, Lifecycle::Rejected);
        assert!(row.reject_reason.is_some());
    }
    // Another module's artifact in this repository is refused by name.
    let other = module("chrony");
    let oref = push(other.path(), &format!("{}:v9.9.9", reg.repo(REPO)), "9.9.9");
    mb(&["sign", &oref], None, Some(&k.key));
    let out = r.app.worker.ctx.ingest(REPO, "v9.9.9").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::ModuleMismatch { .. })),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_immutable() {
    let db = sqlite().await;
    let k = keys();
    let reg = TestRegistry::start();
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![key_policy("my-redis", REPO, k.public.clone())],
    ))
    .await;
    let m = module("my-redis");
    let first = push(m.path(), &reg.repo(REPO), "2.0.0");
    mb(&["sign", &first], None, Some(&k.key));
    r.app.worker.ctx.ingest(REPO, "v2.0.0").await.unwrap();
    // Same version, different content, re-tagged.
    fs::write(m.path().join("rootfs/etc/redis/redis.conf"), "port 7000\n").unwrap();
    let second = push(m.path(), &reg.repo(REPO), "2.0.0");
    assert_ne!(digest_of(&first), digest_of(&second));
    mb(&["sign", &second], None, Some(&k.key));
    let out = r.app.worker.ctx.ingest(REPO, "v2.0.0").await.unwrap();
    assert!(matches!(out, Outcome::Rejected(..)), "{out:?}");
    let v = r
        .app
        .state
        .store
        .version("my-redis", "2.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Draft);
    assert_eq!(
        v.manifest_digest.to_string(),
        digest_of(&first),
        "the first digest stays"
    );
    let actions = audit_actions(&r, &v.id).await;
    assert_eq!(actions, ["ingested", "refused_different_digest"]);
}

/// Re-tags `from` (a manifest in `reg`) as `repo:tag`, as any registry client could.
async fn retag(reg: &TestRegistry, from: &str, repo: &str, tag: &str) {
    let src = parse_reference(from).unwrap();
    let c = Registry::new(&src, Credentials::Anonymous, false);
    let (bytes, _) = c.fetch_manifest(&src).await.unwrap().unwrap();
    let dst = parse_reference(&format!("{}:{tag}", reg.repo(repo))).unwrap();
    c.push_manifest(&dst, &bytes, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
}

/// Item 3: a tag of one module cannot occupy the id of another module's version; versions
/// are SemVer and the tag, the annotation and module-release must agree.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item3_version_ids_do_not_collide_across_modules(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let k = keys();
    let reg = TestRegistry::start();
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![
            key_policy("my", "acct/modules/my", k.public.clone()),
            key_policy("my-redis", REPO, k.public.clone()),
        ],
    ))
    .await;
    // An unsigned push to module `my`, tagged `redis-3.0.0`.
    let m = module("my-redis");
    let pushed = push(m.path(), &reg.repo("acct/modules/my"), "3.0.0");
    retag(&reg, &pushed, "acct/modules/my", "redis-3.0.0").await;
    let ctx = &r.app.worker.ctx;
    let out = ctx.ingest("acct/modules/my", "redis-3.0.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Ignored(why) if why.contains("not a release tag") && why.contains("SemVer")),
        "{out:?}"
    );
    // The real, signed my-redis 3.0.0 takes its own id.
    mb(
        &["release", "--ref", &reg.repo(REPO), "--version", "3.0.0"],
        Some(m.path()),
        Some(&k.key),
    );
    assert_eq!(
        ctx.ingest(REPO, "v3.0.0").await.unwrap(),
        Outcome::Ingested("v-my-redis-3.0.0".into()),
        "{}",
        db.name
    );
    // The same artifact under another version's tag: the signed annotation disagrees.
    retag(&reg, &format!("{}:v3.0.0", reg.repo(REPO)), REPO, "v3.0.1").await;
    let out = ctx.ingest(REPO, "v3.0.1").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(id, why) if id == "v-my-redis-3.0.1" && matches!(why, Rejection::VersionMismatch(_)) && why.to_string().contains("signed annotation 3.0.0")),
        "{out:?}"
    );
    let v = r
        .app
        .state
        .store
        .version("my-redis", "3.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Draft);
}

/// Item 9: the category is pinned in the module's configuration; an artifact declaring
/// another one is rejected.
#[tokio::test(flavor = "multi_thread")]
async fn item9_a_manifest_outside_the_pinned_category_is_rejected() {
    let k = keys();
    let reg = TestRegistry::start();
    let db = sqlite().await;
    let mut policy = key_policy("my-redis", REPO, k.public.clone());
    policy.category = Some("security".into());
    let r = serve(config(&db.url, &reg.host, vec![policy])).await;
    let m = module("my-redis");
    mb(
        &["release", "--ref", &reg.repo(REPO), "--version", "1.0.0"],
        Some(m.path()),
        Some(&k.key),
    );
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::CategoryMismatch { .. }) && why.to_string().contains("\"userland\"") && why.to_string().contains("\"security\"")),
        "{out:?}"
    );
}
