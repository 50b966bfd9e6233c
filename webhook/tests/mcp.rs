//! `/mcp` from a client nobody here wrote: the official Python MCP SDK (`mcp==2.3.*`) walks
//! the walkthrough against a receiver with a real registry, real releases and the fake Gitea.
//! `tests/mcp/walkthrough.py` makes the calls and checks their answers; this file sets the
//! scene and does, between its phases, what happens outside MCP (a reviewer approves the
//! commit's pull request on Gitea; an instance registers and reports).

mod common;
use common::{fleet::*, release::*, *};
use module_webhook::{
    config::{GiteaConfig, PromotionOverride},
    store::Lifecycle,
};
use powernode_module::lifecycle::StagePolicy;
use powernode_testkit::{gitea::FakeGitea, registry::TestRegistry};
use rstest::rstest;
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

const GITEA_REPO: &str = "acme/hello-module";
const TEMPLATE: &str = "tpl-web";
const INSTANCE: &str = "node-1";

/// The test venv's Python with the MCP SDK (scripts/test creates it), or `MCP_PYTHON`.
fn mcp_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MCP_PYTHON") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-venv/bin/python");
    assert!(
        p.exists(),
        "the official Python MCP SDK is needed for this test: python3 -m venv target/mcp-venv && \
         target/mcp-venv/bin/pip install \"mcp==2.3.*\" (scripts/test does this), or set MCP_PYTHON"
    );
    p
}

/// Runs one phase of the walkthrough script; returns what it printed last (JSON).
fn phase(python: &Path, r: &Running, name: &str, manifest: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/walkthrough.py");
    let o = Command::new(python)
        .arg(&script)
        .arg(name)
        .env("MCP_URL", format!("{}/mcp", r.url))
        .env("OPS_TOKEN", OPS_TOKEN)
        .env("READ_TOKEN", READ_TOKEN)
        .env("MANIFEST", manifest)
        .env("TEMPLATE", TEMPLATE)
        .env("INSTANCE", INSTANCE)
        .env("GITEA_OWNER", "acme")
        .env("GITEA_REPO", "hello-module")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "walkthrough phase {name} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("phase {name} printed no JSON ({e}): {stdout}"))
}

/// `git init` + one commit in `dir`: the release then names a source commit, which is what
/// approvals are given on.
fn commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "Alice Author")
            .env("GIT_AUTHOR_EMAIL", "alice@example.org")
            .env("GIT_COMMITTER_NAME", "Alice Author")
            .env("GIT_COMMITTER_EMAIL", "alice@example.org")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "feat: my-redis module"]);
    git(&["rev-parse", "HEAD"])
}

