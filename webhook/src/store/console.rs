//! What the web console reads and keeps: light, paginated reads of modules, versions,
//! templates and instances (every list is a page, found by index, so a page costs the same at
//! ten or ten thousand rows), its sessions, and the samples its charts draw.

use super::{
    InstanceId, JobId, JobKind, Lifecycle, Store, TemplateId, TemplateRow, VersionId,
    codec::text_enum,
};
use sqlx::{Row, any::AnyRow};

/// A version as lists show it: no manifest, no file index.
#[derive(Debug, Clone)]
pub struct VersionBrief {
    pub id: VersionId,
    pub module: String,
    pub version: String,
    pub lifecycle: Lifecycle,
    pub manifest_digest: String,
    pub composefs_digest: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An instance as lists show it.
#[derive(Debug, Clone)]
pub struct InstanceBrief {
    pub id: InstanceId,
    pub template_id: TemplateId,
    pub last_report_at: Option<i64>,
    pub status: Option<String>,
}

/// A dead-lettered job as the console lists it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: JobId,
    pub kind: JobKind,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// A console session as stored (its id is known only to the browser holding it).
#[derive(Debug, Clone)]
pub struct WebSession {
    /// SHA-256 (hex) of the API token it was opened with.
    pub token_sha256: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires_at: i64,
}

/// One point of one line of a chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at: i64,
    pub label: String,
    pub count: i64,
}

const BRIEF: &str =
    "id, module, version, lifecycle, manifest_digest, composefs_digest, created_at, updated_at";

