//! Templates, their assigned modules, and the desired state each one serves.

use super::{
    NewJob, Store, TemplateId, TemplateLock,
    audit::{NewAudit, append_audit},
    jobs,
};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TemplateRow {
    pub id: TemplateId,
    pub platform: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Assignment {
    pub module_name: String,
    /// A SemVer requirement (`^1`), or any version.
    pub requirement: Option<String>,
    pub created_at: i64,
}

/// The desired state a template serves.
#[derive(Debug, Clone, Serialize)]
pub struct ServedState {
    pub state_id: String,
    pub document: serde_json::Value,
    /// The signed DSSE envelope, as served to instances.
    pub envelope: serde_json::Value,
    pub computed_at: i64,
    /// The signed sequence number (0: a schema 1 state from before sequences).
    pub sequence: i64,
    /// Unix seconds after which nodes refuse it (0: before expiries).
    pub expires_at: i64,
    /// Why this is not the state the assignments ask for (`{"mode": "degraded" | "held",
    /// …}`), `None` when it is.
    pub degraded: Option<serde_json::Value>,
}

/// A signed state to serve, replacing the one with sequence `replaces` (`None`: the
/// template serves none yet). Compare-and-set: if another replica served a state first,
/// nothing is written and [`Recorded::Lost`] says so.
#[derive(Debug, Clone)]
pub struct Serve<'a> {
    pub state_id: &'a str,
    pub document: &'a serde_json::Value,
    pub envelope: &'a serde_json::Value,
    pub sequence: i64,
    pub expires_at: i64,
    pub degraded: Option<&'a serde_json::Value>,
    pub replaces: Option<i64>,
}

/// What [`Store::record_computation`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The computation is recorded; the served state is as it was.
    Kept,
    /// The given state is served now.
    Served,
    /// Another recomputation served a state first: nothing was written; compute again.
    Lost,
}

/// The latest recomputation of a template, whether it replaced the served state or not.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LastComputation {
    /// Conflicts kept it from replacing the served state.
    pub blocked: bool,
    pub findings: serde_json::Value,
    pub candidate_state_id: Option<String>,
    pub computed_at: i64,
    /// The digest of the inputs it was computed from (`None`: from before input digests);
    /// the same inputs again compose nothing.
    #[serde(skip)]
    pub input_digest: Option<String>,
    /// Every module name those inputs reach: a change to another module's `live` versions
    /// cannot change this template (`None`: unknown, always recomputed).
    #[serde(skip)]
    pub closure: Option<Vec<String>>,
    /// The computed state's modules, in composition order.
    #[serde(skip)]
    pub modules: Option<Vec<String>>,
}

