//! The append-only audit trail: every state change and every refusal, with who acted, by
//! which way (`via`) and the evidence. No code path updates or deletes its rows.

use super::codec::{opt_text_enum, text_enum};
use super::{Lifecycle, Store, VersionId};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A verified artifact became a `draft` version.
    Ingested,
    AwaitingSignature,
    Rejected,
    /// A push tried to change a published version's content.
    RefusedDifferentDigest,
    /// Trust on first use pinned a signer identity pattern.
    TrustPinned,
    /// Trust on first use proposed a signer identity pattern; an operator must confirm it.
    PinProposed,
    /// An operator confirmed a proposed first-use pin: it is the pin now.
    PinConfirmed,
    /// An operator rejected a proposed first-use pin.
    PinRejected,
    Transition,
    /// A transition whose requirements the break-glass role waived.
    TransitionBreakGlass,
    /// A request waits for its requirements.
    Pending,
    Refused,
    TemplateCreated,
    ModuleAssigned,
    ModuleUnassigned,
    /// A template's served desired state changed.
    DesiredStateChanged,
    /// A recomputation found conflicts: the served desired state stays as it was.
    DesiredStateBlocked,
    InstanceRegistered,
    /// An instance was deleted: its token and last report are gone.
    InstanceDeleted,
    /// An instance's token was replaced: the old one no longer works.
    InstanceTokenRotated,
    /// An operator gave a dead-lettered job a fresh attempt budget.
    DeadLetterRetried,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Ingested => "ingested",
            AuditAction::AwaitingSignature => "awaiting_signature",
            AuditAction::Rejected => "rejected",
            AuditAction::RefusedDifferentDigest => "refused_different_digest",
            AuditAction::TrustPinned => "trust_pinned",
            AuditAction::PinProposed => "pin_proposed",
            AuditAction::PinConfirmed => "pin_confirmed",
            AuditAction::PinRejected => "pin_rejected",
            AuditAction::Transition => "transition",
            AuditAction::TransitionBreakGlass => "transition_break_glass",
            AuditAction::Pending => "pending",
            AuditAction::Refused => "refused",
            AuditAction::TemplateCreated => "template_created",
            AuditAction::ModuleAssigned => "module_assigned",
            AuditAction::ModuleUnassigned => "module_unassigned",
            AuditAction::DesiredStateChanged => "desired_state_changed",
            AuditAction::DesiredStateBlocked => "desired_state_blocked",
            AuditAction::InstanceRegistered => "instance_registered",
            AuditAction::InstanceDeleted => "instance_deleted",
            AuditAction::InstanceTokenRotated => "instance_token_rotated",
            AuditAction::DeadLetterRetried => "dead_letter_retried",
        }
    }
}

/// The way a change came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Ingest,
    Comment,
    Api,
    /// The MCP endpoint (`/mcp`): the same operations as `Api`, told apart in the audit trail.
    Mcp,
    /// The web console (`/`): the same operations as `Api`, from a browser session.
    Web,
    Auto,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Ingest => "ingest",
            Via::Comment => "comment",
            Via::Api => "api",
            Via::Mcp => "mcp",
            Via::Web => "web",
            Via::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Via> {
        Ok(match s {
            "ingest" => Via::Ingest,
            "comment" => Via::Comment,
            "api" => Via::Api,
            "mcp" => Via::Mcp,
            "web" => Via::Web,
            "auto" => Via::Auto,
            other => anyhow::bail!("unknown via {other:?}"),
        })
    }
}

impl PartialEq<&str> for Via {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for AuditAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audit entry to append.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub version_id: Option<VersionId>,
    /// The template a fleet change is about.
    pub template_id: Option<super::TemplateId>,
    pub module: Option<String>,
    pub actor: String,
    pub via: Via,
    pub action: AuditAction,
    pub from_state: Option<Lifecycle>,
    pub to_state: Option<Lifecycle>,
    pub reason: Option<String>,
    pub evidence: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AuditRow {
    pub id: String,
    pub version_id: Option<VersionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<super::TemplateId>,
    pub module: Option<String>,
    pub at: i64,
    pub actor: String,
    pub via: Via,
    pub action: AuditAction,
    pub from_state: Option<Lifecycle>,
    pub to_state: Option<Lifecycle>,
    pub reason: Option<String>,
    pub evidence: serde_json::Value,
}

/// Appends an audit row inside a transaction. The only write to `audit` anywhere.
pub(crate) async fn append_audit(
    tx: &mut Transaction<'_, Any>,
    a: &NewAudit,
    at: i64,
) -> anyhow::Result<()> {
    // `seq` orders rows, it is not a time anyone reads: the wall clock's microseconds keep
    // rows of one transaction (and of a test's manual clock, which stands still) in the order
    // they were appended. `at` is the time, from the store's (injectable) clock.
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    sqlx::query(
        "INSERT INTO audit (id, seq, version_id, module, at, actor, via, action, from_state, to_state, reason, evidence, template_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(seq)
    .bind(a.version_id.as_deref())
    .bind(&a.module)
    .bind(at)
    .bind(&a.actor)
    .bind(a.via.as_str())
    .bind(a.action.as_str())
    .bind(a.from_state.map(|s| s.as_str().to_owned()))
    .bind(a.to_state.map(|s| s.as_str().to_owned()))
    .bind(&a.reason)
    .bind(a.evidence.to_string())
    .bind(&a.template_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn audit_of(&self, version_id: &VersionId) -> anyhow::Result<Vec<AuditRow>> {
        self.audit_where("version_id", version_id.as_str()).await
    }

    /// The audit trail of a template: its creation, assignments and desired-state changes.
    pub async fn audit_of_template(
        &self,
        template_id: &super::TemplateId,
    ) -> anyhow::Result<Vec<AuditRow>> {
        self.audit_where("template_id", template_id).await
    }

    /// Every audit row of one kind (for changes that name no version or template, such as
    /// a dead letter's retry), oldest first.
    pub async fn audit_of_action(&self, action: AuditAction) -> anyhow::Result<Vec<AuditRow>> {
        self.audit_where("action", action.as_str()).await
    }

    async fn audit_where(&self, column: &str, value: &str) -> anyhow::Result<Vec<AuditRow>> {
        let rows = sqlx::query(&format!(
            "SELECT id, version_id, template_id, module, at, actor, via, action, from_state, to_state, reason, evidence
             FROM audit WHERE {column} = $1 ORDER BY seq, id"
        ))
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    version_id: r
                        .try_get::<Option<String>, _>("version_id")?
                        .map(VersionId::from),
                    template_id: r.try_get("template_id")?,
                    module: r.try_get("module")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    via: text_enum(r, "via")?,
                    action: text_enum(r, "action")?,
                    from_state: opt_text_enum(r, "from_state")?,
                    to_state: opt_text_enum(r, "to_state")?,
                    reason: r.try_get("reason")?,
                    evidence: serde_json::from_str(&r.try_get::<String, _>("evidence")?)?,
                })
            })
            .collect()
    }

    /// Appends an audit entry on its own (refusals that change no version).
    pub async fn audit(&self, a: &NewAudit) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        append_audit(&mut tx, a, self.now()).await?;
        tx.commit().await?;
        Ok(())
    }
}
