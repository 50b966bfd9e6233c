//! Versions: `GET /api/v1/modules/{name}/versions[?state=]`, `GET /api/v1/versions/{id}`,
//! its audit trail, and `POST …/promote {to}` / `…/yank {reason}` (operator). API (and MCP)
//! requests go through the same policy as comments: with Gitea configured, the evidence is
//! the checks of the version's commit and the approvals on the open PR whose head is that
//! commit, and a request waiting for them stays pending like a comment's. The break-glass
//! role waives approvals and checks (audited as such).

use crate::http::extract as body;
use crate::{
    config::Role,
    http::{
        ApiError, AppState,
        auth::{Caller, require},
    },
    lifecycle::{Actor, Evidence, Permission, Request},
    promotion::{Decision, Promoter},
    store::{AuditRow, Lifecycle, VersionRow, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    /// Only versions in this stage (`draft`, `staging`, `blessed`, `live`, `yanked`).
    #[schemars(with = "Option<Lifecycle>")]
    pub state: Option<String>,
    /// At most this many versions (default 50, at most 500).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A version as the list shows it: light (no file index, no manifest text), with the
/// walkthrough's field names (`version_string`, `lifecycle_state`) next to ours.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VersionSummary {
    pub id: String,
    pub module: String,
    pub version: String,
    pub version_string: String,
    pub lifecycle: Lifecycle,
    pub lifecycle_state: Lifecycle,
    pub manifest_digest: String,
    pub composefs_digest: Option<String>,
    pub source_commit: Option<String>,
    pub signer_identity: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&VersionRow> for VersionSummary {
    fn from(v: &VersionRow) -> Self {
        VersionSummary {
            id: v.id.to_string(),
            module: v.module.clone(),
            version: v.version.clone(),
            version_string: v.version.clone(),
            lifecycle: v.lifecycle,
            lifecycle_state: v.lifecycle,
            manifest_digest: v.manifest_digest.clone(),
            composefs_digest: v.composefs_digest.clone(),
            source_commit: v.source_commit.clone(),
            signer_identity: v.signer_identity.clone(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// The full record (`GET /versions/{id}`), with the walkthrough's names added.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VersionView {
    #[serde(flatten)]
    pub row: VersionRow,
    pub version_string: String,
    pub lifecycle_state: Lifecycle,
}

impl From<VersionRow> for VersionView {
    fn from(row: VersionRow) -> Self {
        VersionView {
            version_string: row.version.clone(),
            lifecycle_state: row.lifecycle,
            row,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Versions {
    pub module: String,
    pub versions: Vec<VersionSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Audit {
    pub version: String,
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PromoteBody {
    /// The stage to promote to (the next one: `staging`, `blessed`, `live`).
    #[schemars(with = "Lifecycle")]
    to: String,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct YankBody {
    /// Why (not blank; recorded in the audit trail and shown to nodes' operators).
    #[schemars(regex(pattern = r"\S"))]
    reason: String,
}

/// The decision on an API request.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Decided {
    pub version: String,
    pub decision: Decision,
}

/// A request the policy does not allow now (409).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NotNow {
    pub error: &'static str,
    pub message: &'static str,
    pub version: String,
    pub decision: Decision,
}

/// The version `id`, or 404.
async fn find(s: &AppState, id: &str) -> Result<VersionRow, ApiError> {
    s.store
        .version_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {id}")))
}

pub async fn of_module(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body::Query(q): body::Query<ListQuery>,
) -> Result<Json<Versions>, ApiError> {
    require(&s, &h, Role::Read)?;
    let q = q?;
    let state = q
        .state
        .as_deref()
        .map(str::parse::<Lifecycle>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    // An empty cursor is no cursor (a client that always sends the last next_cursor).
    let after = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let mut all = s.store.versions_of(&name, state).await?;
    all.sort_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
    let mut page: Vec<&VersionRow> = all
        .iter()
        .filter(|v| {
            after
                .as_ref()
                .is_none_or(|(at, id)| (v.created_at, v.id.as_str()) > (*at, id.as_str()))
        })
        .take(limit + 1)
        .collect();
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last()
            .map(|v| encode_cursor(v.created_at, v.id.as_str()))
    } else {
        None
    };
    Ok(Json(Versions {
        module: name,
        versions: page.into_iter().map(VersionSummary::from).collect(),
        next_cursor,
    }))
}

/// Cursors are opaque to clients: base64 of `<created_at>:<id>` (the list's sort key).
fn encode_cursor(created_at: i64, id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(c: &str) -> Result<(i64, String), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request("cursor: not a cursor this API gave out");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.as_bytes())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<VersionView>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(find(&s, &id).await?.into()))
}

pub async fn audit(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Audit>, ApiError> {
    require(&s, &h, Role::Read)?;
    find(&s, &id).await?;
    let audit = s.store.audit_of(&id).await?;
    Ok(Json(Audit { version: id, audit }))
}

/// Decides `request` on version `id` for `caller` (an operator, authenticated by the edge it
/// came `via`, the API or MCP): the policy's outcome (`done`, `pending` with what is missing,
/// `refused` with why).
pub async fn decide(
    s: &AppState,
    caller: Caller,
    via: Via,
    id: String,
    request: Request,
    note: Option<String>,
) -> Result<Decided, ApiError> {
    let v = find(s, &id).await?;
    let break_glass = caller.role == Role::BreakGlass;
    let decision = match &s.engine {
        Some(engine) => engine
            .api_request(&v, &request, &caller.name, break_glass, via, note)
            .await
            .map_err(|e| match e {
                crate::error::Error::Gitea(g) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "gitea_unavailable",
                    format!("could not read the evidence from Gitea; try again: {g}"),
                ),
                other => ApiError::internal(other.into()),
            })?,
        None => {
            let evidence = Evidence {
                requester: Actor::Api(caller.name),
                requester_permission: Some(Permission::Owner),
                source_commit: v.source_commit.clone(),
                break_glass,
                ..Default::default()
            };
            let promoter = Promoter {
                store: s.store.clone(),
                config: s.config.promotion.clone(),
                policies: s.policies.clone(),
                // No [gitea]: nowhere to set a commit status.
                commit_statuses: false,
            };
            promoter
                .request_with_note(&v, &request, evidence, via, note, None)
                .await?
        }
    };
    Ok(Decided {
        version: id,
        decision,
    })
}

/// A decision as REST answers it: 200 when done, 409 with the outcome otherwise.
fn answer(d: Decided) -> Response {
    match d.decision {
        Decision::Done { .. } => Json(d).into_response(),
        _ => (
            StatusCode::CONFLICT,
            Json(NotNow {
                error: "requirements_not_met",
                message: "the policy does not allow this transition now",
                version: d.version,
                decision: d.decision,
            }),
        )
            .into_response(),
    }
}

pub async fn promote(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body::Json(b): body::Json<PromoteBody>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    let to = b.to.parse::<Lifecycle>().map_err(ApiError::bad_request)?;
    Ok(answer(
        decide(&s, caller, Via::Api, id, Request::Promote { to }, b.reason).await?,
    ))
}

pub async fn yank(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body::Json(b): body::Json<YankBody>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    Ok(answer(
        decide(
            &s,
            caller,
            Via::Api,
            id,
            Request::Yank { reason: b.reason },
            None,
        )
        .await?,
    ))
}
