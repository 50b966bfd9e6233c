//! `/`: every module with its newest version per stage, the pending promotion requests
//! with what each is missing, the dead letters; `/modules/{name}`: a module's versions and
//! the adoption of its versions across the fleet.

use super::missing_sentence;
use crate::{
    http::AppState,
    store::{JobKind, Lifecycle, VersionBrief},
    web::{
        act, chart,
        session::Session,
        view::{Nav, WebError, ago, link, page_size, render, time},
    },
};
use axum::{
    Form,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

/// The stages the modules list shows a newest version of.
const STAGES: [Lifecycle; 4] = [
    Lifecycle::Draft,
    Lifecycle::Staging,
    Lifecycle::Blessed,
    Lifecycle::Live,
];

pub struct Newest {
    pub stage: &'static str,
    /// (version, id)
    pub version: Option<(String, String)>,
}

pub struct ModuleRow {
    pub name: String,
    pub repository: String,
    pub versions: usize,
    pub newest: Vec<Newest>,
}

pub struct RequestRow {
    pub version_id: String,
    pub to: String,
    pub requester: String,
    pub via: &'static str,
    pub missing: Vec<String>,
    pub made: String,
    pub expires: String,
}

pub struct DeadRow {
    pub id: String,
    pub kind: JobKind,
    pub attempts: i64,
    pub last_error: String,
    pub when: String,
}

#[derive(askama::Template)]
#[template(path = "web/modules.html")]
struct Index {
    nav: Nav,
    modules: Vec<ModuleRow>,
    next_modules: Option<String>,
    requests: Vec<RequestRow>,
    pending_total: usize,
    next_requests: Option<String>,
    dead: Vec<DeadRow>,
    next_dead: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IndexQuery {
    /// The last module of the previous page.
    after: Option<String>,
    limit: Option<i64>,
    /// How many pending requests to skip.
    requests: Option<usize>,
    /// `<updated_at>:<id>` of the last dead letter shown.
    dead: Option<String>,
}

/// A version's SemVer order, else its arrival (for a tag that is not SemVer).
fn newer(a: &VersionBrief, b: &VersionBrief) -> bool {
    match (
        semver::Version::parse(&a.version),
        semver::Version::parse(&b.version),
    ) {
        (Ok(x), Ok(y)) => x > y,
        _ => a.created_at > b.created_at,
    }
}

pub async fn index(
    State(s): State<AppState>,
    session: Session,
    Query(q): Query<IndexQuery>,
) -> Result<Response, WebError> {
    let limit = page_size(q.limit, 50);
    let after = q.after.unwrap_or_default();
    let mut names = s.store.modules_after(&after, limit + 1).await?;
    let next_modules = (names.len() as i64 > limit).then(|| {
        names.truncate(limit as usize);
        link("/", &[("after", &names[names.len() - 1].0)])
    });
    let versions = s
        .store
        .versions_brief_of(&names.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
        .await?;
    let modules = names
        .into_iter()
        .map(|(name, repository)| {
            let mine: Vec<&VersionBrief> = versions.iter().filter(|v| v.module == name).collect();
            let newest = STAGES
                .iter()
                .map(|stage| Newest {
                    stage: stage.as_str(),
                    version: mine
                        .iter()
                        .filter(|v| v.lifecycle == *stage)
                        .fold(None::<&VersionBrief>, |best, v| match best {
                            Some(b) if !newer(v, b) => Some(b),
                            _ => Some(v),
                        })
                        .map(|v| (v.version.clone(), v.id.to_string())),
                })
                .collect();
            ModuleRow {
                versions: mine.len(),
                name,
                repository,
                newest,
            }
        })
        .collect();
    let now = s.store.now();
    let pending = s.store.pending_requests(None).await?;
    let skip = q.requests.unwrap_or(0);
    let requests = pending
        .iter()
        .skip(skip)
        .take(20)
        .map(|r| RequestRow {
            version_id: r.version_id.to_string(),
            to: r.to_state.to_string(),
            requester: r.requester.encode(),
            via: r.via.as_str(),
            missing: r
                .missing
                .as_array()
                .map(|a| a.iter().map(missing_sentence).collect())
                .unwrap_or_default(),
            made: ago(now, r.created_at),
            expires: time(r.expires_at),
        })
        .collect();
    let next_requests =
        (pending.len() > skip + 20).then(|| link("/", &[("requests", &(skip + 20).to_string())]));
    let dead_cursor = q.dead.as_deref().and_then(|c| {
        let (at, id) = c.split_once(':')?;
        Some((at.parse::<i64>().ok()?, id))
    });
    let mut dead = s.store.dead_letters_page(dead_cursor, 21).await?;
    let next_dead = (dead.len() > 20).then(|| {
        dead.truncate(20);
        let last = &dead[19];
        link(
            "/",
            &[("dead", &format!("{}:{}", last.updated_at, last.id))],
        )
    });
    render(&Index {
        nav: Nav::of(&session, "modules"),
        modules,
        next_modules,
        pending_total: pending.len(),
        requests,
        next_requests,
        dead: dead
            .into_iter()
            .map(|d| DeadRow {
                when: ago(now, d.updated_at),
                last_error: d.last_error.unwrap_or_default(),
                id: d.id.to_string(),
                kind: d.kind,
                attempts: d.attempts,
            })
            .collect(),
        next_dead,
    })
}

pub struct VersionLine {
    pub id: String,
    pub version: String,
    pub stage: &'static str,
    pub created: String,
}

#[derive(askama::Template)]
#[template(path = "web/module.html")]
struct ModulePage {
    nav: Nav,
    name: String,
    repository: String,
    versions: Vec<VersionLine>,
    next: Option<String>,
    /// The latest adoption sample: (version, instances).
    adoption: Vec<(String, i64)>,
    sampled: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// `<created_at>:<id>` of the last version shown.
    before: Option<String>,
    limit: Option<i64>,
}

pub async fn module(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let Some(repository) = s.store.module_repository(&name).await? else {
        return Err(WebError::not_found(format!("no module {name}")));
    };
    let limit = page_size(q.limit, 50);
    let cursor = q.before.as_deref().and_then(|c| {
        let (at, id) = c.split_once(':')?;
        Some((at.parse::<i64>().ok()?, id))
    });
    let mut page = s.store.versions_page(&name, cursor, limit + 1).await?;
    let next = (page.len() as i64 > limit).then(|| {
        page.truncate(limit as usize);
        let last = &page[page.len() - 1];
        link(
            &format!("/modules/{name}"),
            &[("before", &format!("{}:{}", last.created_at, last.id))],
        )
    });
    let samples = s
        .store
        .samples(&format!("adoption:{name}"), s.store.now() - 30 * 86_400_000)
        .await?;
    let last_at = samples.last().map(|x| x.at);
    let mut adoption: Vec<(String, i64)> = samples
        .iter()
        .filter(|x| Some(x.at) == last_at)
        .map(|x| (x.label.clone(), x.count))
        .collect();
    adoption.sort_by_key(|a| std::cmp::Reverse(a.1));
    render(&ModulePage {
        nav: Nav::of(&session, "modules"),
        versions: page
            .into_iter()
            .map(|v| VersionLine {
                created: time(v.created_at),
                stage: v.lifecycle.as_str(),
                id: v.id.to_string(),
                version: v.version,
            })
            .collect(),
        name,
        repository,
        next,
        adoption,
        sampled: last_at.map(time),
    })
}

/// `/modules/{name}/adoption.svg`: instances per version of the module over time.
pub async fn adoption_chart(
    State(s): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let samples = s
        .store
        .samples(&format!("adoption:{name}"), s.store.now() - 30 * 86_400_000)
        .await?;
    let lines = chart::lines(&samples, &[]);
    let svg = chart::svg(
        &format!("Instances running each version of {name}"),
        "instances",
        &lines,
    )?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        svg,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /dead-letters/{id}/retry` (operator).
pub async fn retry(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<crate::store::JobId>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    let caller = session.acting(&f.csrf)?;
    act::retry_dead_letter(&s, &caller, &id).await?;
    Ok(Redirect::to("/#dead-letters").into_response())
}
