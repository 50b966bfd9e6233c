//! `/templates`: every template with what it serves; `/templates/{id}`: its assignments
//! (assign and unassign, operator), the served desired state (modules in composition order,
//! merged composefs digest), the conflicts that block a new one (the fail-safe, visible),
//! the history of served states and the template's instances.

use crate::{
    http::AppState,
    web::{
        act,
        session::Session,
        view::{Nav, WebError, link, page_size, render, short, time},
    },
};
use axum::{
    Form,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use powernode_module::desired_state::DesiredState;
use serde::Deserialize;

pub struct TemplateLine {
    pub id: crate::store::TemplateId,
    pub platform: String,
    pub description: String,
    pub assignments: usize,
    pub state: String,
    pub blocked: bool,
    pub instances: i64,
}

#[derive(askama::Template)]
#[template(path = "web/templates.html")]
struct List {
    nav: Nav,
    templates: Vec<TemplateLine>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(s): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let limit = page_size(q.limit, 50);
    let mut rows = s
        .store
        .templates_after(q.after.as_deref().unwrap_or(""), limit + 1)
        .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        link("/templates", &[("after", &rows[rows.len() - 1].id)])
    });
    let mut templates = Vec::new();
    for t in rows {
        let state = s.store.served_state_head(&t.id).await?.map(|(id, _)| id);
        let last = s.store.last_computation(&t.id).await?;
        templates.push(TemplateLine {
            assignments: s.store.assignments(&t.id).await?.len(),
            state: state
                .map(|x| short(&x))
                .unwrap_or_else(|| "none yet".into()),
            blocked: last.is_some_and(|l| l.blocked),
            instances: s.store.instance_count(&t.id).await?,
            id: t.id,
            platform: t.platform,
            description: t.description,
        });
    }
    render(&List {
        nav: Nav::of(&session, "templates"),
        templates,
        next,
    })
}

pub struct Composed {
    pub name: String,
    pub version: String,
    pub manifest_digest: String,
    pub composefs_digest: String,
}

pub struct Served {
    pub state_id: String,
    pub sequence: i64,
    pub computed: String,
    pub expires: String,
    pub composefs_digest: String,
    pub hold: Option<String>,
    pub modules: Vec<Composed>,
}

