//! Assembling the service from its configuration, and running it until a shutdown signal.

use crate::{
    catalogue::Policies,
    config::Config,
    hooks::Repositories,
    http::AppState,
    ingest::Ctx,
    jobs::{self, worker::Worker},
    metrics::Metrics,
    store::Store,
};
use powernode_module::registry::{Credentials, Registry, is_loopback, parse_reference};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    pub worker: Worker,
}

/// `http://host:port` → (`host:port`, plain HTTP?).
fn registry_host(url: &str) -> anyhow::Result<(String, bool)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow::anyhow!("registry.url {url:?} needs a scheme (https:// or http://)")
    })?;
    let host = rest.trim_end_matches('/').to_owned();
    Ok((host, scheme == "http"))
}

impl App {
    pub async fn new(config: Config) -> anyhow::Result<App> {
        App::with_clock(config, crate::store::Clock::system()).await
    }

    /// As [`App::new`], going by `clock` (tests pass a manual one and move it).
    pub async fn with_clock(config: Config, clock: crate::store::Clock) -> anyhow::Result<App> {
        // Configurations built in code are checked like loaded ones.
        config.validate()?;
        let store = Store::connect_with_clock(&config.database_url, clock).await?;
        let (host, http) = registry_host(&config.registry.url)?;
        if http && !is_loopback(&host) && !config.registry.insecure {
            anyhow::bail!(
                "registry.url {} is plain HTTP to a non-loopback host; set registry.insecure = true to allow it",
                config.registry.url
            );
        }
        let creds = match (&config.registry.username, &config.registry.password) {
            (Some(u), Some(p)) => Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
                source: "configuration".into(),
            },
            _ => Credentials::Anonymous,
        };
        let any_ref = parse_reference(&format!("{host}/x"))?;
        let registry = Registry::new(&any_ref, creds, http || config.registry.insecure);
        let policies = Arc::new(Policies::load(&config.modules)?);
        let metrics = Arc::new(Metrics::default());
        // Blobs are staged under the receiver's own data directory, never the shared system
        // temporary directory (other users can fill or watch it).
        let work_dir = config.data_dir.join("staging");
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| anyhow::anyhow!("data_dir: creating {}: {e}", work_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&work_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| anyhow::anyhow!("data_dir: {}: {e}", work_dir.display()))?;
        }
        // Blobs a killed predecessor was staging are swept here: their jobs are retried
        // from the start, so the partial files would only take space.
        let (staging, swept) = crate::ingest::staging::Staging::claim(&work_dir)
            .map_err(|e| anyhow::anyhow!("data_dir: claiming {}: {e}", work_dir.display()))?;
        if swept > 0 {
            tracing::warn!(
                claims = swept,
                "removed blobs left half-staged by a stopped receiver"
            );
        }
        let keys = crate::fleet::key::Keys::configured(&config.fleet, &config.data_dir)?;
        if keys.register(&store).await? {
            // New keys: every served state is signed again (also those no node reads now).
            store.enqueue(&crate::fleet::recompute_job()).await?;
        }
        let fleet = crate::fleet::Fleet {
            store: store.clone(),
            keys: Arc::new(keys),
            policies: policies.clone(),
            registry_host: host.clone(),
            cache: Arc::new(crate::fleet::cache::Cache::new(store.clock.clone())),
            validity_secs: config.fleet.state_validity_secs,
            stale_after_ms: config.fleet.stale_after_secs * 1000,
            reports: crate::store::ReportLog::start(store.clone(), metrics.report_commits.clone()),
            metrics: metrics.clone(),
        };
        let ctx = Ctx {
            store: store.clone(),
            registry,
            registry_host: host,
            policies,
            metrics: metrics.clone(),
            signature_timeout_ms: config.ingest.signature_timeout_secs * 1000,
            max_artifact_bytes: config.ingest.max_artifact_bytes,
            max_index_entries: config.ingest.max_index_entries,
            work_dir: staging.dir.clone(),
            staging: Arc::new(staging),
        };
        let engine = match &config.gitea {
            Some(g) => Some(crate::promotion::Engine {
                store: store.clone(),
                gitea: crate::gitea::Gitea::new(
                    &g.url,
                    g.token.as_deref(),
                    std::time::Duration::from_secs(g.timeout_secs.max(1)),
                )?,
                promoter: crate::promotion::Promoter {
                    store: store.clone(),
                    config: config.promotion.clone(),
                    policies: ctx.policies.clone(),
                    commit_statuses: true,
                },
                policies: ctx.policies.clone(),
                request_ttl_ms: config.promotion.request_ttl_secs * 1000,
            }),
            None => None,
        };
        let worker = Worker {
            ctx,
            cfg: config.ingest.clone(),
            engine,
            fleet: fleet.clone(),
        };
        let promotions = crate::promotion::Promotions {
            store: store.clone(),
            config: config.promotion.clone(),
            policies: worker.ctx.policies.clone(),
            engine: worker.engine.clone(),
        };
        let state = AppState {
            promotions,
            deliveries: crate::store::DeliveryLog::start(
                store.clone(),
                metrics.delivery_commits.clone(),
            ),
            engine: worker.engine.clone(),
            policies: worker.ctx.policies.clone(),
            store,
            repos: Repositories::new(&config.registry.repositories)?,
            config: Arc::new(config),
            metrics,
            fleet,
        };
        Ok(App { state, worker })
    }

    /// Runs jobs until the queue has nothing due (tests step the queue with this).
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        while self.worker.run_once().await? {
            n += 1;
        }
        Ok(n)
    }

    /// Serves until SIGINT/SIGTERM: in-flight requests finish, each worker finishes its
    /// current job, queued jobs stay queued.
    pub async fn serve(self) -> anyhow::Result<()> {
        let cfg = self.state.config.clone();
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
        tracing::info!(listen = %listener.local_addr()?, "module-webhook listening");
        if self.state.store.backend == crate::store::Backend::Sqlite {
            let n = self.state.store.requeue_running().await?;
            if n > 0 {
                tracing::warn!(jobs = n, "re-queued jobs interrupted by the last stop");
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..cfg.ingest.workers.max(1) {
            let w = self.worker.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move { w.run_until(rx).await }));
        }
        let interval = Duration::from_secs(cfg.ingest.reconcile_interval_secs.max(1));
        if cfg.web.enabled {
            tasks.push(tokio::spawn(crate::web::sampler::run_until(
                self.state.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(crate::fleet::refresh_until(
            self.state.fleet.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(jobs::singletons::run_until(
            self.worker.ctx.clone(),
            self.worker.engine.clone(),
            interval,
            stop_rx.clone(),
        )));
        let mcp_stop = tokio_util::sync::CancellationToken::new();
        let on_signal = mcp_stop.clone();
        let router = routes(self.state.clone(), mcp_stop);
        crate::server::serve(listener, router, &cfg.server, async move {
            shutdown_signal().await;
            on_signal.cancel();
        })
        .await?;
        tracing::info!("shutting down: finishing in-flight jobs");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Every route of the service: hooks, operations endpoints, `/api/v1` and (unless
/// `mcp.enabled = false`) `/mcp`, with `[server]`'s timeouts and concurrency limit (the
/// probes outside the limit).
pub fn router(state: AppState) -> axum::Router {
    routes(state, tokio_util::sync::CancellationToken::new())
}

/// [`router`], with the token that ends `/mcp`'s open streams at shutdown.
fn routes(state: AppState, mcp_stop: tokio_util::sync::CancellationToken) -> axum::Router {
    let mut r = axum::Router::new()
        .merge(crate::hooks::routes::router())
        .nest("/api/v1", crate::api::router())
        .with_state(state.clone());
    if state.config.mcp.enabled {
        r = r.merge(crate::mcp::router(state.clone(), mcp_stop));
    }
    if state.config.web.enabled {
        r = r.merge(crate::web::router(state.clone()));
    }
    let server = &state.config.server;
    let r = crate::server::concurrency_limit(r, server)
        .merge(crate::http::ops::router().with_state(state.clone()));
    crate::server::timeouts(r, server)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
