//! Trust on first use with an operator's confirmation (`trust_on_first_use = "confirm"`):
//! the first identity is a proposal, its versions wait, and an operator confirms or rejects
//! it through `/api/v1/pins` or MCP, audited.

mod common;
use common::{fleet::post, *};
use module_webhook::{
    config::{ModulePolicy, TrustOnFirstUse},
    ingest::{Outcome, Rejection},
    store::{Lifecycle, PinState},
};
use powernode_testkit::{
    copy_tree, example, module_builder,
    registry::TestRegistry,
    sigstore::{FakeFulcio, FakeRekor, TestCa, jwt},
};
use rstest::rstest;
use serde_json::{Value, json};
use std::{process::Command, sync::Arc};

const REPO: &str = "acct/modules/my-redis-module";
const ISSUER: &str = "https://gitea.example.org";
const WORKFLOW: &str =
    "https://git.example.org/acct/modules/my-redis-module/.gitea/workflows/release.yaml";
const OTHER: &str =
    "https://git.example.org/acct/modules/my-redis-module/.gitea/workflows/other.yaml";

/// A CA, Fulcio, Rekor, a registry and the example module, for keyless releases.
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
    /// Releases the module at `version`, signed keyless as `identity`.
    fn release(&self, version: &str, identity: &str) {
        let token = jwt(&json!({"iss": ISSUER, "sub": "repo:acct/x", "san": identity}));
        let o = Command::new(module_builder())
            .arg("release")
            .arg(self.module.path())
            .args([
                "--ref",
                &self.reg.repo(REPO),
                "--version",
                version,
                "--fulcio-url",
                &self.fulcio.server.url,
                "--rekor-url",
                &self.rekor.server.url,
            ])
            .env("SIGSTORE_ID_TOKEN", token)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn policy(&self) -> ModulePolicy {
        ModulePolicy {
            name: "my-redis".into(),
            repository: REPO.into(),
            keys: vec![],
            identity_regexp: None,
            issuer_regexp: None,
            trusted_root: Some(self.root.clone()),
            require_tlog: true,
            trust_on_first_use: TrustOnFirstUse::Confirm,
            gitea_repository: None,
            category: None,
        }
    }

    async fn serve(&self, db: &TestDb) -> Running {
        serve(config(&db.url, &self.reg.host, vec![self.policy()])).await
    }
}

fn tag_of(version: &str) -> String {
    format!("v{version}")
}

async fn ingest(r: &Running, version: &str) -> Outcome {
    r.app
        .worker
        .ctx
        .ingest(REPO, &tag_of(version))
        .await
        .unwrap()
}

async fn lifecycle(r: &Running, version: &str) -> (Lifecycle, Option<String>) {
    let v = r
        .app
        .state
        .store
        .version("my-redis", version)
        .await
        .unwrap()
        .unwrap();
    (v.lifecycle, v.reject_reason)
}

/// Runs the job queue until it is empty.
async fn drain(r: &Running) {
    while r.app.worker.run_once().await.unwrap() {}
}

async fn actions(r: &Running, version_id: &str) -> Vec<(String, String, String)> {
    r.app
        .state
        .store
        .audit_of(&version_id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action.to_string(), a.via.to_string(), a.actor))
        .collect()
}

