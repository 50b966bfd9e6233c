//! Templates (operator to change, read to look): `POST /api/v1/templates`,
//! `GET /api/v1/templates[/{id}]`, assignments, the signed desired state and the audit trail.
//! Every change is audited and enqueues the recomputation in its own transaction; the
//! recomputation also runs at once, so the answer shows its outcome.

use crate::http::extract as body;
use crate::{
    config::Role,
    fleet::{Degraded, Recomputed, recompute_template_job},
    http::{
        ApiError, AppState,
        auth::{Caller, require},
    },
    lifecycle::Actor,
    store::{
        Assignment, AuditAction, AuditRow, LastComputation, NewAudit, ServedState, TemplateRow, Via,
    },
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use powernode_module::manifest::{ModuleName, NAME_RULE};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    pub id: String,
    /// What the template's instances run on (free text, not blank).
    #[schemars(regex(pattern = r"\S"))]
    pub platform: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAssignment {
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    pub module_name: String,
    /// A SemVer requirement (`^1`, `>=1.2, <2`); any version when absent.
    #[serde(default)]
    pub requirement: Option<String>,
}

/// A template with its assignments, served desired state and latest computation.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TemplateView {
    #[serde(flatten)]
    pub template: TemplateRow,
    pub assignments: Vec<Assignment>,
    pub desired_state: Option<StateSummary>,
    pub last_computation: Option<LastComputation>,
    /// Set when the served state is less than the assignments ask for: `degraded` (a version
    /// left `live` and the template is served without what needs it) or `held` (nothing
    /// composes; nodes keep what they run). With the reason and the conflicts. `null` when
    /// the template serves what it should.
    pub degraded: Option<Degraded>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StateSummary {
    pub state_id: String,
    pub computed_at: i64,
    /// The signed sequence number: every state the template serves takes the next one.
    pub sequence: i64,
    /// Unix seconds after which nodes refuse it (re-issued before).
    pub expires_at: i64,
    pub document: serde_json::Value,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OneTemplate {
    pub template: TemplateView,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Templates {
    pub templates: Vec<TemplateView>,
}

/// The answer to an assignment change: what the template's instances will now get.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Assigned {
    pub template_id: String,
    pub module_name: String,
    pub requirement: Option<String>,
    pub message: String,
    pub desired_state: Recomputed,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Audit {
    pub template_id: String,
    pub audit: Vec<AuditRow>,
}

/// Template ids follow the module-name rule (they appear in URLs and audit rows).
fn check_id(id: &str) -> Result<(), ApiError> {
    ModuleName::parse(id)
        .map(|_| ())
        .ok_or_else(|| ApiError::bad_request(format!("template id {id:?} {NAME_RULE}")))
}

async fn view(s: &AppState, t: TemplateRow) -> Result<TemplateView, ApiError> {
    let assignments = s.store.assignments(&t.id).await?;
    let served = s.store.served_state(&t.id).await?;
    let degraded = served
        .as_ref()
        .and_then(|st| st.degraded.clone())
        .map(serde_json::from_value)
        .transpose()
        .map_err(anyhow::Error::from)?;
    let desired_state = served.map(
        |ServedState {
             state_id,
             document,
             computed_at,
             sequence,
             expires_at,
             ..
         }| StateSummary {
            state_id,
            computed_at,
            sequence,
            expires_at,
            document,
        },
    );
    let last_computation = s.store.last_computation(&t.id).await?;
    Ok(TemplateView {
        template: t,
        assignments,
        desired_state,
        last_computation,
        degraded,
    })
}

async fn find(s: &AppState, id: &str) -> Result<TemplateRow, ApiError> {
    s.store
        .template(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template {id}")))
}

fn audit(
    via: Via,
    template: &str,
    actor: &str,
    action: AuditAction,
    evidence: serde_json::Value,
) -> NewAudit {
    NewAudit {
        version_id: None,
        template_id: Some(template.to_owned()),
        module: evidence["module_name"].as_str().map(str::to_owned),
        actor: Actor::Api(actor.to_owned()).encode(),
        via,
        action,
        from_state: None,
        to_state: None,
        reason: None,
        evidence,
    }
}

async fn recompute(s: &AppState, via: Via, id: &str, actor: &str) -> Result<Recomputed, ApiError> {
    s.fleet
        .recompute(id, &Actor::Api(actor.to_owned()), via)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template {id}")))
}

pub async fn create(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Json(b): body::Json<NewTemplate>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    check_id(&b.id)?;
    if b.platform.trim().is_empty() {
        return Err(ApiError::bad_request("platform must not be empty"));
    }
    let row = TemplateRow {
        id: b.id.clone(),
        platform: b.platform.clone(),
        description: b.description.clone(),
        created_at: 0,
        updated_at: 0,
    };
    let a = audit(
        Via::Api,
        &b.id,
        &caller.name,
        AuditAction::TemplateCreated,
        serde_json::json!({"platform": b.platform, "description": b.description}),
    );
    if !s
        .store
        .create_template(&row, &a, &[recompute_template_job(&b.id)])
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("template {} exists already", b.id),
        ));
    }
    recompute(&s, Via::Api, &b.id, &caller.name).await?;
    let t = find(&s, &b.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(OneTemplate {
            template: view(&s, t).await?,
        }),
    )
        .into_response())
}

