//! The route table of `/api/v1`: one entry per route, with its handler and the types it
//! takes and answers. `api::router` mounts the handlers from it and `super` renders the same
//! entries into the document, so a route cannot be served without being described.

use super::{Auth, Gen, Operation, op};
use crate::api::{
    dead_letters, instances, modules, packages, pins, signing_keys, templates, validate, versions,
    workflow_runs,
};
use powernode_module::{desired_state, diagnostics};

const READ: Auth = Auth::Token("read");
const OPERATOR: Auth = Auth::Token("operator");

/// Every route of `/api/v1`, with its types.
pub(super) fn operations(g: &mut Gen) -> Vec<Operation> {
    let not_now = g.answers.subschema_for::<versions::NotNow>();
    let envelope = g.answer::<desired_state::Envelope>();
    vec![
        op(
            "get",
            "/modules",
            modules::list,
            "The configured modules and how many versions each has",
            READ,
            (200, "the modules", g.answer::<modules::Modules>()),
        ),
        op(
            "get",
            "/modules/{name}/versions",
            versions::of_module,
            "A module's versions, oldest first, paginated (light: no file index)",
            READ,
            (200, "a page of versions", g.answer::<versions::Versions>()),
        )
        .query(g.request::<versions::ListQuery>()),
        op(
            "get",
            "/versions/{id}",
            versions::get,
            "A version's full record (manifest, file index, signer)",
            READ,
            (200, "the version", g.answer::<versions::VersionView>()),
        ),
        op(
            "get",
            "/versions/{id}/audit",
            versions::audit,
            "A version's audit trail, oldest first",
            READ,
            (200, "the audit rows", g.answer::<versions::Audit>()),
        ),
        Operation {
            extra: vec![(
                409,
                "pending (what is missing) or refused (why)",
                not_now.clone(),
            )],
            ..op(
    "post",
    "/versions/{id}/promote",
    versions::promote,
                "Promote a version one stage under the promotion policy",
                OPERATOR,
                (200, "done", g.answer::<versions::Decided>()),
            )
            .body(g.request::<versions::PromoteBody>())
            .errors(&[(
                503,
                "Gitea, which holds the evidence, did not answer; try again",
            )])
        },
        Operation {
            extra: vec![(409, "refused (why)", not_now)],
            ..op(
    "post",
    "/versions/{id}/yank",
    versions::yank,
                "Yank a version (kept, never served again)",
                OPERATOR,
                (200, "done", g.answer::<versions::Decided>()),
            )
            .body(g.request::<versions::YankBody>())
        },
        op(
            "get",
            "/dead-letters",
            dead_letters::list,
            "Jobs that ran out of attempts",
            READ,
            (
                200,
                "the dead letters",
                g.answer::<dead_letters::DeadLetters>(),
            ),
        ),
        op(
            "post",
            "/dead-letters/{id}/retry",
            dead_letters::retry,
            "Queue a dead letter again",
            OPERATOR,
            (200, "queued again", g.answer::<dead_letters::Requeued>()),
        ),
        op(
            "get",
            "/pins",
            pins::list,
            "First-use pins and proposals (proposed, confirmed, rejected), by module",
            READ,
            (200, "the pins", g.answer::<pins::Pins>()),
        ),
        op(
            "post",
            "/pins/{module}/confirm",
            pins::confirm,
            "Confirm a proposed first-use pin: it becomes the pin and the versions it held are ingested again",
            OPERATOR,
            (200, "confirmed", g.answer::<pins::PinDecided>()),
        )
        .errors(&[
            (404, "the module has no first-use pin or proposal"),
            (409, "the pin is not a proposal (already confirmed or rejected)"),
        ]),
        op(
            "post",
            "/pins/{module}/reject",
            pins::reject,
            "Reject a proposed first-use pin: the versions it held are rejected (pin_rejected)",
            OPERATOR,
            (200, "rejected", g.answer::<pins::PinDecided>()),
        )
        .errors(&[
            (404, "the module has no first-use pin or proposal"),
            (409, "the pin is not a proposal (already confirmed or rejected)"),
        ]),
        op(
            "get",
            "/templates",
            templates::list,
            "Every template with its assignments and served state",
            READ,
            (200, "the templates", g.answer::<templates::Templates>()),
        ),
        op(
            "post",
            "/templates",
            templates::create,
            "Create a template",
            OPERATOR,
            (201, "created", g.answer::<templates::OneTemplate>()),
        )
        .body(g.request::<templates::NewTemplate>())
        .errors(&[(409, "a template with this id exists")]),
        op(
            "get",
            "/templates/{id}",
            templates::get,
            "A template with its assignments, served state and last computation",
            READ,
            (200, "the template", g.answer::<templates::OneTemplate>()),
        ),
        op(
            "post",
            "/templates/{id}/assignments",
            templates::assign,
            "Assign a module (optionally a SemVer requirement) to a template",
            OPERATOR,
            (
                200,
                "assigned; the desired state is recomputed",
                g.answer::<templates::Assigned>(),
            ),
        )
        .body(g.request::<templates::NewAssignment>()),
        op(
            "delete",
            "/templates/{id}/assignments/{module_name}",
            templates::unassign,
            "Remove a module from a template",
            OPERATOR,
            (
                200,
                "removed; the desired state is recomputed",
                g.answer::<templates::Assigned>(),
            ),
        ),
        op(
            "get",
            "/templates/{id}/desired-state",
            templates::desired_state,
            "The template's signed desired state (DSSE); ETag / If-None-Match → 304",
            READ,
            (200, "the envelope", envelope.clone()),
        ),
        op(
            "get",
            "/templates/{id}/audit",
            templates::audit_trail,
            "A template's audit trail",
            READ,
            (200, "the audit rows", g.answer::<templates::Audit>()),
        ),
        Operation {
            content_type: "application/x-pem-file",
            ..op(
    "get",
    "/signing-key",
    crate::api::signing_key,
                "The receiver's current public key (PEM) that signs desired states",
                Auth::Public,
                (200, "the PEM text", None),
            )
        },
        op(
            "get",
            "/signing-keys",
            signing_keys::list,
            "Every key that signs desired states, with its key id (two during a rotation)",
            Auth::Public,
            (200, "the keys", g.answer::<signing_keys::SigningKeys>()),
        ),
        op(
            "post",
            "/instances",
            instances::register,
            "Register an instance of a template; its token is shown once",
            OPERATOR,
            (201, "registered", g.answer::<instances::Registered>()),
        )
        .body(g.request::<instances::NewInstance>())
        .errors(&[
            (404, "no such template"),
            (409, "an instance with this id exists"),
        ]),
        op(
            "get",
            "/instances/{id}",
            instances::get,
            "An instance as last reported: running_module_digests, modules (packages, units), drift",
            READ,
            (200, "the instance", g.answer::<instances::OneInstance>()),
        ),
        op(
            "delete",
            "/instances/{id}",
            instances::delete,
            "Delete an instance: its token stops working on every replica within a second and its reports are refused (audited)",
            OPERATOR,
            (200, "deleted", g.answer::<instances::Deleted>()),
        ),
        op(
            "post",
            "/instances/{id}/token",
            instances::rotate_token,
            "Give an instance a new token, shown once; the old one stops working on every replica within a second (audited)",
            OPERATOR,
            (
                200,
                "the instance and its new token",
                g.answer::<instances::Registered>(),
            ),
        ),
        op(
            "get",
            "/instances/{id}/desired-state",
            instances::desired_state,
            "The instance's signed desired state (its template's); ETag / If-None-Match → 304",
            Auth::Instance,
            (200, "the envelope", envelope),
        ),
        op(
            "post",
            "/instances/{id}/report",
            instances::report,
            "What the instance runs and observes of its modules' packages and units (sent by module-agent; the node's word). The state it names must be one its template served; at most 256 KiB",
            Auth::Instance,
            (200, "accepted", g.answer::<instances::Accepted>()),
        )
        .body(g.request::<desired_state::Report>())
        .body_limit(instances::REPORT_BODY_LIMIT)
        .errors(&[(
            429,
            "over the instance's report budget ([fleet] max_reports per report_window_secs); Retry-After says when to send the next",
        )]),
        op(
            "get",
            "/instances/{id}/drift",
            instances::drift,
            "An instance's drift against its template's served state",
            READ,
            (
                200,
                "the drift report",
                g.answer::<instances::InstanceDrift>(),
            ),
        ),
        op(
            "get",
            "/drift",
            instances::summary,
            "Drift counts over the fleet (or one template) and the drifting instances, paginated",
            READ,
            (200, "the summary", g.answer::<instances::Summary>()),
        )
        .query(g.request::<instances::SummaryQuery>())
        .errors(&[(404, "no such template")]),
        Operation {
            not_found: false,
            ..op(
    "get",
    "/packages/{name}",
    packages::instances,
                "Which instances run a Debian package, at which versions, per module (from their last reports), paginated; an unknown package is an empty list",
                READ,
                (
                    200,
                    "the instances and the version counts",
                    g.answer::<packages::PackageInstances>(),
                ),
            )
            .query(g.request::<packages::PackageQuery>())
        },
        op(
            "post",
            "/validate",
            validate::validate,
            "Validate a manifest and compose it with the live modules (of a template)",
            READ,
            (200, "the findings", g.answer::<diagnostics::Report>()),
        )
        .body(g.request::<validate::ValidateBody>())
        .errors(&[(404, "no such template")]),
        op(
            "get",
            "/repos/{owner}/{repo}/workflow-runs",
            workflow_runs::list,
            "A Gitea repository's newest Actions workflow runs",
            READ,
            (200, "the runs", g.answer::<workflow_runs::Runs>()),
        )
        .query(g.request::<workflow_runs::RunsQuery>())
        .errors(&[(503, "Gitea did not answer; try again")]),
        op(
            "get",
            "/openapi.json",
            super::serve,
            "This document",
            Auth::Public,
            (200, "OpenAPI 3.1", None),
        ),
    ]
}