pub(super) fn template_row(r: &AnyRow) -> anyhow::Result<TemplateRow> {
    Ok(TemplateRow {
        id: r.try_get("id")?,
        platform: r.try_get("platform")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The end of every fleet change: the template's `updated_at` (for changes to one),
/// the audit row and the recomputation jobs, committed together.
pub(super) async fn finish_change(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    touched: Option<&TemplateId>,
    audit: &NewAudit,
    then: &[NewJob],
    now: i64,
) -> anyhow::Result<()> {
    if let Some(id) = touched {
        sqlx::query("UPDATE templates SET updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    append_audit(&mut tx, audit, now).await?;
    for j in then {
        jobs::insert(&mut tx, j, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Creates a template; `false` if one with this id exists (nothing is changed then).
    pub async fn create_template(
        &self,
        t: &TemplateRow,
        audit: &NewAudit,
        then: &[NewJob],
    ) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "INSERT INTO templates (id, platform, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.platform)
        .bind(&t.description)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        finish_change(tx, None, audit, then, now).await?;
        Ok(true)
    }

    pub async fn template(&self, id: &TemplateId) -> anyhow::Result<Option<TemplateRow>> {
        let r = sqlx::query(
            "SELECT id, platform, description, created_at, updated_at FROM templates WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(template_row).transpose()
    }

    pub async fn templates(&self) -> anyhow::Result<Vec<TemplateRow>> {
        let rows = sqlx::query(
            "SELECT id, platform, description, created_at, updated_at FROM templates ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template_row).collect()
    }

    pub async fn assignments(&self, template_id: &TemplateId) -> anyhow::Result<Vec<Assignment>> {
        let rows = sqlx::query(
            "SELECT module, requirement, created_at FROM assignments WHERE template_id = $1 ORDER BY module",
        )
        .bind(template_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Assignment {
                    module_name: r.try_get("module")?,
                    requirement: r.try_get("requirement")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Assigns (or re-assigns with another requirement) a module, with its audit row and
    /// the recomputation job, in one transaction. Returns the previous requirement, if the
    /// module was assigned already.
    pub async fn assign(
        &self,
        template_id: &TemplateId,
        module: &str,
        requirement: Option<&str>,
        audit: &NewAudit,
        then: &[NewJob],
    ) -> anyhow::Result<Option<Option<String>>> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let before = sqlx::query(
            "SELECT requirement FROM assignments WHERE template_id = $1 AND module = $2",
        )
        .bind(template_id)
        .bind(module)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<Option<String>, _>("requirement"))
        .transpose()?;
        sqlx::query(
            "INSERT INTO assignments (template_id, module, requirement, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (template_id, module) DO UPDATE SET requirement = excluded.requirement",
        )
        .bind(template_id)
        .bind(module)
        .bind(requirement)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        finish_change(tx, Some(template_id), audit, then, now).await?;
        Ok(before)
    }

    /// Removes an assignment; `false` if there was none (nothing is changed then).
    pub async fn unassign(
        &self,
        template_id: &TemplateId,
        module: &str,
        audit: &NewAudit,
        then: &[NewJob],
    ) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM assignments WHERE template_id = $1 AND module = $2")
            .bind(template_id)
            .bind(module)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        finish_change(tx, Some(template_id), audit, then, now).await?;
        Ok(true)
    }

    pub async fn served_state(
        &self,
        template_id: &TemplateId,
    ) -> anyhow::Result<Option<ServedState>> {
        let r = sqlx::query(
            "SELECT state_id, document, envelope, computed_at, sequence, expires_at, degraded FROM desired_states WHERE template_id = $1",
        )
        .bind(template_id)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(ServedState {
                state_id: r.try_get("state_id")?,
                document: serde_json::from_str(&r.try_get::<String, _>("document")?)?,
                envelope: serde_json::from_str(&r.try_get::<String, _>("envelope")?)?,
                computed_at: r.try_get("computed_at")?,
                sequence: r.try_get("sequence")?,
                expires_at: r.try_get("expires_at")?,
                degraded: r
                    .try_get::<Option<String>, _>("degraded")?
                    .map(|t| serde_json::from_str(&t))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// The served state's id and expiry (seconds) of `template`: what a poll whose
    /// `If-None-Match` names a state (or a page listing templates) needs to know, without
    /// reading the document.
    pub async fn served_state_head(
        &self,
        template_id: &TemplateId,
    ) -> anyhow::Result<Option<(String, i64)>> {
        let r =
            sqlx::query("SELECT state_id, expires_at FROM desired_states WHERE template_id = $1")
                .bind(template_id)
                .fetch_optional(&self.pool)
                .await?;
        r.map(|r| Ok((r.try_get("state_id")?, r.try_get("expires_at")?)))
            .transpose()
    }

    /// Every served state's template, id and expiry (seconds), for the poll cache.
    pub async fn served_state_heads(&self) -> anyhow::Result<Vec<(TemplateId, String, i64)>> {
        let rows = sqlx::query("SELECT template_id, state_id, expires_at FROM desired_states")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("template_id")?,
                    r.try_get("state_id")?,
                    r.try_get("expires_at")?,
                ))
            })
            .collect()
    }

    pub async fn last_computation(
        &self,
        template_id: &TemplateId,
    ) -> anyhow::Result<Option<LastComputation>> {
        let r = sqlx::query(
            "SELECT blocked, findings, candidate_state_id, computed_at, input_digest, closure, modules FROM template_findings WHERE template_id = $1",
        )
        .bind(template_id)
        .fetch_optional(&self.pool)
        .await?;
        let names =
            |text: Option<String>| text.and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok());
        r.map(|r| {
            Ok(LastComputation {
                blocked: r.try_get::<i64, _>("blocked")? != 0,
                findings: serde_json::from_str(&r.try_get::<String, _>("findings")?)?,
                candidate_state_id: r.try_get("candidate_state_id")?,
                computed_at: r.try_get("computed_at")?,
                input_digest: r.try_get("input_digest")?,
                closure: names(r.try_get("closure")?),
                modules: names(r.try_get("modules")?),
            })
        })
        .transpose()
    }

    /// Records a recomputation, in the transaction of the `lock` it was computed under (its
    /// advisory lock is released by this commit). With `serve`, the state replaces the
    /// served one if that is still the one it `replaces` (else nothing is written:
    /// [`Recorded::Lost`]); the audit row is written only for a change or a new block, so
    /// repeated recomputations add nothing.
    pub async fn record_computation(
        &self,
        mut lock: TemplateLock,
        template_id: &TemplateId,
        outcome: &LastComputation,
        serve: Option<Serve<'_>>,
        audit: &NewAudit,
    ) -> anyhow::Result<Recorded> {
        let now = self.now();
        let mut tx = match lock.tx.take() {
            Some(tx) => tx,
            None => self.pool.begin().await?,
        };
        let before = sqlx::query(
            "SELECT blocked, findings, candidate_state_id FROM template_findings WHERE template_id = $1",
        )
        .bind(template_id)
        .fetch_optional(&mut *tx)
        .await?;
        let findings = outcome.findings.to_string();
        let same_outcome = match &before {
            Some(r) => {
                (r.try_get::<i64, _>("blocked")? != 0) == outcome.blocked
                    && r.try_get::<String, _>("findings")? == findings
                    && r.try_get::<Option<String>, _>("candidate_state_id")?
                        == outcome.candidate_state_id
            }
            None => false,
        };
        sqlx::query("DELETE FROM template_findings WHERE template_id = $1")
            .bind(template_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO template_findings (template_id, blocked, findings, candidate_state_id, computed_at, input_digest, closure, modules) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(template_id)
        .bind(i64::from(outcome.blocked))
        .bind(&findings)
        .bind(&outcome.candidate_state_id)
        .bind(now)
        .bind(&outcome.input_digest)
        .bind(outcome.closure.as_ref().map(|c| serde_json::json!(c).to_string()))
        .bind(outcome.modules.as_ref().map(|c| serde_json::json!(c).to_string()))
        .execute(&mut *tx)
        .await?;
        let mut changed = false;
        if let Some(st) = serve {
            let degraded = st.degraded.map(|d| d.to_string());
            // `$1` the template, `$2`… the new row; the update also needs the sequence it
            // replaces, last, so both statements bind the same list.
            let sql = if st.replaces.is_some() {
                "UPDATE desired_states SET state_id = $2, document = $3, envelope = $4, computed_at = $5, sequence = $6, expires_at = $7, degraded = $8 WHERE template_id = $1 AND sequence = $9"
            } else {
                "INSERT INTO desired_states (template_id, state_id, document, envelope, computed_at, sequence, expires_at, degraded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
            };
            let mut q = sqlx::query(sql)
                .bind(template_id)
                .bind(st.state_id)
                .bind(st.document.to_string())
                .bind(st.envelope.to_string())
                .bind(now)
                .bind(st.sequence)
                .bind(st.expires_at)
                .bind(degraded);
            if let Some(seq) = st.replaces {
                q = q.bind(seq);
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                tx.rollback().await?;
                return Ok(Recorded::Lost);
            }
            changed = true;
        }
        if changed || (outcome.blocked && !same_outcome) {
            append_audit(&mut tx, audit, now).await?;
        }
        tx.commit().await?;
        Ok(if changed {
            Recorded::Served
        } else {
            Recorded::Kept
        })
    }

    /// The composefs digest of every yanked version → `module version` (drift flags an
    /// instance running one).
    pub async fn yanked_digests(
        &self,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let rows = sqlx::query(
            "SELECT module, version, composefs_digest FROM versions WHERE lifecycle = 'yanked' AND composefs_digest IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("composefs_digest")?,
                    format!(
                        "{} {}",
                        r.try_get::<String, _>("module")?,
                        r.try_get::<String, _>("version")?
                    ),
                ))
            })
            .collect()
    }
}
