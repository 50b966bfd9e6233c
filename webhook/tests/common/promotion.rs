//! A receiver with the promotion engine on, talking to a fake Gitea, and the signed comment
//! webhook Gitea sends. Tests speak to it through [`super::app::TestApp`]; the crash, kill
//! and replica tests, which run receivers as child processes, use these parts directly.

use super::*;
use hmac::{Hmac, Mac};
use module_webhook::{config::GiteaConfig, store::Lifecycle};
use powernode_testkit::gitea::FakeGitea;
use sha2::Sha256;

pub const GITEA_REPO: &str = "acme/hello-module";
pub const HEAD: &str = "4c1f8e2b9a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

pub struct Env {
    pub r: Running,
    pub gitea: FakeGitea,
    pub _db: TestDb,
}

pub async fn env(db: TestDb, tweak: impl FnOnce(&mut module_webhook::config::Config)) -> Env {
    env_with_clock(db, module_webhook::store::Clock::system(), tweak).await
}

/// As [`env`], going by `clock` (a manual one moves only when the test says).
pub async fn env_with_clock(
    db: TestDb,
    clock: module_webhook::store::Clock,
    tweak: impl FnOnce(&mut module_webhook::config::Config),
) -> Env {
    let gitea = FakeGitea::start();
    for (u, p) in [
        ("alice", "write"),
        ("bob", "write"),
        ("carol", "write"),
        ("dave", "write"),
        ("reader", "read"),
    ] {
        gitea.grant(GITEA_REPO, u, p);
    }
    let mut policy = key_policy(
        "my-redis",
        "acct/modules/my-redis-module",
        "/dev/null".into(),
    );
    policy.gitea_repository = Some(GITEA_REPO.into());
    let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
    cfg.modules = vec![policy];
    cfg.gitea = Some(GiteaConfig {
        url: gitea.server.url.clone(),
        token: Some("gitea-token".into()),
        timeout_secs: 30,
    });
    tweak(&mut cfg);
    // Policies load key files; use a real key.
    let keys = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(powernode_testkit::module_builder())
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(keys.path().join("k"))
        .env("COSIGN_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(o.status.success());
    for m in &mut cfg.modules {
        m.keys = vec![keys.path().join("k.pub")];
    }
    let r = serve_with_clock(cfg, clock).await;
    std::mem::forget(keys);
    Env { r, gitea, _db: db }
}

pub async fn draft(r: &Running, version: &str) -> module_webhook::store::VersionId {
    published(r, version, Lifecycle::Draft, "cd", HEAD).await
}

pub fn sign(body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(GITEA_SECRET.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The fixture comment with `text` as its body by `user`, re-signed: body and headers.
pub fn comment_request(
    repo: &str,
    id: i64,
    user: &str,
    text: &str,
    action: &str,
) -> (Vec<u8>, Vec<(String, String)>) {
    let mut v: serde_json::Value =
        serde_json::from_slice(&data("issue-comment-created-on-pull-request.json")).unwrap();
    v["repository"]["full_name"] = repo.into();
    v["comment"]["id"] = id.into();
    v["comment"]["body"] = text.into();
    v["comment"]["user"]["login"] = user.into();
    v["action"] = action.into();
    let body = serde_json::to_vec_pretty(&v).unwrap();
    let h = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "X-Gitea-Delivery".to_string(),
            format!("comment-{id}-{action}"),
        ),
        ("X-Gitea-Event".to_string(), "issue_comment".to_string()),
        (
            "X-Gitea-Event-Type".to_string(),
            "pull_request_comment".to_string(),
        ),
        ("X-Gitea-Signature".to_string(), sign(&body)),
    ];
    (body, h)
}
