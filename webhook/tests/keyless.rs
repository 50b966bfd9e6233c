//! Keyless policies in the receiver: identity + issuer pinned in configuration, and
//! trust-on-first-use pinning the first verified identity.

mod common;
use common::*;
use module_webhook::{config::ModulePolicy, ingest::Outcome, store::Lifecycle};
use powernode_testkit::{
    copy_tree, example, module_builder,
    registry::TestRegistry,
    sigstore::{FakeFulcio, FakeRekor, TestCa, jwt},
};
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
        trust_on_first_use: tofu,
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
        matches!(&out, Outcome::Rejected(_, why) if why.starts_with("signer_not_pinned") && why.contains(good)),
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