pub struct Problem {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub struct HistoryRow {
    pub state_id: String,
    pub modules: i64,
    pub served: String,
}

pub struct ChangeRow {
    pub at: String,
    pub actor: String,
    pub via: String,
    pub action: String,
    pub detail: String,
}

#[derive(askama::Template)]
#[template(path = "web/template.html")]
struct TemplatePage {
    nav: Nav,
    id: crate::store::TemplateId,
    platform: String,
    description: String,
    assignments: Vec<(String, String)>,
    configured: Vec<String>,
    served: Option<Served>,
    degraded: Option<String>,
    blocked: bool,
    problems: Vec<Problem>,
    history: Vec<HistoryRow>,
    changes: Vec<ChangeRow>,
    instances: Vec<(crate::store::InstanceId, String)>,
    instance_count: i64,
    more_instances: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TemplateQuery {
    /// The last instance shown.
    after: Option<String>,
}

fn problems(findings: &serde_json::Value) -> Vec<Problem> {
    findings
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| Problem {
            severity: f["severity"].as_str().unwrap_or("").to_owned(),
            code: f["code"].as_str().unwrap_or("").to_owned(),
            message: f["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| f.to_string()),
        })
        .collect()
}

pub async fn template(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<crate::store::TemplateId>,
    Query(q): Query<TemplateQuery>,
) -> Result<Response, WebError> {
    let t = s
        .store
        .template(&id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("no template {id}")))?;
    let assignments = s
        .store
        .assignments(&id)
        .await?
        .into_iter()
        .map(|a| {
            (
                a.module_name,
                a.requirement.unwrap_or_else(|| "any version".into()),
            )
        })
        .collect();
    let st = s.store.served_state(&id).await?;
    let degraded = st.as_ref().and_then(|x| x.degraded.as_ref()).map(|d| {
        format!(
            "{}: {}",
            d["mode"].as_str().unwrap_or("degraded"),
            d["reason"].as_str().unwrap_or("")
        )
    });
    let served = match st {
        None => None,
        Some(st) => {
            let doc: DesiredState =
                serde_json::from_value(st.document).map_err(anyhow::Error::from)?;
            Some(Served {
                state_id: st.state_id,
                sequence: st.sequence,
                computed: time(st.computed_at),
                expires: time(st.expires_at * 1000),
                composefs_digest: doc.composefs_digest.to_string(),
                hold: doc.hold.clone(),
                modules: doc
                    .modules
                    .iter()
                    .map(|m| Composed {
                        name: m.name.clone(),
                        version: m.version.clone(),
                        manifest_digest: m.manifest_digest.to_string(),
                        composefs_digest: m.composefs_digest.to_string(),
                    })
                    .collect(),
            })
        }
    };
    let last = s.store.last_computation(&id).await?;
    let (blocked, problems) = match &last {
        Some(l) => (l.blocked, problems(&l.findings)),
        None => (false, Vec::new()),
    };
    let history = s
        .store
        .served_history(&id, 20)
        .await?
        .into_iter()
        .map(|(state_id, modules, at)| HistoryRow {
            state_id,
            modules,
            served: time(at),
        })
        .collect();
    let mut audit = s.store.audit_of_template(&id).await?;
    audit.reverse();
    let changes = audit
        .into_iter()
        .take(30)
        .map(|a| ChangeRow {
            at: time(a.at),
            actor: a.actor,
            via: a.via.as_str().to_owned(),
            action: a.action.as_str().replace('_', " "),
            detail: a
                .module
                .or_else(|| a.evidence["instance_id"].as_str().map(str::to_owned))
                .unwrap_or_default(),
        })
        .collect();
    let after = q.after.unwrap_or_default();
    let mut inst = s.store.instances_after(Some(&id), &after, 51).await?;
    let more_instances = (inst.len() > 50).then(|| {
        inst.truncate(50);
        link(&format!("/templates/{id}"), &[("after", &inst[49].id)])
    });
    let mut configured: Vec<String> = s.policies.all().iter().map(|m| m.name.clone()).collect();
    configured.sort();
    render(&TemplatePage {
        nav: Nav::of(&session, "templates"),
        instance_count: s.store.instance_count(&id).await?,
        instances: inst
            .into_iter()
            .map(|i| {
                (
                    i.id,
                    i.last_report_at.map(time).unwrap_or_else(|| "never".into()),
                )
            })
            .collect(),
        more_instances,
        id,
        platform: t.platform,
        description: t.description,
        assignments,
        configured,
        served,
        degraded,
        blocked,
        problems,
        history,
        changes,
    })
}

#[derive(Debug, Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    csrf: String,
    module: String,
    #[serde(default)]
    requirement: String,
}

/// The template page again, with `message` about what the change did.
#[derive(askama::Template)]
#[template(path = "web/changed.html")]
struct Changed {
    nav: Nav,
    id: crate::store::TemplateId,
    message: String,
}

/// `POST /templates/{id}/assign` (operator).
pub async fn assign(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<crate::store::TemplateId>,
    Form(f): Form<AssignForm>,
) -> Result<Response, WebError> {
    let caller = session.acting(&f.csrf)?;
    let requirement = Some(f.requirement.trim().to_owned()).filter(|r| !r.is_empty());
    let message = act::assign(&s, &caller, &id, f.module.trim(), requirement).await?;
    render(&Changed {
        nav: Nav::of(&session, "templates"),
        id,
        message,
    })
}

#[derive(Debug, Deserialize)]
pub struct UnassignForm {
    #[serde(default)]
    csrf: String,
    module: String,
}

/// `POST /templates/{id}/unassign` (operator).
pub async fn unassign(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<crate::store::TemplateId>,
    Form(f): Form<UnassignForm>,
) -> Result<Response, WebError> {
    let caller = session.acting(&f.csrf)?;
    act::unassign(&s, &caller, &id, &f.module).await?;
    Ok(Redirect::to(&format!("/templates/{id}")).into_response())
}
