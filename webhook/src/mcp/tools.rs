//! The tools: the walkthrough's names, argument names and answer shapes. Each tool
//! authenticates (the bearer token in the request's headers, `Extension<http::request::Parts>`,
//! checked with the same `require` and role as the REST route), then calls the same service
//! function as the REST handler (`fleet`, `promotion`, `catalogue`) with the API's argument
//! types, and answers. A service's refusal becomes a tool error (`isError`, the API's code and
//! message); so does a refused promotion. A pending one is an answer: `decision.outcome =
//! "pending"` with exactly what is missing, as a `/promote` comment would be told.

mod pins;

use crate::{
    api::{instances, packages, templates, validate, versions, workflow_runs},
    catalogue,
    config::{Caller, Role},
    error::ServiceError,
    http::{ApiError, AppState, auth::require},
    lifecycle::Request,
    promotion::{Decided, Decision},
    store::{AuditRow, InstanceId, Lifecycle, TemplateId, VersionId, Via},
};
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

/// `system_list_module_versions`: the module, and the API's query.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListVersionsArgs {
    /// The module's name (`my-redis`).
    pub module_name: String,
    #[serde(flatten)]
    pub query: versions::ListQuery,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct VersionArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
}

/// `system_promote_module_version`: the version, and the API's body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PromoteArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
    #[serde(flatten)]
    pub body: versions::PromoteBody,
}

/// `system_yank_module_version`: the version, and the API's body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct YankArgs {
    /// The version's id (`v-my-redis-0.1.0`).
    pub id: String,
    #[serde(flatten)]
    pub body: versions::YankBody,
}

/// `system_assign_module_to_template`: the template and the API's assignment fields (which
/// refuses unknown fields, so it cannot be flattened here; [`AssignArgs::assignment`] is the
/// one place they meet).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AssignArgs {
    /// The template (`tpl-web`).
    pub template_id: TemplateId,
    /// The module (`my-redis`): its newest live version matching `requirement` is used.
    pub module_name: String,
    /// A SemVer requirement (`^0.1`); any version when absent.
    #[serde(default)]
    pub requirement: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InstanceArgs {
    /// The instance's id.
    pub id: InstanceId,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DriftArgs {
    /// The instance's id.
    pub instance_id: InstanceId,
}

/// `system_list_package_instances`: the package, and the API's query.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PackageArgs {
    /// The Debian package's name (`redis-server`).
    pub package_name: String,
    #[serde(flatten)]
    pub query: packages::PackageQuery,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuditArgs {
    /// A version id (`v-my-redis-0.1.0`) or a template id.
    pub id: String,
}

/// `list_gitea_workflow_runs`: the repository, and the API's query.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunsArgs {
    /// The Gitea owner (user or organisation).
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    #[serde(flatten)]
    pub query: workflow_runs::RunsQuery,
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

impl AssignArgs {
    fn assignment(self) -> (TemplateId, templates::NewAssignment) {
        (
            self.template_id,
            templates::NewAssignment {
                module_name: self.module_name,
                requirement: self.requirement,
            },
        )
    }
}

#[tool_router]
impl Tools {
    pub fn new(s: AppState) -> Tools {
        Tools {
            s,
            tool_router: Self::tool_router() + Self::pin_router(),
        }
    }

    /// The caller of this tool call, if its token has at least the role `need`.
    fn caller(&self, p: &Parts, need: Role) -> Result<Caller, String> {
        require(&self.s, &p.headers, need).map_err(fail)
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
        Parameters(a): Parameters<validate::ValidateBody>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<Report>, String> {
        self.caller(&p, Role::Read)?;
        answered(self.s.fleet.validate(a).await)
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
        self.caller(&p, Role::Read)?;
        answered(catalogue::versions_of(&self.s.store, a.module_name, a.query).await)
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
        self.caller(&p, Role::Read)?;
        let id = VersionId::from(a.id);
        answered(self.s.promotions.version(&id).await.map(Into::into))
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
        let to = a
            .body
            .to
            .parse::<Lifecycle>()
            .map_err(|e| fail(ApiError::bad_request(format!("to: {e}"))))?;
        let caller = self.caller(&p, Role::Operator)?;
        decided(
            self.s
                .promotions
                .request(
                    &caller,
                    Via::Mcp,
                    &VersionId::from(a.id),
                    Request::Promote { to },
                    a.body.reason,
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
        let caller = self.caller(&p, Role::Operator)?;
        let reason = a.body.reason;
        decided(
            self.s
                .promotions
                .request(
                    &caller,
                    Via::Mcp,
                    &VersionId::from(a.id),
                    Request::Yank { reason },
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
        let caller = self.caller(&p, Role::Operator)?;
        let (template, assignment) = a.assignment();
        answered(
            self.s
                .fleet
                .assign(&caller, Via::Mcp, &template, assignment)
                .await,
        )
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
        self.caller(&p, Role::Read)?;
        answered(
            self.s
                .fleet
                .template_views()
                .await
                .map(|templates| templates::Templates { templates }),
        )
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
        self.caller(&p, Role::Read)?;
        answered(self.s.fleet.instance_view(&a.id).await)
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
        let caller = self.caller(&p, Role::Operator)?;
        answered(self.s.fleet.delete_instance(&caller, Via::Mcp, &a.id).await)
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
        let caller = self.caller(&p, Role::Operator)?;
        answered(
            self.s
                .fleet
                .rotate_instance_token(&caller, Via::Mcp, &a.id)
                .await,
        )
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
        self.caller(&p, Role::Read)?;
        answered(self.s.fleet.instance_drift(&a.instance_id).await)
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
        self.caller(&p, Role::Read)?;
        answered(
            self.s
                .fleet
                .package_instances(a.package_name, a.query)
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
        self.caller(&p, Role::Read)?;
        // An audit trail's id names a version or a template; a version's is tried first.
        let version = VersionId::from(a.id.as_str());
        let is_version = match self.s.promotions.version(&version).await {
            Ok(_) => true,
            Err(ServiceError::NotFound(_)) => false,
            Err(e) => return Err(fail(e.into())),
        };
        let (kind, audit) = if is_version {
            (
                "version",
                self.s
                    .store
                    .audit_of(&version)
                    .await
                    .map_err(|e| fail(e.into()))?,
            )
        } else {
            match self
                .s
                .fleet
                .template_audit(&TemplateId::from(a.id.as_str()))
                .await
            {
                Ok(audit) => ("template", audit),
                Err(ServiceError::NotFound(_)) => {
                    return Err(fail(ApiError::not_found(format!(
                        "no version or template {}",
                        a.id
                    ))));
                }
                Err(e) => return Err(fail(e.into())),
            }
        };
        Ok(Json(AuditLog {
            id: a.id,
            kind,
            audit,
        }))
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
        self.caller(&p, Role::Read)?;
        answered(
            self.s
                .promotions
                .workflow_runs(a.owner, a.repo, a.query)
                .await,
        )
    }
}

/// A service's answer as a tool's: the typed body (structured content), or a tool error
/// with the API's code and message.
fn answered<T, E: Into<ApiError>>(r: Result<T, E>) -> Result<Json<T>, String> {
    r.map(Json).map_err(|e| fail(e.into()))
}

/// A refused decision is a tool error naming why; done and pending are answers.
fn decided(d: Result<Decided, ServiceError>) -> Result<Json<Decided>, String> {
    let d = d.map_err(|e| fail(e.into()))?;
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
