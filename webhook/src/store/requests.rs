//! Promotion requests waiting for their requirements.

use super::{Store, now_ms};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

#[derive(Debug, Clone, Serialize)]
pub struct PromotionRequest {
    pub id: String,
    pub version_id: String,
    pub to_state: String,
    pub digest: String,
    pub requester: String,
    pub via: String,
    pub repository: Option<String>,
    pub pr_number: Option<i64>,
    /// pending | done | refused | cancelled | expired
    pub state: String,
    pub missing: serde_json::Value,
    pub created_at: i64,
    pub expires_at: i64,
}

const COLS: &str = "id, version_id, to_state, digest, requester, via, repository, pr_number, state, missing, created_at, expires_at";

fn row(r: &AnyRow) -> anyhow::Result<PromotionRequest> {
    Ok(PromotionRequest {
        id: r.try_get("id")?,
        version_id: r.try_get("version_id")?,
        to_state: r.try_get("to_state")?,
        digest: r.try_get("digest")?,
        requester: r.try_get("requester")?,
        via: r.try_get("via")?,
        repository: r.try_get("repository")?,
        pr_number: r.try_get("pr_number")?,
        state: r.try_get("state")?,
        missing: serde_json::from_str(&r.try_get::<String, _>("missing")?)?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
    /// Records (or refreshes) a pending request. The id is derived from its origin, so a
    /// re-run of the same command updates the same request.
    pub async fn upsert_request(&self, r: &PromotionRequest) -> anyhow::Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM promotion_requests WHERE id = $1")
            .bind(&r.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO promotion_requests ({COLS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&r.id)
        .bind(&r.version_id)
        .bind(&r.to_state)
        .bind(&r.digest)
        .bind(&r.requester)
        .bind(&r.via)
        .bind(&r.repository)
        .bind(r.pr_number)
        .bind(&r.state)
        .bind(r.missing.to_string())
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn request_by_id(&self, id: &str) -> anyhow::Result<Option<PromotionRequest>> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM promotion_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// Pending requests, optionally of one Gitea repository.
    pub async fn pending_requests(
        &self,
        repository: Option<&str>,
    ) -> anyhow::Result<Vec<PromotionRequest>> {
        let rows = match repository {
            Some(repo) => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM promotion_requests WHERE state = 'pending' AND repository = $1 ORDER BY created_at"
                ))
                .bind(repo)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLS} FROM promotion_requests WHERE state = 'pending' ORDER BY created_at"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(row).collect()
    }

    /// Moves a request out of `pending` (returns false if it already left it).
    pub async fn close_request(
        &self,
        id: &str,
        state: &str,
        missing: &serde_json::Value,
    ) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE promotion_requests SET state = $2, missing = $3, updated_at = $4 WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(state)
        .bind(missing.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
