//! Templates, their assigned modules, and the desired state each one serves.

use super::{
    NewJob, Store,
    audit::{NewAudit, append_audit},
    jobs,
};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TemplateRow {
    pub id: String,
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
}

/// The latest recomputation of a template, whether it replaced the served state or not.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LastComputation {
    /// Conflicts kept it from replacing the served state.
    pub blocked: bool,
    pub findings: serde_json::Value,
    pub candidate_state_id: Option<String>,
    pub computed_at: i64,
}

fn template_row(r: &AnyRow) -> anyhow::Result<TemplateRow> {
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
    touched: Option<&str>,
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

    pub async fn template(&self, id: &str) -> anyhow::Result<Option<TemplateRow>> {
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

    pub async fn assignments(&self, template_id: &str) -> anyhow::Result<Vec<Assignment>> {
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
        template_id: &str,
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
        template_id: &str,
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

    pub async fn served_state(&self, template_id: &str) -> anyhow::Result<Option<ServedState>> {
        let r = sqlx::query(
            "SELECT state_id, document, envelope, computed_at FROM desired_states WHERE template_id = $1",
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
            })
        })
        .transpose()
    }

    /// The served state id of every template (for the drift summary and caches).
    pub async fn served_state_id(&self, template_id: &str) -> anyhow::Result<Option<String>> {
        let r = sqlx::query("SELECT state_id FROM desired_states WHERE template_id = $1")
            .bind(template_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| r.try_get("state_id")).transpose()?)
    }

    pub async fn last_computation(
        &self,
        template_id: &str,
    ) -> anyhow::Result<Option<LastComputation>> {
        let r = sqlx::query(
            "SELECT blocked, findings, candidate_state_id, computed_at FROM template_findings WHERE template_id = $1",
        )
        .bind(template_id)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(LastComputation {
                blocked: r.try_get::<i64, _>("blocked")? != 0,
                findings: serde_json::from_str(&r.try_get::<String, _>("findings")?)?,
                candidate_state_id: r.try_get("candidate_state_id")?,
                computed_at: r.try_get("computed_at")?,
            })
        })
        .transpose()
    }

    /// Records a recomputation. With `serve`, the state replaces the served one unless it
    /// is the same state already (returns whether the served state changed); the audit row
    /// is written only for a change or a block, so repeated recomputations add nothing.
    pub async fn record_computation(
        &self,
        template_id: &str,
        outcome: &LastComputation,
        serve: Option<(&str, &serde_json::Value, &serde_json::Value)>,
        audit: &NewAudit,
    ) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
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
            "INSERT INTO template_findings (template_id, blocked, findings, candidate_state_id, computed_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(template_id)
        .bind(i64::from(outcome.blocked))
        .bind(&findings)
        .bind(&outcome.candidate_state_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut changed = false;
        if let Some((state_id, document, envelope)) = serve {
            let current = sqlx::query("SELECT state_id FROM desired_states WHERE template_id = $1")
                .bind(template_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<String, _>("state_id"))
                .transpose()?;
            if current.as_deref() != Some(state_id) {
                sqlx::query("DELETE FROM desired_states WHERE template_id = $1")
                    .bind(template_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO desired_states (template_id, state_id, document, envelope, computed_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(template_id)
                .bind(state_id)
                .bind(document.to_string())
                .bind(envelope.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                changed = true;
            }
        }
        if changed || (outcome.blocked && !same_outcome) {
            append_audit(&mut tx, audit, now).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}
