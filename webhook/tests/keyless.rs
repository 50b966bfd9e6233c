//! Keyless policies in the receiver: identity + issuer pinned in configuration, and
//! trust-on-first-use pinning the first verified identity.

mod common;
use common::*;
use module_webhook::{
    config::ModulePolicy,
    ingest::{Outcome, Rejection},
    store::Lifecycle,
};
use powernode_testkit::{
    copy_tree, example, module_builder,
    registry::TestRegistry,
    sigstore::{FakeFulcio, FakeRekor, TestCa, jwt},
};
use rstest::rstest;
use std::{path::Path, process::Command, sync::Arc};

const REPO: &str = "acct/modules/my-redis-module";
const ISSUER: &str = "https://gitea.example.org";

fn token(identity: &str) -> String {
    jwt(&serde_json::json!({"iss": ISSUER, "sub": "repo:acct/x", "san": identity}))
}

fn release(dir: &Path, target: &str, version: &str, fulcio: &str, rekor: &str, identity: &str) {
    let o = Command::new(module_builder())
        .arg("release")
        .arg(dir)
        .args([
            "--ref",
            target,
            "--version",
            version,
            "--fulcio-url",
            fulcio,
            "--rekor-url",
            rekor,
        ])
        .env("SIGSTORE_ID_TOKEN", token(identity))
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn policy(root: &Path, identity: Option<&str>, tofu: bool) -> ModulePolicy {
    ModulePolicy {
        name: "my-redis".into(),
        repository: REPO.into(),
        keys: vec![],
        identity_regexp: identity.map(str::to_owned),
        issuer_regexp: identity.map(|_| r"^https://gitea\.example\.org$".to_owned()),
        trusted_root: Some(root.to_owned()),
        require_tlog: true,
        trust_on_first_use: tofu.into(),
        gitea_repository: None,
        category: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_pinned_identity_and_trust_on_first_use() {
    let ca = Arc::new(TestCa::new("fulcio"));
    let fulcio = FakeFulcio::start(ca.clone());
    let rekor = FakeRekor::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, ca.trusted_root(Some(&rekor.public_key_der))).unwrap();
    let reg = TestRegistry::start();
    let target = reg.repo(REPO);
    let good = "https://git.example.org/acct/modules/my-redis-module@refs/tags/v1";
    let evil = "https://git.example.org/mallory/fork@refs/tags/v1";
    let m = tempfile::tempdir().unwrap();
    copy_tree(&example("my-redis"), m.path());

    // Pinned in configuration.
    let db = sqlite().await;
    let r = serve(config(
        &db.url,
        &reg.host,
        vec![policy(
            &root,
            Some(r"^https://git\.example\.org/acct/modules/my-redis-module@.*$"),
            false,
        )],
    ))
    .await;
    release(
        m.path(),
        &target,
        "1.0.0",
        &fulcio.server.url,
        &rekor.server.url,
        good,
    );
    release(
        m.path(),
        &target,
        "1.0.1",
        &fulcio.server.url,
        &rekor.server.url,
        evil,
    );
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.0").await.unwrap();
    assert_eq!(out, Outcome::Ingested("v-my-redis-1.0.0".into()));
    let v = r
        .app
        .state
        .store
        .version("my-redis", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.signer_identity.as_deref(), Some(good));
    assert_eq!(v.signer_issuer.as_deref(), Some(ISSUER));
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.1").await.unwrap();
    assert!(matches!(out, Outcome::PendingSignature(_)), "{out:?}");
    let v = r
        .app
        .state
        .store
        .version("my-redis", "1.0.1")
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.reject_reason
            .unwrap()
            .contains("does not match the pinned identity")
    );

    // Trust on first use: the first verified identity is pinned; another is refused.
    let db = sqlite().await;
    let r = serve(config(&db.url, &reg.host, vec![policy(&root, None, true)])).await;
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.0").await.unwrap();
    assert_eq!(out, Outcome::Ingested("v-my-redis-1.0.0".into()));
    let pin = r.app.state.store.pin("my-redis").await.unwrap().unwrap();
    assert_eq!((pin.identity.as_str(), pin.issuer.as_str()), (good, ISSUER));
    let out = r.app.worker.ctx.ingest(REPO, "v1.0.1").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SignerNotPinned(_)) && why.to_string().contains(good)),
        "{out:?}"
    );
    let v = r
        .app
        .state
        .store
        .version("my-redis", "1.0.1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.lifecycle, Lifecycle::Rejected);
}

