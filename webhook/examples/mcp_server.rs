//! A receiver for the MCP latency benchmark (bench/mcp.sh): SQLite, one module with N
//! ingested versions, the API tokens `bench-read-token-0123` (read) and
//! `bench-ops-token-01234` (operator). Prints `listening <url>` and serves until SIGTERM.
//!
//!   cargo run --release -p module-webhook --example mcp_server -- [N]

use module_webhook::{
    app::App,
    config::{ApiConfig, ApiToken, Config, HooksConfig, ModulePolicy, RegistryConfig, Role},
    store::{AuditAction, Lifecycle, NewAudit, VersionRow, Via, now_ms},
};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("k.pub");
    let (_, public) = powernode_module::trust::keys::generate(b"x")?;
    std::fs::write(&key, public)?;
    let token = |name: &str, token: &str, role| ApiToken {
        name: name.into(),
        token: token.into(),
        role,
    };
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
            gitea_secrets: vec![],
            harbor_auth: None,
            body_limit: 1 << 20,
        },
        api: ApiConfig {
            tokens: vec![
                token("reader", "bench-read-token-0123", Role::Read),
                token("ops", "bench-ops-token-01234", Role::Operator),
            ],
        },
        modules: vec![ModulePolicy {
            name: "my-redis".into(),
            repository: "acme/my-redis".into(),
            keys: vec![key],
            identity_regexp: None,
            issuer_regexp: None,
            trusted_root: None,
            require_tlog: true,
            trust_on_first_use: false.into(),
            gitea_repository: None,
            category: None,
        }],
        ingest: Default::default(),
        fleet: Default::default(),
        mcp: Default::default(),
        server: Default::default(),
        web: Default::default(),
        promotion: Default::default(),
        gitea: None,
        data_dir: dir.path().join("data"),
    };
    let app = App::new(cfg).await?;
    for i in 0..n {
        let version = format!("0.{i}.0");
        let id = format!("v-my-redis-{version}");
        let v = VersionRow {
            id: id.clone().into(),
            module: "my-redis".parse().unwrap(),
            version: version.parse().unwrap(),
            lifecycle: Lifecycle::Draft,
            repository: "acme/my-redis".into(),
            tag: format!("v{version}"),
            manifest_digest: format!("sha256:{i:064x}").parse().unwrap(),
            artifact_digest: Some(format!("sha256:{:064x}", i + 1_000_000).parse().unwrap()),
            composefs_digest: Some(format!("sha256:{:064x}", i + 2_000_000).parse().unwrap()),
            composefs_format: Some(1),
            source_repository: None,
            source_commit: Some(format!("{i:040x}")),
            signer_identity: None,
            signer_issuer: None,
            file_index: None,
            manifest: None,
            reject_reason: None,
            created_at: now_ms() + i as i64,
            updated_at: now_ms(),
        };
        let audit = NewAudit {
            version_id: Some(id.into()),
            template_id: None,
            module: Some("my-redis".into()),
            actor: "bench".into(),
            via: Via::Ingest,
            action: AuditAction::Ingested,
            from_state: None,
            to_state: Some(Lifecycle::Draft),
            reason: None,
            evidence: serde_json::json!({}),
        };
        app.state.store.write_version(&v, &audit).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening http://{}", listener.local_addr()?);
    let router = module_webhook::app::router(app.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    // Serve until the benchmark stops us (SIGTERM to our PID).
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
        .recv()
        .await;
    Ok(())
}
