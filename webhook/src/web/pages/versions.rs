//! `/versions/{id}`: a version's lifecycle timeline from the audit trail, its signer and
//! digests, its packages, its file index as a browsable tree, the templates that serve it
//! and the instances that run it; and the promote and yank forms (operator).

use crate::{
    http::AppState,
    promotion::Decision,
    store::{AuditRow, Lifecycle, VersionId},
    web::{
        act,
        session::Session,
        view::{Nav, WebError, link, render, short, time},
    },
};
use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use powernode_module::artifact::index::{EntryKind, Index};
use serde::Deserialize;

pub struct Event {
    pub at: String,
    pub actor: String,
    pub via: String,
    pub action: String,
    pub change: String,
    pub reason: String,
    /// Approvals (reviewer, review), checks (context: state), soak and policy, as sentences.
    pub evidence: Vec<String>,
}

pub struct FileRow {
    pub name: String,
    /// `?path=` of a directory, to open it.
    pub open: Option<String>,
    pub kind: &'static str,
    pub detail: String,
}

pub struct Running {
    pub id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub status: String,
}

#[derive(askama::Template)]
#[template(path = "web/version.html")]
struct VersionPage {
    nav: Nav,
    id: VersionId,
    module: String,
    version: String,
    stage: &'static str,
    next_stage: Option<&'static str>,
    can_yank: bool,
    facts: Vec<(&'static str, String)>,
    description: String,
    packages: Vec<String>,
    dependencies: Vec<String>,
    manifest: String,
    events: Vec<Event>,
    dir: String,
    up: Option<String>,
    files: Vec<FileRow>,
    more_files: Option<String>,
    templates: Vec<crate::store::TemplateId>,
    running: Vec<Running>,
    more_running: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionQuery {
    /// The directory of the file index shown (`rootfs/etc`).
    path: Option<String>,
    /// How many of its entries to skip.
    files: Option<usize>,
    /// The last instance shown of those running the version.
    running_after: Option<String>,
}

fn evidence(a: &AuditRow) -> Vec<String> {
    let e = &a.evidence;
    let mut out = Vec::new();
    if let Some(list) = e["approvals"].as_array() {
        for ap in list {
            out.push(format!(
                "approved by {} (review {}) of {}",
                ap["user"].as_str().unwrap_or("?"),
                ap["review_id"],
                e["digest"].as_str().map(short).unwrap_or_default()
            ));
        }
    }
    if let Some(checks) = e["checks"].as_object() {
        for (c, st) in checks {
            out.push(format!("check {c}: {}", st.as_str().unwrap_or("?")));
        }
    }
    if let Some(p) = e.get("policy").filter(|p| p.is_object()) {
        let soak = p["min_soak_secs"].as_i64().unwrap_or(0);
        let need = p["min_approvals"].as_i64().unwrap_or(0);
        if need > 0 || soak > 0 {
            out.push(format!(
                "policy: {need} approval(s), soak {}",
                super::duration(soak)
            ));
        }
    }
    for m in e["missing"].as_array().into_iter().flatten() {
        out.push(format!("missing: {}", super::missing_sentence(m)));
    }
    if e["break_glass"].as_bool() == Some(true) {
        out.push("break-glass: requirements waived".into());
    }
    if let Some(c) = e["source_commit"].as_str() {
        out.push(format!("commit {c}"));
    }
    out
}

pub async fn version(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<VersionId>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, WebError> {
    let v = s
        .store
        .version_by_id(&id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("no version {id}")))?;
    let parsed = v
        .manifest
        .as_deref()
        .and_then(|t| powernode_module::manifest::parse(t).manifest);
    let mut facts = vec![
        ("Manifest digest", v.manifest_digest.to_string()),
        (
            "Composefs digest",
            v.composefs_digest
                .map_or_else(|| "—".into(), |d| d.to_string()),
        ),
        ("Repository", format!("{}:{}", v.repository, v.tag)),
        (
            "Signer identity",
            v.signer_identity.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "Signer issuer",
            v.signer_issuer.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "Source",
            match (&v.source_repository, &v.source_commit) {
                (Some(r), Some(c)) => format!("{r} @ {c}"),
                (None, Some(c)) => c.clone(),
                (Some(r), None) => r.clone(),
                (None, None) => "—".into(),
            },
        ),
        ("Arrived", time(v.created_at)),
        ("In this stage since", time(v.updated_at)),
    ];
    if let Some(r) = &v.reject_reason {
        facts.push(("Rejected because", r.clone()));
    }
    let events = s
        .store
        .audit_of(&id)
        .await?
        .iter()
        .map(|a| Event {
            at: time(a.at),
            actor: a.actor.clone(),
            via: a.via.as_str().to_owned(),
            action: a.action.as_str().replace('_', " "),
            change: match (&a.from_state, &a.to_state) {
                (Some(f), Some(t)) => format!("{f} → {t}"),
                (None, Some(t)) => format!("→ {t}"),
                _ => String::new(),
            },
            reason: a.reason.clone().unwrap_or_default(),
            evidence: evidence(a),
        })
        .collect();
    // The file index, one directory at a time.
    let dir = q.path.unwrap_or_default().trim_matches('/').to_owned();
    let index: Option<Index> = v
        .file_index
        .clone()
        .and_then(|j| serde_json::from_value(j).ok());
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let children: Vec<FileRow> = index
        .iter()
        .flat_map(|i| i.entries.iter())
        .filter_map(|e| {
            let rest = e.path.strip_prefix(&prefix)?;
            (!rest.is_empty() && !rest.contains('/')).then_some((rest, e))
        })
        .map(|(name, e)| match &e.kind {
            EntryKind::Dir => FileRow {
                name: format!("{name}/"),
                open: Some(link(&format!("/versions/{id}"), &[("path", &e.path)])),
                kind: "directory",
                detail: format!("{:o}", e.mode),
            },
            EntryKind::File { size, fsverity, .. } => FileRow {
                name: name.to_owned(),
                open: None,
                kind: "file",
                detail: format!(
                    "{:o}, {size} bytes, fs-verity {}",
                    e.mode,
                    short(&fsverity.to_string())
                ),
            },
            EntryKind::Symlink { target } => FileRow {
                name: name.to_owned(),
                open: None,
                kind: "symlink",
                detail: format!("→ {target}"),
            },
        })
        .collect();
    let skip = q.files.unwrap_or(0);
    let more_files = (children.len() > skip + 200).then(|| {
        link(
            &format!("/versions/{id}"),
            &[("path", &dir), ("files", &(skip + 200).to_string())],
        )
    });
    let files = children.into_iter().skip(skip).take(200).collect();
    let up = (!dir.is_empty()).then(|| {
        let parent = dir.rsplit_once('/').map(|p| p.0).unwrap_or("");
        link(&format!("/versions/{id}"), &[("path", parent)])
    });
    let templates = s
        .store
        .templates_serving(&v.manifest_digest.to_string())
        .await?;
    let (running, more_running) = match &v.composefs_digest {
        None => (Vec::new(), None),
        Some(d) => {
            let after = q.running_after.unwrap_or_default();
            let mut r = s
                .store
                .instances_running(&d.to_string(), &after, 51)
                .await?;
            let more = (r.len() > 50).then(|| {
                r.truncate(50);
                link(&format!("/versions/{id}"), &[("running_after", &r[49].id)])
            });
            let rows = r
                .into_iter()
                .map(|i| Running {
                    status: i.status.unwrap_or_else(|| "never reported".into()),
                    id: i.id,
                    template_id: i.template_id,
                })
                .collect();
            (rows, more)
        }
    };
    render(&VersionPage {
        nav: Nav::of(&session, "modules"),
        module: v.module.to_string(),
        version: v.version.to_string(),
        stage: v.lifecycle.as_str(),
        next_stage: v.lifecycle.next().map(Lifecycle::as_str),
        can_yank: matches!(
            v.lifecycle,
            Lifecycle::Draft | Lifecycle::Staging | Lifecycle::Blessed | Lifecycle::Live
        ),
        facts,
        description: parsed
            .as_ref()
            .map(|m| m.identity.description.clone())
            .unwrap_or_default(),
        packages: parsed
            .as_ref()
            .map(|m| m.package_spec.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        dependencies: parsed
            .as_ref()
            .map(|m| {
                m.dependency_spec
                    .iter()
                    .map(|d| d.name.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        manifest: v.manifest.clone().unwrap_or_default(),
        events,
        dir,
        up,
        files,
        more_files,
        templates,
        running,
        more_running,
        id,
    })
}

/// The answer to a form that asked the policy: a transition goes back to the version page
/// (its timeline shows the new row); anything else is shown with what is missing: 202 for a
/// request recorded to wait for its requirements, 409 for a refusal.
#[derive(askama::Template)]
#[template(path = "web/outcome.html")]
struct Outcome {
    nav: Nav,
    id: VersionId,
    asked: String,
    pending: bool,
    missing: Vec<String>,
}

fn answer(
    session: &Session,
    id: VersionId,
    asked: String,
    d: Decision,
) -> Result<Response, WebError> {
    let (pending, missing) = match d {
        Decision::Done { .. } => {
            return Ok(Redirect::to(&format!("/versions/{id}#timeline")).into_response());
        }
        Decision::Pending { missing } => (true, missing),
        Decision::Refused { missing } => (false, missing),
    };
    let mut r = render(&Outcome {
        nav: Nav::of(session, "modules"),
        id,
        asked,
        pending,
        missing: missing.iter().map(ToString::to_string).collect(),
    })?;
    *r.status_mut() = if pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CONFLICT
    };
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct PromoteForm {
    #[serde(default)]
    csrf: String,
    to: String,
    #[serde(default)]
    note: String,
}

/// `POST /versions/{id}/promote` (operator).
pub async fn promote(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<VersionId>,
    Form(f): Form<PromoteForm>,
) -> Result<Response, WebError> {
    let caller = session.acting(&f.csrf)?;
    let to = f.to.parse::<Lifecycle>().map_err(WebError::bad_request)?;
    let note = Some(f.note.trim().to_owned()).filter(|n| !n.is_empty());
    let d = act::promote(&s, &caller, &id, to, note).await?;
    answer(&session, id, format!("promotion to {to}"), d)
}

#[derive(Debug, Deserialize)]
pub struct YankForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /versions/{id}/yank` (operator), with a reason.
pub async fn yank(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<VersionId>,
    Form(f): Form<YankForm>,
) -> Result<Response, WebError> {
    let caller = session.acting(&f.csrf)?;
    let d = act::yank(&s, &caller, &id, f.reason.trim().to_owned()).await?;
    answer(&session, id, "yank".into(), d)
}
