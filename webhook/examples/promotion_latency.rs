//! Measures a comment-driven promotion against a fake Gitea on loopback: the time from the
//! approving-review webhook to the committed transition (`blessed → live`, one approval
//! required), and how many Gitea API calls one promotion costs. Used by bench/promotion.sh.
//!
//!   cargo run --release -p module-webhook --example promotion_latency -- [N]

use hmac::{Hmac, Mac};
use module_webhook::{
    app::App,
    config::{Config, GiteaConfig, HooksConfig, ModulePolicy, RegistryConfig},
    store::{Lifecycle, NewAudit, VersionId, VersionRow, now_ms},
};
use powernode_testkit::gitea::{FakeGitea, review};
use sha2::Sha256;
use std::time::Instant;

const REPO: &str = "acme/hello-module";
const HEAD: &str = "4c1f8e2b9a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
const SECRET: &str = "bench-secret-0123456789";

fn sign(body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gitea = FakeGitea::start();
    gitea.grant(REPO, "alice", "write");
    gitea.grant(REPO, "bob", "write");
    let key = dir.path().join("k.pub");
    let (_, public) = powernode_module::trust::keys::generate(b"x")?;
    std::fs::write(&key, public)?;
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("db.sqlite").display()),
        registry: RegistryConfig {
            url: "http://127.0.0.1:9".into(),
            repositories: vec!["acme/*".into()],
            username: None,
            password: None,
            insecure: false,
        },
        hooks: HooksConfig {
            distribution_token: None,
            gitea_secrets: vec![SECRET.into()],
            harbor_auth: None,
            body_limit: 1 << 20,
        },
        api: Default::default(),
        modules: vec![ModulePolicy {
            name: "my-redis".into(),
            repository: "acme/my-redis".into(),
            keys: vec![key],
            identity_regexp: None,
            issuer_regexp: None,
            trusted_root: None,
            require_tlog: true,
            trust_on_first_use: false.into(),
            gitea_repository: Some(REPO.into()),
            category: None,
        }],
        ingest: Default::default(),
        fleet: Default::default(),
        mcp: Default::default(),
        server: Default::default(),
        web: Default::default(),
        promotion: Default::default(),
        gitea: Some(GiteaConfig {
            url: gitea.server.url.clone(),
            token: Some("t".into()),
            timeout_secs: 30,
        }),
        data_dir: dir.path().join("data"),
    };
    let app = App::new(cfg).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = module_webhook::app::router(app.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let comment = serde_json::from_slice::<serde_json::Value>(include_bytes!(
        "../tests/data/issue-comment-created-on-pull-request.json"
    ))?;
    let review_body = include_bytes!("../tests/data/pull-request-review-approved.json").to_vec();
    let post = |body: Vec<u8>, event: &'static str, delivery: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(format!("{url}/hooks/gitea"))
                .header("X-Gitea-Delivery", delivery)
                .header("X-Gitea-Event-Type", event)
                .header("X-Gitea-Signature", sign(&body))
                .body(body)
                .send()
                .await
        }
    };
    let mut latencies = Vec::new();
    let mut calls_per_promotion = Vec::new();
    for i in 0..n {
        let version = format!("1.0.{i}");
        let id = VersionId::from(format!("v-my-redis-{version}"));
        let v = VersionRow {
            id: id.clone(),
            module: "my-redis".parse().unwrap(),
            version: version.parse().unwrap(),
            lifecycle: Lifecycle::Blessed,
            repository: "acme/my-redis".into(),
            tag: format!("v{version}"),
            manifest_digest: format!("sha256:{:064x}", i).parse().unwrap(),
            artifact_digest: None,
            composefs_digest: None,
            composefs_format: Some(1),
            source_repository: None,
            source_commit: Some(HEAD.into()),
            signer_identity: None,
            signer_issuer: None,
            file_index: None,
            manifest: None,
            reject_reason: None,
            created_at: now_ms(),
            updated_at: now_ms(),
        };
        let audit = NewAudit {
            version_id: Some(id.clone()),
            template_id: None,
            module: Some("my-redis".into()),
            actor: "bench".into(),
            via: module_webhook::store::Via::Ingest,
            action: module_webhook::store::AuditAction::Ingested,
            from_state: None,
            to_state: Some(Lifecycle::Blessed),
            reason: None,
            evidence: serde_json::json!({}),
        };
        app.state.store.write_version(&v, &audit).await?;
        gitea
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .reviews
            .clear();
        let calls_before = gitea.calls().len();
        let mut c = comment.clone();
        c["comment"]["id"] = (10_000 + i as i64).into();
        c["comment"]["body"] = format!("/promote {version} live").into();
        c["comment"]["user"]["login"] = "alice".into();
        post(
            serde_json::to_vec(&c)?,
            "pull_request_comment",
            format!("c-{i}"),
        )
        .await?;
        app.drain().await?;
        gitea.add_review(REPO, 7, review(100 + i as i64, "bob", "APPROVED", HEAD));
        let t = Instant::now();
        post(
            review_body.clone(),
            "pull_request_review_approved",
            format!("r-{i}"),
        )
        .await?;
        app.drain().await?;
        let elapsed = t.elapsed();
        let state = app
            .state
            .store
            .version_by_id(&id)
            .await?
            .map(|v| v.lifecycle);
        anyhow::ensure!(state == Some(Lifecycle::Live), "{id} is {state:?}");
        latencies.push(elapsed.as_secs_f64() * 1000.0);
        calls_per_promotion.push(gitea.calls().len() - calls_before);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    calls_per_promotion.sort();
    println!(
        "review webhook → committed transition, x{n}: median {:.1} ms, p90 {:.1} ms",
        latencies[n / 2],
        latencies[(n * 9) / 10]
    );
    println!(
        "Gitea API calls per promotion (/promote comment → pending → approval → live): median {}",
        calls_per_promotion[n / 2]
    );
    Ok(())
}
