//! The tools: the walkthrough's names, argument names and answer shapes, each on the REST
//! handler (or the function behind it) that answers the same question on `/api/v1`.
//!
//! A tool receives the HTTP request's parts (`Extension<http::request::Parts>`): its headers
//! carry the caller's bearer token, checked with the same `require` as a REST call (here
//! for the operator tools, in the API function for the others). An [`ApiError`] becomes a
//! tool error (`isError`, the API's code and message); so does a refused promotion. A pending one is an answer: `decision.outcome =
//! "pending"` with exactly what is missing, as a `/promote` comment would be told.

mod pins;

use crate::config::Role;
use crate::http::{auth::require, extract as body};
use crate::{
    api::{
        instances, packages, templates, validate,
        versions::{self, Decided},
        workflow_runs,
    },
    http::{ApiError, AppState},
    lifecycle::Request,
    promotion::Decision,
    store::{AuditRow, Lifecycle, Via},
};
use axum::extract::{Path, State};
use http::request::Parts;
use powernode_module::diagnostics::Report;
use rmcp::{
    Json, ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::Extension, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The tools, over the receiver's state.
#[derive(Debug, Clone)]
pub struct Tools {
    s: AppState,
    tool_router: ToolRouter<Self>,
}

/// A tool error a person can act on: the API's message and its stable code.
fn fail(e: ApiError) -> String {
    format!("{} ({})", e.message, e.error)
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ValidateArgs {
    /// The contents of `manifest.yaml`.
    pub manifest_yaml: String,
    /// The category it is validated as (`base`, `security`, `userland`, …).
    pub category_slug: String,
    /// Compose with this template's live modules rather than all live modules.
    #[serde(default)]
    pub template_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListVersionsArgs {
    /// The module's name (`my-redis`).
    pub module_name: String,
    /// Only versions in this stage (`draft`, `staging`, `blessed`, `live`, `yanked`).
    #[serde(default)]
    pub state: Option<String>,
    /// At most this many (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct VersionArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PromoteArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
    /// The next stage: `staging`, `blessed` or `live`.
    pub to: String,
    /// Why (kept in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct YankArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
    /// Why it must not run anywhere (kept in the audit trail; required).
    pub reason: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AssignArgs {
    /// The template (`tpl-web`).
    pub template_id: String,
    /// The module (`my-redis`): its newest live version matching `requirement` is used.
    pub module_name: String,
    /// A SemVer requirement (`^0.1`); any version when absent.
    #[serde(default)]
    pub requirement: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InstanceArgs {
    /// The instance's id.
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DriftArgs {
    /// The instance's id.
    pub instance_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PackageArgs {
    /// The Debian package's name (`redis-server`).
    pub package_name: String,
    /// At most this many entries (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuditArgs {
    /// A version id (`v-my-redis-0.1.0`) or a template id.
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunsArgs {
    /// The Gitea owner (user or organisation).
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    /// At most this many runs, newest first (default 20, at most 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// The audit trail of a version or a template.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditLog {
    pub id: String,
    /// `version` or `template`: what `id` named.
    pub kind: &'static str,
    /// Oldest first.
    pub audit: Vec<AuditRow>,
}

#[tool_router]
impl Tools {
    pub fn new(s: AppState) -> Tools {
        Tools {
            s,
            tool_router: Self::tool_router() + Self::pin_router(),
        }
    }

    fn state(&self) -> State<AppState> {
        State(self.s.clone())
    }

    #[tool(
        description = "Validate a module manifest (manifest.yaml text) as a category, and compose it with the live modules: {valid, errors, warnings, conflicts}, each finding with a stable code, its field and line.",
        annotations(
            title = "Validate a module manifest",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_validate_module_manifest(
        &self,
        Parameters(a): Parameters<ValidateArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<Report>, String> {
        answered(
            validate::validate(
                self.state(),
                p.headers,
                body::Json(Ok(validate::ValidateBody {
                    manifest_yaml: a.manifest_yaml,
                    category_slug: a.category_slug,
                    template_id: a.template_id,
                })),
            )
            .await,
        )
    }

    #[tool(
        description = "List a module's versions, oldest first: id, version_string, lifecycle_state (draft, staging, blessed, live, yanked), composefs_digest, source_commit. Paginated: pass next_cursor back as cursor.",
        annotations(
            title = "List module versions",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_list_module_versions(
        &self,
        Parameters(a): Parameters<ListVersionsArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<versions::Versions>, String> {
        answered(
            versions::of_module(
                self.state(),
                p.headers,
                Path(a.module_name),
                body::Query(Ok(versions::ListQuery {
                    state: a.state,
                    limit: a.limit,
                    cursor: a.cursor,
                })),
            )
            .await,
        )
    }

    #[tool(
        description = "One version's full record: manifest, file index, digests, signer identity, stage.",
        annotations(
            title = "Get a module version",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_get_module_version(
        &self,
        Parameters(a): Parameters<VersionArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<versions::VersionView>, String> {
        answered(versions::get(self.state(), p.headers, Path(a.id)).await)
    }

    #[tool(
        description = "Promote a version one stage (draft → staging → blessed → live) under the promotion policy, exactly as a /promote comment would be: decision.outcome is done, or pending with what is missing (approvals on the commit's pull request, checks, soak time); the request stays open and completes when they arrive. A refused request (not the next stage, no permission) is a tool error saying why. Needs the operator role.",
        annotations(
            title = "Promote a module version",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_promote_module_version(
        &self,
        Parameters(a): Parameters<PromoteArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<Decided>, String> {
        let to =
            a.to.parse::<Lifecycle>()
                .map_err(|e| fail(ApiError::bad_request(format!("to: {e}"))))?;
        let caller = require(&self.s, &p.headers, Role::Operator).map_err(fail)?;
        decided(
            versions::decide(
                &self.s,
                caller,
                Via::Mcp,
                a.id,
                Request::Promote { to },
                a.reason,
            )
            .await,
        )
    }

    #[tool(
        description = "Yank a version from any published stage, with a reason: it is never chosen for a desired state again, and templates that ran it fall back to the newest live version left. Nothing leaves yanked. Needs the operator role.",
        annotations(
            title = "Yank a module version",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_yank_module_version(
        &self,
        Parameters(a): Parameters<YankArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<Decided>, String> {
        let caller = require(&self.s, &p.headers, Role::Operator).map_err(fail)?;
        decided(
            versions::decide(
                &self.s,
                caller,
                Via::Mcp,
                a.id,
                Request::Yank { reason: a.reason },
                None,
            )
            .await,
        )
    }

    #[tool(
        description = "Assign a module to a template: its newest live version (matching requirement) and its dependencies join the template's signed desired state, which is recomputed now; conflicts keep the served state unchanged and are listed. Needs the operator role.",
        annotations(
            title = "Assign a module to a template",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_assign_module_to_template(
        &self,
        Parameters(a): Parameters<AssignArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<templates::Assigned>, String> {
        let caller = require(&self.s, &p.headers, Role::Operator).map_err(fail)?;
        templates::assign_via(
            &self.s,
            caller,
            Via::Mcp,
            a.template_id,
            templates::NewAssignment {
                module_name: a.module_name,
                requirement: a.requirement,
            },
        )
        .await
        .map(Json)
        .map_err(fail)
    }

    #[tool(
        description = "Every template with its assigned modules, the desired state it serves and its last computation (blocked or not).",
        annotations(
            title = "List templates",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_list_templates(
        &self,
        Parameters(_): Parameters<NoArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<templates::Templates>, String> {
        answered(templates::list(self.state(), p.headers).await)
    }

    #[tool(
        description = "An instance as it last reported: {instance: {id, template_id, running_module_digests (module → composefs digest), composefs_digest, status, last_report_at, modules (module → {packages: {package: installed version or null}, units: {unit: active state}}), drift}}.",
        annotations(
            title = "Get an instance",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_get_instance(
        &self,
        Parameters(a): Parameters<InstanceArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<instances::OneInstance>, String> {
        answered(instances::get(self.state(), p.headers, Path(a.id)).await)
    }

    #[tool(
        description = "Delete an instance: its token stops working on every replica within a second, its reports are refused, its audit rows stay. Needs the operator role.",
        annotations(
            title = "Delete an instance",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_delete_instance(
        &self,
        Parameters(a): Parameters<InstanceArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<instances::Deleted>, String> {
        let caller = require(&self.s, &p.headers, Role::Operator).map_err(fail)?;
        instances::delete_via(&self.s, &caller, Via::Mcp, a.id)
            .await
            .map(Json)
            .map_err(fail)
    }

    #[tool(
        description = "Give an instance a new token (for a leaked or lost one): {instance, token}; the token is shown only in this answer, and the old one stops working on every replica within a second. Needs the operator role.",
        annotations(
            title = "Rotate an instance's token",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn system_rotate_instance_token(
        &self,
        Parameters(a): Parameters<InstanceArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<instances::Registered>, String> {
        let caller = require(&self.s, &p.headers, Role::Operator).map_err(fail)?;
        instances::rotate_via(&self.s, &caller, Via::Mcp, a.id)
            .await
            .map(Json)
            .map_err(fail)
    }

    #[tool(
        description = "An instance's drift against its template's signed desired state: {drift, missing, unexpected, outdated, package_missing, package_version, unit_failed, composefs_mismatch, stale, reasons}.",
        annotations(
            title = "Drift report of an instance",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_drift_report(
        &self,
        Parameters(a): Parameters<DriftArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<instances::InstanceDrift>, String> {
        answered(instances::drift(self.state(), p.headers, Path(a.instance_id)).await)
    }

    #[tool(
        description = "Which instances run a Debian package, as their last reports observed it, per module: {package, instances: [{instance_id, template_id, module, version (null: not installed)}], versions: {installed version: instance count}}. A package no instance reports is an empty list. Paginated: pass next_cursor back as cursor.",
        annotations(
            title = "Instances running a package",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_list_package_instances(
        &self,
        Parameters(a): Parameters<PackageArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<packages::PackageInstances>, String> {
        answered(
            packages::instances(
                self.state(),
                p.headers,
                Path(a.package_name),
                body::Query(Ok(packages::PackageQuery {
                    limit: a.limit,
                    cursor: a.cursor,
                })),
            )
            .await,
        )
    }

    #[tool(
        description = "The append-only audit trail of a version (v-…) or a template, oldest first: who did what, from where (comment, api, mcp, auto), from which state to which.",
        annotations(title = "Audit log", read_only_hint = true, open_world_hint = false)
    )]
    async fn system_audit_log(
        &self,
        Parameters(a): Parameters<AuditArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<AuditLog>, String> {
        let version = versions::audit(self.state(), p.headers.clone(), Path(a.id.clone())).await;
        match version {
            Ok(j) => {
                return Ok(Json(AuditLog {
                    id: a.id,
                    kind: "version",
                    audit: j.0.audit,
                }));
            }
            Err(e) if e.error != "not_found" => return Err(fail(e)),
            Err(_) => {}
        }
        match templates::audit_trail(self.state(), p.headers, Path(a.id.clone())).await {
            Ok(j) => Ok(Json(AuditLog {
                id: a.id,
                kind: "template",
                audit: j.0.audit,
            })),
            Err(e) if e.error == "not_found" => Err(fail(ApiError::not_found(format!(
                "no version or template {}",
                a.id
            )))),
            Err(e) => Err(fail(e)),
        }
    }

    #[tool(
        description = "A Gitea repository's newest Actions workflow runs (the builds that push module versions): {runs: [{id, status, conclusion, display_title, head_sha, html_url, …}], total_count}.",
        annotations(
            title = "List Gitea workflow runs",
            read_only_hint = true,
            open_world_hint = true
        )
    )]
    async fn list_gitea_workflow_runs(
        &self,
        Parameters(a): Parameters<RunsArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<workflow_runs::Runs>, String> {
        answered(
            workflow_runs::list(
                self.state(),
                p.headers,
                Path((a.owner, a.repo)),
                body::Query(Ok(workflow_runs::RunsQuery { limit: a.limit })),
            )
            .await,
        )
    }
}

/// A REST handler's answer as a tool's: the typed body (structured content), or a tool error.
fn answered<T>(r: Result<axum::Json<T>, ApiError>) -> Result<Json<T>, String> {
    r.map(|j| Json(j.0)).map_err(fail)
}

/// A refused decision is a tool error naming why; done and pending are answers.
fn decided(d: Result<Decided, ApiError>) -> Result<Json<Decided>, String> {
    let d = d.map_err(fail)?;
    match &d.decision {
        Decision::Refused { missing } => Err(format!(
            "refused: {}",
            missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        _ => Ok(Json(d)),
    }
}

/// The router is built once per session ([`Tools::new`]), not per call.
#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "module-webhook",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The powernode module supply chain. Validate a manifest \
                 (system_validate_module_manifest), follow its build (list_gitea_workflow_runs), \
                 list the versions the registry pushed (system_list_module_versions), promote one \
                 stage at a time under the policy (system_promote_module_version: live usually \
                 waits for approvals on the commit's pull request), assign the module to a \
                 template (system_assign_module_to_template), then check what instances run \
                 (system_get_instance, system_drift_report) and which of them run a package \
                 (system_list_package_instances). A leaked instance token is replaced with \
                 system_rotate_instance_token, a retired instance removed with \
                 system_delete_instance. With trust_on_first_use = \"confirm\", a module's \
                 first signing identity waits as a proposal (system_list_pins) until an operator \
                 confirms it (system_confirm_pin) or rejects it (system_reject_pin). Every \
                 change is in system_audit_log.",
            )
    }
}