const WORKFLOW: &str =
    "https://git.example.org/acct/modules/my-redis-module/.gitea/workflows/release.yaml";

/// A signer set-up for trust-on-first-use tests: a CA, Fulcio, Rekor, a registry, a module.
struct Sigstore {
    fulcio: FakeFulcio,
    rekor: FakeRekor,
    root: std::path::PathBuf,
    reg: TestRegistry,
    module: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

fn sigstore() -> Sigstore {
    let ca = Arc::new(TestCa::new("fulcio"));
    let fulcio = FakeFulcio::start(ca.clone());
    let rekor = FakeRekor::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, ca.trusted_root(Some(&rekor.public_key_der))).unwrap();
    let module = tempfile::tempdir().unwrap();
    copy_tree(&example("my-redis"), module.path());
    Sigstore {
        fulcio,
        rekor,
        root,
        reg: TestRegistry::start(),
        module,
        _dir: dir,
    }
}

impl Sigstore {
    fn release(&self, version: &str, identity: &str) {
        release(
            self.module.path(),
            &self.reg.repo(REPO),
            version,
            &self.fulcio.server.url,
            &self.rekor.server.url,
            identity,
        );
    }
}

/// Item 7: the pin is the workflow's identity pattern, so the next tag is not refused.
#[tokio::test(flavor = "multi_thread")]
async fn item7_trust_on_first_use_pins_the_workflow_for_every_later_tag() {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    s.release("1.0.1", &format!("{WORKFLOW}@refs/tags/v1.0.1"));
    s.release("1.0.2", &format!("{WORKFLOW}@refs/heads/main"));
    let db = sqlite().await;
    let r = serve(config(
        &db.url,
        &s.reg.host,
        vec![policy(&s.root, None, true)],
    ))
    .await;
    let ctx = &r.app.worker.ctx;
    assert_eq!(
        ctx.ingest(REPO, "v1.0.0").await.unwrap(),
        Outcome::Ingested("v-my-redis-1.0.0".into())
    );
    let pin = r.app.state.store.pin("my-redis").await.unwrap().unwrap();
    assert_eq!(
        pin.identity_pattern,
        format!("^{}@refs/tags/[^@]+$", regex::escape(WORKFLOW))
    );
    assert_eq!(
        ctx.ingest(REPO, "v1.0.1").await.unwrap(),
        Outcome::Ingested("v-my-redis-1.0.1".into()),
        "a later tag of the pinned workflow"
    );
    let out = ctx.ingest(REPO, "v1.0.2").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SignerNotPinned(_))),
        "a branch build is not a release of the pinned workflow: {out:?}"
    );
    let audit = r
        .app
        .state
        .store
        .audit_of(&"v-my-redis-1.0.0".into())
        .await
        .unwrap();
    assert!(audit.iter().any(|a| a.action == "trust_pinned"));
}

/// Item 7: a fork's workflow cannot establish the pin; trust on first use is off unless set.
#[tokio::test(flavor = "multi_thread")]
async fn item7_a_fork_cannot_win_trust_on_first_use() {
    let s = sigstore();
    s.release(
        "1.0.0",
        "https://git.example.org/mallory/fork/.gitea/workflows/release.yaml@refs/tags/v1.0.0",
    );
    s.release("1.0.1", &format!("{WORKFLOW}@refs/tags/v1.0.1"));
    let db = sqlite().await;
    let r = serve(config(
        &db.url,
        &s.reg.host,
        vec![policy(&s.root, None, true)],
    ))
    .await;
    let ctx = &r.app.worker.ctx;
    let out = ctx.ingest(REPO, "v1.0.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SignerNotPinned(_)) && why.to_string().contains("no signature by a workflow of acct/modules/my-redis-module")),
        "{out:?}"
    );
    assert_eq!(r.app.state.store.pin("my-redis").await.unwrap(), None);
    assert_eq!(
        ctx.ingest(REPO, "v1.0.1").await.unwrap(),
        Outcome::Ingested("v-my-redis-1.0.1".into())
    );
    // Off unless configured: a keyless entry with neither identity nor first use pins nothing.
    let mut cfg = config(&db.url, &s.reg.host, vec![policy(&s.root, None, false)]);
    cfg.modules[0].keys.clear();
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("pins no signer"), "{err}");
}

