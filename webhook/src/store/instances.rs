//! Instances: registered by an operator, authenticated by a token of their own, and the
//! last report each one sent.

use super::{InstanceId, Store, TemplateId, audit::NewAudit};
use powernode_module::{desired_state::ModuleObservation, package};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub template_id: TemplateId,
    #[serde(skip)]
    pub token_sha256: String,
    pub created_at: i64,
    pub last_report_at: Option<i64>,
    /// The desired state the instance said it worked towards.
    pub desired_state_id: Option<String>,
    /// Module name → the composefs digest the instance reported running.
    pub running_module_digests: BTreeMap<String, String>,
    pub composefs_digest: Option<String>,
    pub status: Option<String>,
    pub message: Option<String>,
    /// Per module: its packages' installed versions (`null`: not installed) and its units'
    /// states, as the last report observed them; empty when it carried none.
    pub modules: BTreeMap<String, ModuleObservation>,
    /// Bytes the agent's state directory held at the last report (`null`: not reported).
    pub state_bytes: Option<i64>,
}

/// An instance's last report as stored: `running_module_digests` is the JSON text written
/// by [`Store::record_reports`] (a map with sorted keys, so equal maps are equal texts).
#[derive(Debug, Clone)]
pub struct StoredReport {
    pub id: InstanceId,
    pub template_id: TemplateId,
    pub last_report_at: Option<i64>,
    pub reported_state_id: Option<String>,
    pub running_module_digests: Option<String>,
    pub composefs_digest: Option<String>,
    pub status: Option<String>,
    /// The observations, decoded (empty when the report carried none).
    pub modules: BTreeMap<String, ModuleObservation>,
}

impl StoredReport {
    pub fn running(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .running_module_digests
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default())
    }
}

/// A report as the instance sent it (already validated by the API edge).
#[derive(Debug, Clone)]
pub struct Report {
    pub desired_state_id: String,
    pub running_module_digests: BTreeMap<String, String>,
    pub composefs_digest: Option<String>,
    pub status: String,
    pub message: Option<String>,
    pub modules: BTreeMap<String, ModuleObservation>,
    pub state_bytes: Option<i64>,
}

/// One module's word on a package, from an instance's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSighting {
    pub instance_id: InstanceId,
    pub template_id: TemplateId,
    pub module: String,
    /// The installed version; `None`: reported not installed.
    pub version: Option<String>,
}

/// The columns [`stored_report`] reads.
pub(super) const REPORT_COLS: &str = "id, template_id, last_report_at, reported_state_id, running_module_digests, composefs_digest, status, module_observations";

/// A row of [`REPORT_COLS`], as stored.
pub(super) fn stored_report(r: &AnyRow) -> anyhow::Result<StoredReport> {
    Ok(StoredReport {
        id: r.try_get("id")?,
        template_id: r.try_get("template_id")?,
        last_report_at: r.try_get("last_report_at")?,
        reported_state_id: r.try_get("reported_state_id")?,
        running_module_digests: r.try_get("running_module_digests")?,
        composefs_digest: r.try_get("composefs_digest")?,
        status: r.try_get("status")?,
        modules: observations(r)?,
    })
}

const ICOLS: &str = "id, template_id, token_sha256, created_at, last_report_at, reported_state_id, running_module_digests, composefs_digest, status, message, module_observations, state_bytes";

/// The `module_observations` column, decoded: the one place its JSON is read.
fn observations(r: &AnyRow) -> anyhow::Result<BTreeMap<String, ModuleObservation>> {
    let text: Option<String> = r.try_get("module_observations")?;
    Ok(text
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or_default())
}

fn instance_row(r: &AnyRow) -> anyhow::Result<InstanceRow> {
    let running: Option<String> = r.try_get("running_module_digests")?;
    Ok(InstanceRow {
        id: r.try_get("id")?,
        template_id: r.try_get("template_id")?,
        token_sha256: r.try_get("token_sha256")?,
        created_at: r.try_get("created_at")?,
        last_report_at: r.try_get("last_report_at")?,
        desired_state_id: r.try_get("reported_state_id")?,
        running_module_digests: running
            .map(|s| serde_json::from_str(&s))
            .transpose()?
            .unwrap_or_default(),
        composefs_digest: r.try_get("composefs_digest")?,
        status: r.try_get("status")?,
        message: r.try_get("message")?,
        modules: observations(r)?,
        state_bytes: r.try_get("state_bytes")?,
    })
}

