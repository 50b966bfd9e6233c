//! Promotion requests waiting for their requirements. Every change of a request's state is a
//! compare-and-set on `state = 'pending'`, like version transitions: a `/cancel` and a
//! concurrent re-evaluation cannot undo each other.

use super::{RequestId, Store, VersionId, Via, codec::parsed};
use powernode_module::digest::Digest;
use powernode_module::lifecycle::{Actor, Lifecycle};
use serde::Serialize;
use sqlx::{Any, Row, Transaction, any::AnyRow};
use std::fmt;

/// Where a request stands. Only `Pending` ever changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Done,
    Refused,
    Cancelled,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Done => "done",
            RequestState::Refused => "refused",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> anyhow::Result<RequestState> {
        Ok(match s {
            "pending" => RequestState::Pending,
            "done" => RequestState::Done,
            "refused" => RequestState::Refused,
            "cancelled" => RequestState::Cancelled,
            "expired" => RequestState::Expired,
            other => anyhow::bail!("unknown request state {other:?}"),
        })
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PromotionRequest {
    pub id: RequestId,
    pub version_id: VersionId,
    pub to_state: Lifecycle,
    /// The manifest digest the request named: approvals count only for it.
    pub digest: Digest,
    pub requester: Actor,
    pub via: Via,
    pub repository: Option<String>,
    pub pr_number: Option<i64>,
    pub state: RequestState,
    pub missing: serde_json::Value,
    /// The reason of a yank request.
    pub reason: Option<String>,
    /// When the request was made: only approvals submitted after it count for it.
    pub created_at: i64,
    pub expires_at: i64,
}

const COLS: &str = "id, version_id, to_state, digest, requester, via, repository, pr_number, state, missing, reason, created_at, expires_at";

/// Writes `r` with `state` and `missing` (INSERT … `on_conflict`), on the pool or inside a
/// transaction. Returns the rows written.
async fn write<'e>(
    exec: impl sqlx::Executor<'e, Database = Any>,
    r: &PromotionRequest,
    state: RequestState,
    missing: &serde_json::Value,
    now: i64,
    on_conflict: &str,
) -> anyhow::Result<u64> {
    let sql = format!(
        "INSERT INTO promotion_requests ({COLS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) {on_conflict}"
    );
    Ok(sqlx::query(&sql)
        .bind(r.id.as_str())
        .bind(r.version_id.as_str())
        .bind(r.to_state.as_str())
        .bind(r.digest.to_string())
        .bind(r.requester.encode())
        .bind(r.via.as_str())
        .bind(&r.repository)
        .bind(r.pr_number)
        .bind(state.as_str())
        .bind(missing.to_string())
        .bind(&r.reason)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(now)
        .execute(exec)
        .await?
        .rows_affected())
}

/// Records `r` as done inside the transaction that applied it (see
/// [`Store::transition_version`]): inserted if it is new, moved out of `pending` if an
/// earlier attempt left it there; a request that already left `pending` keeps its state.
/// So a crash after the transition's commit cannot leave its request open, to be decided a
/// second time (and refused: the version is no longer where the request found it).
pub(crate) async fn settle_done(
    tx: &mut Transaction<'_, Any>,
    r: &PromotionRequest,
    now: i64,
) -> anyhow::Result<()> {
    write(
        &mut **tx,
        r,
        RequestState::Done,
        &serde_json::json!([]),
        now,
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, missing = excluded.missing, \
         updated_at = excluded.updated_at WHERE promotion_requests.state = 'pending'",
    )
    .await?;
    Ok(())
}

fn row(r: &AnyRow) -> anyhow::Result<PromotionRequest> {
    Ok(PromotionRequest {
        id: r.try_get("id")?,
        version_id: r.try_get("version_id")?,
        to_state: parsed(r, "to_state")?,
        digest: parsed(r, "digest")?,
        requester: Actor::decode(&r.try_get::<String, _>("requester")?)
            .map_err(anyhow::Error::msg)?,
        via: Via::parse(&r.try_get::<String, _>("via")?)?,
        repository: r.try_get("repository")?,
        pr_number: r.try_get("pr_number")?,
        state: RequestState::parse(&r.try_get::<String, _>("state")?)?,
        missing: serde_json::from_str(&r.try_get::<String, _>("missing")?)?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
    /// Records a new request. Returns `false` (and writes nothing) if one with this id exists:
    /// the id is derived from the request's origin, so a re-run never records it twice.
    pub async fn insert_request(&self, r: &PromotionRequest) -> anyhow::Result<bool> {
        let n = write(
            &self.pool,
            r,
            r.state,
            &r.missing,
            self.now(),
            "ON CONFLICT DO NOTHING",
        )
        .await?;
        Ok(n == 1)
    }

    pub async fn request_by_id(&self, id: &RequestId) -> anyhow::Result<Option<PromotionRequest>> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM promotion_requests WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// Pending requests, optionally of one Gitea repository.
    pub async fn pending_requests(
        &self,
        repository: Option<&str>,
    ) -> anyhow::Result<Vec<PromotionRequest>> {
        let rows = self
            .fetch_where(
                &format!("SELECT {COLS} FROM promotion_requests WHERE state = 'pending'"),
                "repository",
                repository,
                "created_at",
            )
            .await?;
        rows.iter().map(row).collect()
    }

    /// Updates what a pending request still misses (returns false if it left `pending`).
    pub async fn refresh_request(
        &self,
        id: &RequestId,
        missing: &serde_json::Value,
    ) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE promotion_requests SET missing = $2, updated_at = $3 WHERE id = $1 AND state = 'pending'",
        )
        .bind(id.as_str())
        .bind(missing.to_string())
        .bind(self.now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Moves a request out of `pending` (returns false if it already left it), enqueueing
    /// `then` in the same transaction when it moved (the reply telling the requester).
    pub async fn close_request(
        &self,
        id: &RequestId,
        state: RequestState,
        missing: &serde_json::Value,
        then: &[super::NewJob],
    ) -> anyhow::Result<bool> {
        debug_assert_ne!(state, RequestState::Pending);
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE promotion_requests SET state = $2, missing = $3, updated_at = $4 WHERE id = $1 AND state = 'pending'",
        )
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(missing.to_string())
        .bind(self.now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            for j in then {
                super::jobs::insert(&mut tx, j, self.now()).await?;
            }
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