/// Item 7: two first ingests at once (two workflows of the repository): one pins, the other is
/// verified against that pin.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn item7_concurrent_first_uses_have_exactly_one_winner(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    let other = "https://git.example.org/acct/modules/my-redis-module/.gitea/workflows/other.yaml";
    s.release("1.0.1", &format!("{other}@refs/tags/v1.0.1"));
    let db = backend.db().await;
    let r = serve(config(
        &db.url,
        &s.reg.host,
        vec![policy(&s.root, None, true)],
    ))
    .await;
    let (a, b) = (r.app.worker.ctx.clone(), r.app.worker.ctx.clone());
    let (x, y) = tokio::join!(
        tokio::spawn(async move { a.ingest(REPO, "v1.0.0").await.unwrap() }),
        tokio::spawn(async move { b.ingest(REPO, "v1.0.1").await.unwrap() }),
    );
    let outs = [x.unwrap(), y.unwrap()];
    let won: Vec<_> = outs
        .iter()
        .filter(|o| matches!(o, Outcome::Ingested(_)))
        .collect();
    let lost: Vec<_> = outs
        .iter()
        .filter(
            |o| matches!(o, Outcome::Rejected(_, why) if matches!(why, Rejection::SignerNotPinned(_))),
        )
        .collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{}: {outs:?}", db.name);
    let pin = r.app.state.store.pin("my-redis").await.unwrap().unwrap();
    let Outcome::Ingested(id) = won[0] else {
        unreachable!()
    };
    assert_eq!(pin.version_id, id.as_str(), "the winner's pin holds");
}

/// Item 8: keyless, the source commit is the one the Fulcio certificate asserts; a signed
/// annotation naming another commit is refused.
#[tokio::test(flavor = "multi_thread")]
async fn item8_keyless_source_commit_is_bound_to_the_certificate() {
    let s = sigstore();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(s.module.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "module"]);
    let head = git(&["rev-parse", "HEAD"]);
    let with_sha = |version: &str, sha: &str| {
        let tok = jwt(&serde_json::json!({
            "iss": ISSUER, "sub": "repo:acct/x",
            "san": format!("https://git.example.org/{REPO}@refs/tags/v{version}"), "sha": sha,
        }));
        let o = Command::new(module_builder())
            .arg("release")
            .arg(s.module.path())
            .args(["--ref", &s.reg.repo(REPO), "--version", version])
            .args([
                "--fulcio-url",
                &s.fulcio.server.url,
                "--rekor-url",
                &s.rekor.server.url,
            ])
            .env("SIGSTORE_ID_TOKEN", tok)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    with_sha("1.0.0", &head);
    with_sha("1.0.1", &"0".repeat(40));
    let db = sqlite().await;
    let r = serve(config(
        &db.url,
        &s.reg.host,
        // The identity regexp the example manifest asks for.
        vec![policy(
            &s.root,
            Some(r"^https://git\.example\.org/acct/modules/my-redis-module@.*$"),
            false,
        )],
    ))
    .await;
    let ctx = &r.app.worker.ctx;
    assert_eq!(
        ctx.ingest(REPO, "v1.0.0").await.unwrap(),
        Outcome::Ingested("v-my-redis-1.0.0".into())
    );
    let v = r
        .app
        .state
        .store
        .version("my-redis", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.source_commit.as_deref(), Some(head.as_str()));
    let out = ctx.ingest(REPO, "v1.0.1").await.unwrap();
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SourceCommitMismatch(_)) && why.to_string().contains(&head)),
        "{out:?}"
    );
}