fn pattern(workflow: &str) -> String {
    format!("^{}@refs/tags/[^@]+$", regex::escape(workflow))
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_proposal_becomes_the_pin_and_its_held_versions_drafts(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    s.release("1.0.1", &format!("{WORKFLOW}@refs/tags/v1.0.1"));
    s.release("1.0.2", &format!("{OTHER}@refs/tags/v1.0.2"));
    let db = backend.db().await;
    let r = s.serve(&db).await;
    // First push: a proposal, and the version waits (not a draft, no timeout).
    assert!(matches!(
        ingest(&r, "1.0.0").await,
        Outcome::PendingSignature(_)
    ));
    let (state, why) = lifecycle(&r, "1.0.0").await;
    assert_eq!(state, Lifecycle::PendingSignature);
    assert!(
        why.as_deref()
            .is_some_and(|w| w.contains("awaiting an operator's confirmation")),
        "{why:?}"
    );
    let (status, listed) = r.get("/api/v1/pins", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{listed}");
    let pins = listed["pins"].as_array().unwrap();
    assert_eq!(pins.len(), 1, "{listed}");
    let p = &pins[0];
    assert_eq!(p["module"], "my-redis");
    assert_eq!(p["state"], "proposed");
    assert_eq!(p["identity_pattern"], pattern(WORKFLOW));
    assert_eq!(p["issuer"], ISSUER);
    assert_eq!(p["version_id"], "v-my-redis-1.0.0");
    let v = r
        .app
        .state
        .store
        .version("my-redis", "1.0.0")
        .await
        .unwrap();
    assert_eq!(p["manifest_digest"], v.unwrap().manifest_digest.to_string());
    assert!(p["pinned_at"].as_i64().unwrap() > 0);
    assert!(
        actions(&r, "v-my-redis-1.0.0")
            .await
            .iter()
            .any(|a| a.0 == "pin_proposed")
    );

    // A later tag of the proposed workflow waits too.
    assert!(matches!(
        ingest(&r, "1.0.1").await,
        Outcome::PendingSignature(_)
    ));

    // A read token cannot decide.
    let (status, body) = post(&r, "/pins/my-redis/confirm", READ_TOKEN, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&r, "/pins/other/confirm", OPS_TOKEN, json!({})).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = post(&r, "/pins/my-redis/confirm", OPS_TOKEN, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pin"]["state"], "confirmed");
    assert_eq!(body["pin"]["decided_via"], "api");
    assert_eq!(
        body["requeued"],
        json!(["v-my-redis-1.0.0", "v-my-redis-1.0.1"]),
        "{body}"
    );
    // The re-ingests are queued jobs (they survive a crash); run them.
    assert!(has_pending_jobs(&r.app.state.store).await);
    drain(&r).await;
    assert_eq!(lifecycle(&r, "1.0.0").await.0, Lifecycle::Draft);
    assert_eq!(lifecycle(&r, "1.0.1").await.0, Lifecycle::Draft);
    let pin = r.app.state.store.pin("my-redis").await.unwrap().unwrap();
    assert_eq!(pin.state, PinState::Confirmed);
    let audit = actions(&r, "v-my-redis-1.0.0").await;
    assert!(
        audit
            .iter()
            .any(|a| a.0 == "pin_confirmed" && a.1 == "api" && a.2.starts_with("api:")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|a| a.0 == "ingested"), "{audit:?}");

    // Decided once: a second confirmation is a conflict.
    let (status, body) = post(&r, "/pins/my-redis/confirm", OPS_TOKEN, json!({})).await;
    assert_eq!(status, 409, "{body}");

    // A second identity later is refused as before.
    let out = ingest(&r, "1.0.2").await;
    assert!(
        matches!(&out, Outcome::Rejected(_, why) if matches!(why, Rejection::SignerNotPinned(_))),
        "{out:?}"
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_proposal_rejects_its_versions_and_another_identity_proposes_again(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    s.release("1.0.1", &format!("{WORKFLOW}@refs/tags/v1.0.1"));
    s.release("1.0.2", &format!("{OTHER}@refs/tags/v1.0.2"));
    let db = backend.db().await;
    let r = s.serve(&db).await;
    assert!(matches!(
        ingest(&r, "1.0.0").await,
        Outcome::PendingSignature(_)
    ));
    assert!(matches!(
        ingest(&r, "1.0.1").await,
        Outcome::PendingSignature(_)
    ));
    let (status, body) = post(&r, "/pins/my-redis/reject", READ_TOKEN, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&r, "/pins/my-redis/reject", OPS_TOKEN, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pin"]["state"], "rejected");
    // The decision and the re-ingests it queued are one commit: a receiver that stops
    // right after it (before any job ran) leaves them to the next one.
    drop(r);
    let r = s.serve(&db).await;
    drain(&r).await;
    for v in ["1.0.0", "1.0.1"] {
        let (state, why) = lifecycle(&r, v).await;
        assert_eq!(state, Lifecycle::Rejected, "{v}");
        assert!(
            why.as_deref().is_some_and(|w| w.starts_with("pin_rejected")
                && w.contains("rejected as this module's first-use pin")),
            "{v}: {why:?}"
        );
    }
    let audit = actions(&r, "v-my-redis-1.0.0").await;
    assert!(
        audit.iter().any(|a| a.0 == "pin_rejected" && a.1 == "api"),
        "{audit:?}"
    );
    let (status, listed) = r.get("/api/v1/pins", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(listed["pins"][0]["state"], "rejected", "{listed}");

    // Another workflow of the repository proposes again; still nothing is a draft.
    assert!(matches!(
        ingest(&r, "1.0.2").await,
        Outcome::PendingSignature(_)
    ));
    let pin = r.app.state.store.pin("my-redis").await.unwrap().unwrap();
    assert_eq!(pin.state, PinState::Proposed);
    assert_eq!(pin.identity_pattern, pattern(OTHER));
    assert_eq!(pin.version_id, "v-my-redis-1.0.2");
}

/// A JSON-RPC answer from a streamable-HTTP body (plain JSON or server-sent events).
fn rpc_answer(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .rfind(|v| v.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {text:?}"))
}

/// Calls MCP tool `tool` as `token` over `/mcp`: initialize, initialized, tools/call.
async fn mcp_call(r: &Running, token: &str, tool: &str, args: Value) -> Value {
    let url = format!("{}/mcp", r.url);
    let send = |body: Value, session: Option<String>, version: Option<String>| {
        let mut q = r
            .http
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            q = q.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            q = q.header("mcp-protocol-version", v);
        }
        q.send()
    };
    let init = send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "pins-test", "version": "0"}}}),
        None,
        None,
    )
    .await
    .unwrap();
    assert!(init.status().is_success(), "{init:?}");
    let session = init
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let answer = rpc_answer(&init.text().await.unwrap());
    let version = answer["result"]["protocolVersion"]
        .as_str()
        .map(str::to_owned);
    send(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.clone(),
        version.clone(),
    )
    .await
    .unwrap();
    let res = send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": args}}),
        session,
        version,
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "{res:?}");
    rpc_answer(&res.text().await.unwrap())["result"].clone()
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_confirmed_over_mcp_is_audited_via_mcp(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    let db = backend.db().await;
    let r = s.serve(&db).await;
    assert!(matches!(
        ingest(&r, "1.0.0").await,
        Outcome::PendingSignature(_)
    ));
    let listed = mcp_call(&r, READ_TOKEN, "system_list_pins", json!({})).await;
    assert_eq!(listed["isError"], false, "{listed}");
    assert_eq!(listed["structuredContent"]["pins"][0]["state"], "proposed");
    let refused = mcp_call(
        &r,
        READ_TOKEN,
        "system_confirm_pin",
        json!({"module_name": "my-redis"}),
    )
    .await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(
        r.app
            .state
            .store
            .pin("my-redis")
            .await
            .unwrap()
            .unwrap()
            .state,
        PinState::Proposed
    );
    let done = mcp_call(
        &r,
        OPS_TOKEN,
        "system_confirm_pin",
        json!({"module_name": "my-redis"}),
    )
    .await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(done["structuredContent"]["pin"]["state"], "confirmed");
    drain(&r).await;
    assert_eq!(lifecycle(&r, "1.0.0").await.0, Lifecycle::Draft);
    let audit = actions(&r, "v-my-redis-1.0.0").await;
    assert!(
        audit.iter().any(|a| a.0 == "pin_confirmed" && a.1 == "mcp"),
        "{audit:?}"
    );
    let again = mcp_call(
        &r,
        OPS_TOKEN,
        "system_reject_pin",
        json!({"module_name": "my-redis"}),
    )
    .await;
    assert_eq!(again["isError"], true, "{again}");
}

/// The original boolean keeps its meaning: `true` pins at once, without a proposal.
#[tokio::test(flavor = "multi_thread")]
async fn trust_on_first_use_true_still_pins_at_once() {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    let db = sqlite().await;
    let mut p = s.policy();
    p.trust_on_first_use = true.into();
    let r = serve(config(&db.url, &s.reg.host, vec![p])).await;
    assert_eq!(
        ingest(&r, "1.0.0").await,
        Outcome::Ingested("v-my-redis-1.0.0".into())
    );
    let (status, listed) = r.get("/api/v1/pins", Some(READ_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(listed["pins"][0]["state"], "confirmed", "{listed}");
    assert_eq!(listed["pins"][0]["decided_by"], Value::Null);
}

/// A version held for the operator is not subject to the signature timeout: waiting for a
/// person is not a missing signature.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_version_outlasts_the_signature_timeout() {
    let s = sigstore();
    s.release("1.0.0", &format!("{WORKFLOW}@refs/tags/v1.0.0"));
    let db = sqlite().await;
    let clock = module_webhook::store::Clock::manual();
    let r = serve_with_clock(
        config(&db.url, &s.reg.host, vec![s.policy()]),
        clock.clone(),
    )
    .await;
    assert!(matches!(
        ingest(&r, "1.0.0").await,
        Outcome::PendingSignature(_)
    ));
    let timeout = r.app.state.config.ingest.signature_timeout_secs as u64;
    clock.advance(std::time::Duration::from_secs(timeout + 60));
    assert!(matches!(
        ingest(&r, "1.0.0").await,
        Outcome::PendingSignature(_)
    ));
    assert_eq!(lifecycle(&r, "1.0.0").await.0, Lifecycle::PendingSignature);
}