/// The approving-review webhook from the fixture, as a new delivery.
async fn review_event(r: &Running) {
    let body = data("pull-request-review-approved.json");
    let mut h = headers("pull-request-review-approved.headers.json");
    for (k, v) in h.iter_mut() {
        if k == "X-Gitea-Delivery" {
            *v = format!("mcp-review-{}", r.deliveries().await);
        }
    }
    let (s, text) = r.post("/hooks/gitea", body, &h).await;
    assert!(s == 202 || s == 200, "{text}");
    r.app.drain().await.unwrap();
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_over_mcp_with_the_official_python_sdk(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let python = mcp_python();
    let db = backend.db().await;
    let reg = TestRegistry::start();
    let k = keys();
    let gitea = FakeGitea::start();
    gitea.grant(GITEA_REPO, "bob", "write");
    let names = ["system-base", "security-hardening", "my-redis"];
    let policies = names
        .iter()
        .map(|m| {
            let mut p = key_policy(m, &repo(m), k.public.clone());
            p.gitea_repository = Some(GITEA_REPO.into());
            p
        })
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    // The dependencies go live on their own; my-redis needs one approval, as in the seed.
    cfg.promotion.live = StagePolicy::default();
    cfg.promotion.overrides = vec![PromotionOverride {
        module: Some("my-redis".into()),
        category: None,
        stage: Lifecycle::Live,
        policy: StagePolicy {
            min_approvals: 1,
            ..Default::default()
        },
    }];
    cfg.gitea = Some(GiteaConfig {
        url: gitea.server.url.clone(),
        token: Some("gitea-token".into()),
        timeout_secs: 30,
    });
    let r = serve(cfg).await;

    for m in &names[..2] {
        release_live(&r, &reg, &k, module(m).path(), m, "1.0.0").await;
    }
    let redis = module("my-redis");
    let head = commit(redis.path());
    release_draft(&r, &reg, &k, redis.path(), "my-redis", "0.1.0").await;
    gitea.add_run(
        GITEA_REPO,
        json!({
            "id": 31, "display_title": "feat: my-redis module", "path": "build.yaml@refs/tags/v0.1.0",
            "event": "push", "status": "completed", "conclusion": "success", "head_sha": head,
            "head_branch": "v0.1.0", "run_number": 4, "run_attempt": 1,
            "started_at": "2026-12-03T10:00:00Z", "completed_at": "2026-12-03T10:02:00Z",
            "html_url": "https://gitea.example.org/acme/hello-module/actions/runs/31"
        }),
    );
    let (s, v) = post(
        &r,
        "/templates",
        OPS_TOKEN,
        json!({"id": TEMPLATE, "platform": "rpi4", "description": "web nodes"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let manifest = redis.path().join("manifest.yaml");

    let tools = phase(&python, &r, "tools", &manifest);
    assert_eq!(tools["tools"].as_array().unwrap().len(), 17, "{tools}");

    let seen = phase(&python, &r, "promote", &manifest);
    assert_eq!(seen["source_commit"], head.as_str(), "{seen}");
    assert_eq!(seen["run_id"], 31);
    let pending = r.app.state.store.pending_requests(None).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].via.as_str(), "mcp");
    assert!(
        pending[0].id.as_str().starts_with("mcp:"),
        "{}",
        pending[0].id
    );

    // A reviewer approves the commit's pull request: the pending MCP request completes.
    gitea.open_pull(GITEA_REPO, 7, &head);
    gitea.add_review(
        GITEA_REPO,
        7,
        powernode_testkit::gitea::review(41, "bob", "APPROVED", &head),
    );
    review_event(&r).await;

    let assigned = phase(&python, &r, "live", &manifest);
    assert_eq!(
        assigned["modules"],
        json!(["system-base", "security-hardening", "my-redis"]),
        "{assigned}"
    );

    // An instance of the template registers and reports what the signed state says.
    let (s, v) = post(
        &r,
        "/instances",
        OPS_TOKEN,
        json!({"id": INSTANCE, "template_id": TEMPLATE}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, envelope, _) = call(
        &r,
        reqwest::Method::GET,
        &format!("/instances/{INSTANCE}/desired-state"),
        &token,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{envelope}");
    let key = r.get("/api/v1/signing-key", None).await.1;
    let key =
        powernode_module::trust::keys::public_from_pem(key.as_str().unwrap().as_bytes()).unwrap();
    let (doc, state_id) =
        powernode_module::desired_state::verify(&serde_json::from_value(envelope).unwrap(), &key)
            .unwrap();
    assert_eq!(assigned["state_id"], state_id.to_string());
    // What the node observed of my-redis' packages and units comes with it.
    let (s, v) = report_observed(
        &r,
        INSTANCE,
        &token,
        &state_id.to_string(),
        &doc,
        json!({"my-redis": {
            "packages": {"redis-server": "5:7.0.15-1~deb12u1", "redis-tools": "5:7.0.15-1~deb12u1"},
            "units": {"redis-server.service": "active"},
        }}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let inst = phase(&python, &r, "instance", &manifest);
    assert_eq!(
        inst["running"]["my-redis"], seen["composefs_digest"],
        "{inst}"
    );
    assert_eq!(inst["drift"], false);
    assert_eq!(
        inst["redis_server"],
        json!([{"instance_id": INSTANCE, "template_id": TEMPLATE, "module": "my-redis", "version": "5:7.0.15-1~deb12u1"}]),
        "{inst}"
    );

    let yanked = phase(&python, &r, "yank", &manifest);
    assert_eq!(yanked["lifecycle_state"], "yanked");
    let audit = r
        .app
        .state
        .store
        .audit_of(&"v-my-redis-0.1.0".into())
        .await
        .unwrap();
    let yank = audit
        .iter()
        .find(|a| a.to_state == Some(Lifecycle::Yanked))
        .unwrap();
    assert_eq!((yank.via.as_str(), yank.actor.as_str()), ("mcp", "api:ops"));

    // The instance's token rotated, then the instance deleted, over MCP: neither the
    // first token nor the second works any more, and both changes are audited via mcp.
    let rotated = phase(&python, &r, "tokens", &manifest);
    let second = rotated["token"].as_str().unwrap();
    assert_ne!(second, token);
    for t in [token.as_str(), second] {
        let (s, v, _) = call(
            &r,
            reqwest::Method::GET,
            &format!("/instances/{INSTANCE}/desired-state"),
            t,
            None,
            &[],
        )
        .await;
        assert_eq!(s, 401, "{v}");
    }
    let trail = r
        .app
        .state
        .store
        .audit_of_template(&TEMPLATE.into())
        .await
        .unwrap();
    for action in ["instance_token_rotated", "instance_deleted"] {
        let a = trail.iter().find(|a| a.action == action).unwrap();
        assert_eq!((a.via.as_str(), a.actor.as_str()), ("mcp", "api:ops"));
        assert_eq!(a.evidence["instance_id"], INSTANCE);
    }
}

/// `Host` and `Origin` outside `[mcp]` are refused before any tool runs (DNS rebinding);
/// `mcp.enabled = false` removes the endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_refuses_foreign_hosts_and_origins_and_can_be_off() {
    let db = sqlite().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}});
    let send = |extra: &[(&str, &str)]| {
        let mut req = r
            .http
            .post(format!("{}/mcp", r.url))
            .bearer_auth(READ_TOKEN)
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let ok = send(&[]).await.unwrap();
    assert_eq!(ok.status(), 200, "{:?}", ok.text().await);
    let host = send(&[("host", "evil.example.com")]).await.unwrap();
    assert_eq!(host.status(), 403, "a foreign Host");
    let origin = send(&[("origin", "https://evil.example.com")])
        .await
        .unwrap();
    assert_eq!(origin.status(), 403, "a foreign Origin");
    let local = send(&[("origin", "http://localhost:5173")]).await.unwrap();
    assert_eq!(local.status(), 200, "a loopback Origin");

    let db2 = sqlite().await;
    let mut cfg = config(&db2.url, "127.0.0.1:1", vec![]);
    cfg.mcp.enabled = false;
    let off = serve(cfg).await;
    let res = off
        .http
        .post(format!("{}/mcp", off.url))
        .bearer_auth(READ_TOKEN)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// `/api/v1/openapi.json` is served, public, and describes `/api/v1` (the route list is
/// checked against the router by the unit test in `api::openapi`).
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_served() {
    let db = sqlite().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let (s, doc) = r.get("/api/v1/openapi.json", None).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let promote = &doc["paths"]["/api/v1/versions/{id}/promote"]["post"];
    assert!(promote["requestBody"].is_object(), "{promote}");
    assert!(promote["responses"]["409"].is_object(), "{promote}");
    assert!(
        doc["components"]["schemas"]["Decided"].is_object(),
        "{}",
        doc["components"]["schemas"]
    );
}