pub async fn list(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Templates>, ApiError> {
    require(&s, &h, Role::Read)?;
    let mut templates = Vec::new();
    for t in s.store.templates().await? {
        templates.push(view(&s, t).await?);
    }
    Ok(Json(Templates { templates }))
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<OneTemplate>, ApiError> {
    require(&s, &h, Role::Read)?;
    let t = find(&s, &id).await?;
    Ok(Json(OneTemplate {
        template: view(&s, t).await?,
    }))
}

pub async fn assign(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body::Json(b): body::Json<NewAssignment>,
) -> Result<Json<Assigned>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    assign_via(&s, caller, Via::Api, id, b?).await.map(Json)
}

/// Assigns a module to template `id` for `caller` (an operator, authenticated by the edge it
/// came `via`, the API or MCP).
pub async fn assign_via(
    s: &AppState,
    caller: Caller,
    via: Via,
    id: String,
    b: NewAssignment,
) -> Result<Assigned, ApiError> {
    find(s, &id).await?;
    if s.policies.by_name(&b.module_name).is_none() {
        return Err(ApiError::not_found(format!(
            "no module {} is configured on this receiver ([[modules]])",
            b.module_name
        )));
    }
    let requirement = match b.requirement.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) => {
            r.parse::<semver::VersionReq>().map_err(|e| {
                ApiError::bad_request(format!(
                    "requirement {r:?} is not a SemVer requirement (like ^1 or >=1.2, <2): {e}"
                ))
            })?;
            Some(r.to_owned())
        }
    };
    let a = audit(
        via,
        &id,
        &caller.name,
        AuditAction::ModuleAssigned,
        serde_json::json!({"module_name": b.module_name, "requirement": requirement}),
    );
    s.store
        .assign(
            &id,
            &b.module_name,
            requirement.as_deref(),
            &a,
            &[recompute_template_job(&id)],
        )
        .await?;
    let r = recompute(s, via, &id, &caller.name).await?;
    let message = if r.blocked {
        format!(
            "{} is assigned, but the new desired state has conflicts and is not served: {}",
            b.module_name,
            r.conflicts
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else if r.modules.contains(&b.module_name) {
        format!(
            "Instances built from this template will get {} on next reconcile",
            b.module_name
        )
    } else {
        format!(
            "{} is assigned; no live version matches yet, so instances get it once one is promoted to live",
            b.module_name
        )
    };
    Ok(Assigned {
        template_id: id,
        module_name: b.module_name,
        requirement,
        message,
        desired_state: r,
    })
}

pub async fn unassign(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((id, module)): Path<(String, String)>,
) -> Result<Json<Assigned>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    find(&s, &id).await?;
    let a = audit(
        Via::Api,
        &id,
        &caller.name,
        AuditAction::ModuleUnassigned,
        serde_json::json!({"module_name": module}),
    );
    if !s
        .store
        .unassign(&id, &module, &a, &[recompute_template_job(&id)])
        .await?
    {
        return Err(ApiError::not_found(format!(
            "{module} is not assigned to template {id}"
        )));
    }
    let r = recompute(&s, Via::Api, &id, &caller.name).await?;
    Ok(Json(Assigned {
        template_id: id,
        message: format!("{module} is no longer assigned"),
        module_name: module,
        requirement: None,
        desired_state: r,
    }))
}

pub async fn audit_trail(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Audit>, ApiError> {
    require(&s, &h, Role::Read)?;
    find(&s, &id).await?;
    let audit = s.store.audit_of_template(&id).await?;
    Ok(Json(Audit {
        template_id: id,
        audit,
    }))
}

/// `GET /templates/{id}/desired-state` (read role): the signed envelope, `ETag: "<state_id>"`.
pub async fn desired_state(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &h, Role::Read)?;
    serve_state(&s, &h, &id).await
}

/// The conditional answer both desired-state routes give: 304 when `If-None-Match` names
/// the served state (from the cache, without the database when it is fresh), else the
/// envelope. 404 while the template serves no state yet.
pub async fn serve_state(
    s: &AppState,
    h: &HeaderMap,
    template: &str,
) -> Result<Response, ApiError> {
    let presented = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        });
    let cached = s.fleet.cache.state(template);
    if let (Some(p), Some(c)) = (&presented, &cached)
        && p == c
    {
        return Ok(not_modified(s, c));
    }
    let Some(st) = s.fleet.served(template).await? else {
        return Err(ApiError::not_found(format!(
            "template {template} serves no desired state yet"
        )));
    };
    s.fleet.cache.set_state(template, &st.state_id);
    // From here on, reports may name this state.
    super::instances::remember_served(s, template, &st).await?;
    if presented.as_deref() == Some(st.state_id.as_str()) {
        return Ok(not_modified(s, &st.state_id));
    }
    s.metrics
        .desired_state_reads
        .get_or_create(&crate::metrics::StateLabels {
            state: "document".into(),
        })
        .inc();
    let mut r = Json(st.envelope).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", st.state_id)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

fn not_modified(s: &AppState, state_id: &str) -> Response {
    s.metrics
        .desired_state_reads
        .get_or_create(&crate::metrics::StateLabels {
            state: "not_modified".into(),
        })
        .inc();
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{state_id}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