impl Store {
    /// Registers an instance with the SHA-256 of its token; `false` if the id is taken.
    pub async fn register_instance(
        &self,
        id: &InstanceId,
        template_id: &TemplateId,
        token_sha256: &str,
        audit: &NewAudit,
    ) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "INSERT INTO instances (id, template_id, token_sha256, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(template_id)
        .bind(token_sha256)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        super::templates::finish_change(tx, None, audit, &[], now).await?;
        Ok(true)
    }

    pub async fn instance(&self, id: &InstanceId) -> anyhow::Result<Option<InstanceRow>> {
        let r = sqlx::query(&format!("SELECT {ICOLS} FROM instances WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(instance_row).transpose()
    }

    /// The last reports of a page of instances, as stored (digests unparsed, observations
    /// decoded): the fleet summary compares most of them with the desired state as text and
    /// parses only the ones that differ.
    pub async fn reports_page(
        &self,
        template_id: Option<&TemplateId>,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<StoredReport>> {
        let mut sql = format!("SELECT {REPORT_COLS} FROM instances WHERE id > $1");
        if template_id.is_some() {
            sql.push_str(" AND template_id = $3");
        }
        sql.push_str(" ORDER BY id LIMIT $2");
        let mut q = sqlx::query(&sql).bind(after).bind(limit);
        if let Some(t) = template_id {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(stored_report).collect()
    }

    /// Deletes an instance (its token and last report go with it), with its audit row;
    /// `false` if there was none. Every replica's token cache sees it within a second.
    pub async fn delete_instance(&self, id: &InstanceId, audit: &NewAudit) -> anyhow::Result<bool> {
        let q = sqlx::query("DELETE FROM instances WHERE id = $1").bind(id);
        self.revoke_tokens(q, audit).await
    }

    /// Replaces an instance's token (its SHA-256), with its audit row; `false` if there is no
    /// such instance. The old token stops working on every replica within a second.
    pub async fn rotate_instance_token(
        &self,
        id: &InstanceId,
        token_sha256: &str,
        audit: &NewAudit,
    ) -> anyhow::Result<bool> {
        let q = sqlx::query("UPDATE instances SET token_sha256 = $2 WHERE id = $1")
            .bind(id)
            .bind(token_sha256);
        self.revoke_tokens(q, audit).await
    }

    /// Runs `change` (one instance row) with the auth epoch bumped and the audit row, in one
    /// transaction: what makes every replica drop the instance's cached token.
    async fn revoke_tokens<'q>(
        &self,
        change: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        audit: &NewAudit,
    ) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        if change.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        bump_auth_epoch(&mut tx).await?;
        super::templates::finish_change(tx, None, audit, &[], now).await?;
        Ok(true)
    }

    /// The counter every token rotation and instance deletion increments: a cached token
    /// is good only while this is what it was when the token was read.
    pub async fn instance_auth_epoch(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query("SELECT epoch FROM instance_auth_epoch WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<i64, _>("epoch"))
                .transpose()?
                .unwrap_or(0),
        )
    }

    /// Remembers that `template_id` served `state_id` (holding `modules` modules) to an
    /// instance; a state already remembered is left as it is.
    pub async fn remember_served_state(
        &self,
        template_id: &TemplateId,
        state_id: &str,
        modules: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO served_states (template_id, state_id, modules, served_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(template_id)
        .bind(state_id)
        .bind(modules)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `template_id` ever served `state_id`, and the most modules any state it
    /// served held (`None`: it never served one).
    pub async fn served_state_history(
        &self,
        template_id: &TemplateId,
        state_id: &str,
    ) -> anyhow::Result<(bool, Option<i64>)> {
        let r = sqlx::query(
            "SELECT MAX(modules) AS most, COUNT(CASE WHEN state_id = $2 THEN 1 END) AS known FROM served_states WHERE template_id = $1",
        )
        .bind(template_id)
        .bind(state_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            r.try_get::<i64, _>("known")? > 0,
            r.try_get::<Option<i64>, _>("most")?,
        ))
    }

    /// Every module of every instance whose last report observed `package` (installed or
    /// not), ordered by instance id, then module. A name that is not a Debian package name
    /// was never stored: nothing.
    pub async fn package_sightings(&self, package: &str) -> anyhow::Result<Vec<PackageSighting>> {
        if !package::valid_name(package) {
            return Ok(Vec::new());
        }
        // The quoted name in the JSON text narrows the rows to decode (a package name has no
        // LIKE wildcard); the decoded observations decide.
        let rows = sqlx::query(
            "SELECT id, template_id, module_observations FROM instances WHERE module_observations LIKE $1",
        )
        .bind(format!("%\"{package}\"%"))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: InstanceId = r.try_get("id")?;
            let template_id: TemplateId = r.try_get("template_id")?;
            for (module, obs) in observations(r)? {
                if let Some(version) = obs.packages.get(package) {
                    out.push(PackageSighting {
                        instance_id: id.clone(),
                        template_id: template_id.clone(),
                        module,
                        version: version.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.instance_id, &a.module).cmp(&(&b.instance_id, &b.module)));
        Ok(out)
    }
}

/// Increments the instance-token epoch inside a change's transaction.
async fn bump_auth_epoch(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> anyhow::Result<()> {
    sqlx::query("UPDATE instance_auth_epoch SET epoch = epoch + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
