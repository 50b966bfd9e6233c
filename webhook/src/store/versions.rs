//! Modules, versions and the append-only audit trail.

use super::{
    Store, VersionId,
    audit::{NewAudit, append_audit},
    codec::{opt_parsed, parsed},
};
pub use powernode_module::lifecycle::Lifecycle;
use powernode_module::{Version, digest::Digest, manifest::ModuleName};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VersionRow {
    pub id: VersionId,
    pub module: ModuleName,
    pub version: Version,
    pub lifecycle: Lifecycle,
    pub repository: String,
    pub tag: String,
    pub manifest_digest: Digest,
    pub artifact_digest: Option<Digest>,
    pub composefs_digest: Option<Digest>,
    pub composefs_format: Option<i64>,
    pub source_repository: Option<String>,
    pub source_commit: Option<String>,
    pub signer_identity: Option<String>,
    pub signer_issuer: Option<String>,
    pub file_index: Option<serde_json::Value>,
    pub manifest: Option<String>,
    pub reject_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const VCOLS: &str = "id, module, version, lifecycle, repository, tag, manifest_digest, artifact_digest, composefs_digest, composefs_format, source_repository, source_commit, signer_identity, signer_issuer, file_index, manifest, reject_reason, created_at, updated_at";

fn version_row(r: &AnyRow) -> anyhow::Result<VersionRow> {
    let index: Option<String> = r.try_get("file_index")?;
    Ok(VersionRow {
        id: r.try_get("id")?,
        module: parsed(r, "module")?,
        version: parsed(r, "version")?,
        lifecycle: parsed(r, "lifecycle")?,
        repository: r.try_get("repository")?,
        tag: r.try_get("tag")?,
        manifest_digest: parsed(r, "manifest_digest")?,
        artifact_digest: opt_parsed(r, "artifact_digest")?,
        composefs_digest: opt_parsed(r, "composefs_digest")?,
        composefs_format: r.try_get("composefs_format")?,
        source_repository: r.try_get("source_repository")?,
        source_commit: r.try_get("source_commit")?,
        signer_identity: r.try_get("signer_identity")?,
        signer_issuer: r.try_get("signer_issuer")?,
        file_index: index.map(|s| serde_json::from_str(&s)).transpose()?,
        manifest: r.try_get("manifest")?,
        reject_reason: r.try_get("reject_reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn version(&self, module: &str, version: &str) -> anyhow::Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {VCOLS} FROM versions WHERE module = $1 AND version = $2"
        ))
        .bind(module)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    pub async fn version_by_id(&self, id: &VersionId) -> anyhow::Result<Option<VersionRow>> {
        let row = sqlx::query(&format!("SELECT {VCOLS} FROM versions WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// Versions waiting for a signature, optionally only those of one manifest digest.
    pub async fn pending_versions(
        &self,
        digest: Option<&Digest>,
    ) -> anyhow::Result<Vec<VersionRow>> {
        let digest = digest.map(Digest::to_string);
        let rows = self
            .fetch_where(
                &format!("SELECT {VCOLS} FROM versions WHERE lifecycle = 'pending_signature'"),
                "manifest_digest",
                digest.as_deref(),
                "",
            )
            .await?;
        rows.iter().map(version_row).collect()
    }

    pub async fn versions_of(
        &self,
        module: &str,
        state: Option<Lifecycle>,
    ) -> anyhow::Result<Vec<VersionRow>> {
        let rows = match state {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {VCOLS} FROM versions WHERE module = $1 AND lifecycle = $2 ORDER BY created_at"
                ))
                .bind(module)
                .bind(s.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {VCOLS} FROM versions WHERE module = $1 ORDER BY created_at"))
                    .bind(module)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(version_row).collect()
    }

    /// Tags of `repository` that have a version row (any state).
    pub async fn known_tags(&self, repository: &str) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query("SELECT tag FROM versions WHERE repository = $1")
            .bind(repository)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("tag")?))
            .collect()
    }

    /// (module, repository, number of versions).
    pub async fn modules(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT m.name, m.repository, (SELECT COUNT(*) FROM versions v WHERE v.module = m.name) AS n FROM modules m ORDER BY m.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get("repository")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Writes (inserts or replaces a pre-draft row of) a version together with its audit
    /// entry, in one transaction. A published version is never overwritten: if one exists
    /// for (module, version) this returns `false` and writes nothing.
    pub async fn write_version(&self, v: &VersionRow, audit: &NewAudit) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let existing =
            sqlx::query("SELECT lifecycle FROM versions WHERE module = $1 AND version = $2")
                .bind(v.module.as_str())
                .bind(v.version.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(r) = existing {
            let state: String = r.try_get("lifecycle")?;
            let state: Lifecycle = state.parse().map_err(anyhow::Error::msg)?;
            if state.is_published() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM versions WHERE module = $1 AND version = $2")
                .bind(v.module.as_str())
                .bind(v.version.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO modules (name, repository, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(v.module.as_str())
            .bind(&v.repository)
            .bind(self.now())
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO versions ({VCOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .bind(v.id.as_str())
        .bind(v.module.as_str())
        .bind(v.version.to_string())
        .bind(v.lifecycle.as_str())
        .bind(&v.repository)
        .bind(&v.tag)
        .bind(v.manifest_digest.to_string())
        .bind(v.artifact_digest.map(|d| d.to_string()))
        .bind(v.composefs_digest.map(|d| d.to_string()))
        .bind(v.composefs_format)
        .bind(&v.source_repository)
        .bind(&v.source_commit)
        .bind(&v.signer_identity)
        .bind(&v.signer_issuer)
        .bind(v.file_index.as_ref().map(|i| i.to_string()))
        .bind(&v.manifest)
        .bind(&v.reject_reason)
        .bind(v.created_at)
        // Written now: `updated_at` is when this state was entered (soak times count from it).
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        append_audit(&mut tx, audit, self.now()).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// Moves a version from `from` to `to` if it is still in `from`, together with its audit
    /// row, in one transaction. Returns `false` (and writes nothing) when the version is no
    /// longer in `from`: of two concurrent requests, exactly one transitions. `then` are
    /// jobs enqueued in the same transaction (the desired-state recomputation a change to or
    /// from `live` needs), so a crash cannot lose them. `settles` is the promotion request
    /// this transition carries out, recorded `done` in the same transaction (a re-run after a
    /// crash finds it decided instead of deciding it again).
    pub async fn transition_version(
        &self,
        id: &VersionId,
        from: Lifecycle,
        to: Lifecycle,
        audit: &NewAudit,
        then: &[super::NewJob],
        settles: Option<&super::PromotionRequest>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE versions SET lifecycle = $3, updated_at = $4 WHERE id = $1 AND lifecycle = $2",
        )
        .bind(id.as_str())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(self.now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        if from == Lifecycle::Live || to == Lifecycle::Live {
            sqlx::query("UPDATE live_epoch SET epoch = epoch + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        append_audit(&mut tx, audit, self.now()).await?;
        for j in then {
            super::jobs::insert(&mut tx, j, self.now()).await?;
        }
        if let Some(r) = settles {
            super::requests::settle_done(&mut tx, r, self.now()).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The counter every change to the set of `live` versions increments (migration 0014): a
    /// live set read after it is current for as long as it stays the same.
    pub async fn live_epoch(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT epoch FROM live_epoch WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<i64, _>("epoch"))
            .transpose()?
            .unwrap_or(0))
    }

    /// Every `live` version of every module (the inputs of desired states and validation).
    pub async fn live_versions(&self) -> anyhow::Result<Vec<VersionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {VCOLS} FROM versions WHERE lifecycle = 'live' ORDER BY module, created_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }
}
