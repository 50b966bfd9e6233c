//! The reconciler: on start and every interval, list the configured modules' repositories
//! and enqueue any tag without a version, and re-check versions waiting for a signature.
//! This catches pushes made while the receiver was down (Gitea sends each webhook once).

use crate::{ingest::Ctx, store::Job};

fn ingest_job(repository: &str, tag: &str) -> crate::store::NewJob {
    Job::Ingest {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
    }
    .to_new()
}
use powernode_module::registry::parse_reference;

/// One pass. Returns how many jobs were enqueued.
pub async fn reconcile(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut n = 0;
    for trust in ctx.policies.all() {
        let r = parse_reference(&format!("{}/{}", ctx.registry_host, trust.repository))?;
        let tags = match ctx.registry.list_tags(&r).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(repository = %trust.repository, error = %e, "reconcile: listing tags failed");
                continue;
            }
        };
        let known = ctx.store.known_tags(&trust.repository).await?;
        for tag in tags {
            if tag.ends_with(".sig") || known.contains(&tag) {
                continue;
            }
            if ctx
                .store
                .enqueue(&ingest_job(&trust.repository, &tag))
                .await?
            {
                n += 1;
            }
        }
    }
    for v in ctx.store.pending_versions(None).await? {
        if ctx
            .store
            .enqueue(&ingest_job(&v.repository, &v.tag))
            .await?
        {
            n += 1;
        }
    }
    Ok(n)
}