fn brief(r: &AnyRow) -> anyhow::Result<VersionBrief> {
    Ok(VersionBrief {
        id: r.try_get("id")?,
        module: r.try_get("module")?,
        version: r.try_get("version")?,
        lifecycle: text_enum(r, "lifecycle")?,
        manifest_digest: r.try_get("manifest_digest")?,
        composefs_digest: r.try_get("composefs_digest")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn instance(r: &AnyRow) -> anyhow::Result<InstanceBrief> {
    Ok(InstanceBrief {
        id: r.try_get("id")?,
        template_id: r.try_get("template_id")?,
        last_report_at: r.try_get("last_report_at")?,
        status: r.try_get("status")?,
    })
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `%text%` for LIKE, with LIKE's wildcards in `text` matched literally (`\` escapes).
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    /// Modules after `after` by name (`""`: from the first), at most `limit`: (name, repository).
    pub async fn modules_after(
        &self,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT name, repository FROM modules WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("repository")?)))
            .collect()
    }

    /// The repository of module `name`, if there is such a module.
    pub async fn module_repository(&self, name: &str) -> anyhow::Result<Option<String>> {
        let r = sqlx::query("SELECT repository FROM modules WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| r.try_get("repository")).transpose()?)
    }

    /// Every version of the given modules, light.
    pub async fn versions_brief_of(&self, modules: &[String]) -> anyhow::Result<Vec<VersionBrief>> {
        self.briefs_where_in("module", modules).await
    }

    /// Light versions whose `column` is one of `values` (one query, whatever their number).
    async fn briefs_where_in(
        &self,
        column: &str,
        values: &[String],
    ) -> anyhow::Result<Vec<VersionBrief>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {BRIEF} FROM versions WHERE {column} IN ({})",
            placeholders(1, values.len())
        );
        let mut q = sqlx::query(&sql);
        for v in values {
            q = q.bind(v);
        }
        q.fetch_all(&self.pool).await?.iter().map(brief).collect()
    }

    /// A module's versions, newest first, from the one after `before` (`(created_at, id)` of
    /// the last one shown), at most `limit`.
    pub async fn versions_page(
        &self,
        module: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> anyhow::Result<Vec<VersionBrief>> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(&format!(
            "SELECT {BRIEF} FROM versions WHERE module = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $4 = 1)
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(module)
        .bind(at)
        .bind(id)
        .bind(i64::from(before.is_none()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(brief).collect()
    }

    /// Versions whose composefs digest is one of `digests` (what instances report running).
    pub async fn versions_by_composefs(
        &self,
        digests: &[String],
    ) -> anyhow::Result<Vec<VersionBrief>> {
        self.briefs_where_in("composefs_digest", digests).await
    }

    /// (module, version, composefs digest) of every version that has one: what the adoption
    /// samples map reported digests with.
    pub async fn composefs_digests(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT module, version, composefs_digest FROM versions WHERE composefs_digest IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("module")?,
                    r.try_get("version")?,
                    r.try_get("composefs_digest")?,
                ))
            })
            .collect()
    }

    /// Dead-lettered jobs, most recent first, after `before` (`(updated_at, id)`).
    pub async fn dead_letters_page(
        &self,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(
            "SELECT id, kind, attempts, last_error, updated_at FROM jobs WHERE state = 'dead'
             AND (updated_at < $1 OR (updated_at = $1 AND id < $2) OR $3 = 1)
             ORDER BY updated_at DESC, id DESC LIMIT $4",
        )
        .bind(at)
        .bind(id)
        .bind(i64::from(before.is_none()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    kind: text_enum(r, "kind")?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Templates after `after` by id, at most `limit`.
    pub async fn templates_after(
        &self,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<TemplateRow>> {
        let rows = sqlx::query(
            "SELECT id, platform, description, created_at, updated_at FROM templates WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::templates::template_row).collect()
    }

    /// Instances (of `template`, if given) after `after` by id, at most `limit`.
    pub async fn instances_after(
        &self,
        template: Option<&TemplateId>,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<InstanceBrief>> {
        let rows = sqlx::query(
            "SELECT id, template_id, last_report_at, status FROM instances
             WHERE id > $1 AND ($2 = '' OR template_id = $2) ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(template.map_or("", |t| t.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(instance).collect()
    }

    /// How many instances a template has.
    pub async fn instance_count(&self, template: &TemplateId) -> anyhow::Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM instances WHERE template_id = $1")
                .bind(template)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    /// Templates whose served state holds the version with `manifest_digest`.
    pub async fn templates_serving(
        &self,
        manifest_digest: &str,
    ) -> anyhow::Result<Vec<TemplateId>> {
        let rows = sqlx::query(
            "SELECT template_id FROM desired_states WHERE document LIKE $1 ESCAPE '\\' ORDER BY template_id",
        )
        .bind(contains(&format!("\"{manifest_digest}\"")))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("template_id")?)).collect()
    }

    /// Instances whose last report runs a module at `composefs_digest`, after `after` by id.
    pub async fn instances_running(
        &self,
        composefs_digest: &str,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<InstanceBrief>> {
        let rows = sqlx::query(
            "SELECT id, template_id, last_report_at, status FROM instances
             WHERE id > $1 AND running_module_digests LIKE $2 ESCAPE '\\' ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(contains(&format!("\"{composefs_digest}\"")))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(instance).collect()
    }

    /// The states a template has served, newest first: (state id, modules, first served at).
    pub async fn served_history(
        &self,
        template: &TemplateId,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT state_id, modules, served_at FROM served_states WHERE template_id = $1
             ORDER BY served_at DESC, state_id LIMIT $2",
        )
        .bind(template)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("state_id")?,
                    r.try_get("modules")?,
                    r.try_get("served_at")?,
                ))
            })
            .collect()
    }

    /// Opens a session; expired ones are removed on the way.
    pub async fn open_web_session(&self, id_sha256: &str, s: &WebSession) -> anyhow::Result<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_sha256, token_sha256, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_sha256)
        .bind(&s.token_sha256)
        .bind(&s.csrf)
        .bind(now)
        .bind(s.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session whose id hashes to `id_sha256`, unless it expired.
    pub async fn web_session(&self, id_sha256: &str) -> anyhow::Result<Option<WebSession>> {
        let r = sqlx::query(
            "SELECT token_sha256, csrf, expires_at FROM web_sessions WHERE id_sha256 = $1 AND expires_at >= $2",
        )
        .bind(id_sha256)
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(WebSession {
                token_sha256: r.try_get("token_sha256")?,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends a session (logout).
    pub async fn close_web_session(&self, id_sha256: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records one sample of `series` at `at` (a period's start); a period already sampled
    /// (by this or another replica) is left as it is. Samples older than `keep_after` go.
    pub async fn record_samples(
        &self,
        series: &str,
        at: i64,
        counts: &[(String, i64)],
        keep_after: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM fleet_samples WHERE series = $1 AND at < $2")
            .bind(series)
            .bind(keep_after)
            .execute(&mut *tx)
            .await?;
        for (label, count) in counts {
            sqlx::query(
                "INSERT INTO fleet_samples (series, at, label, count) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(series)
            .bind(at)
            .bind(label)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The samples of `series` since `since`, oldest first.
    pub async fn samples(&self, series: &str, since: i64) -> anyhow::Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT at, label, count FROM fleet_samples WHERE series = $1 AND at >= $2 ORDER BY at, label",
        )
        .bind(series)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Sample {
                    at: r.try_get("at")?,
                    label: r.try_get("label")?,
                    count: r.try_get("count")?,
                })
            })
            .collect()
    }
}
