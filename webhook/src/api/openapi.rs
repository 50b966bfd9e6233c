//! The route table of `/api/v1` and `GET /api/v1/openapi.json`, the OpenAPI 3.1 document
//! rendered from it: every route is one [`Operation`] (handler, path, auth, request and answer
//! types), so the router (`api::router`) and the document are built from one list.
//!
//! The schemas come from `schemars`, the same derive that gives the MCP tools their input and
//! output schemas, so the two edges cannot describe one type two ways. (The issue suggested
//! `utoipa`; it would be a second derive on every type, kept in step by hand.) OpenAPI 3.1's
//! schema dialect is JSON Schema 2020-12, which is what schemars emits, so the schemas go into
//! `components/schemas` unchanged. [`operations`] (`openapi/operations.rs`) is the table.

mod operations;

use crate::http::AppState;
use axum::{
    Json,
    extract::{DefaultBodyLimit, State},
    handler::Handler,
    routing::{MethodFilter, MethodRouter},
};
use operations::operations;
use schemars::{
    JsonSchema, Schema, SchemaGenerator,
    generate::{Contract, SchemaSettings},
};
use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    /// An API token with at least this role.
    Token(&'static str),
    /// The instance's own token (given once by `POST /instances`).
    Instance,
}

/// One route: its handler, and what the document says of it.
#[derive(Debug)]
pub struct Operation {
    /// The handler, for this method only (`api::router` merges a path's methods).
    pub route: MethodRouter<AppState>,
    pub method: &'static str,
    /// The path under `/api/v1`, in axum's `{param}` form (OpenAPI's too).
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    query: Option<Schema>,
    body: Option<Schema>,
    /// Success status, description and JSON schema (`None`: not JSON; see `content_type`).
    ok: (u16, &'static str, Option<Schema>),
    content_type: &'static str,
    /// Further answers that carry a body of their own shape (409 of a promotion).
    extra: Vec<(u16, &'static str, Schema)>,
    /// Further `{error, message}` answers this route gives (a 409 of a create, a 404 of a
    /// referenced template, a 503 while Gitea is unreachable).
    errors: Vec<(u16, &'static str)>,
    /// Whether an unknown path parameter is a 404 (by default when the path has one; a
    /// package no report names is an empty answer instead).
    not_found: bool,
}

/// Schemas of requests are inlined (they are small, and a request type's optional fields
/// differ from its answer's); answers are shared under `components/schemas`.
struct Gen {
    requests: SchemaGenerator,
    answers: SchemaGenerator,
}

impl Gen {
    fn new() -> Gen {
        let requests = SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
            s.contract = Contract::Deserialize;
        });
        let answers = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.contract = Contract::Serialize;
        });
        Gen {
            requests: requests.into_generator(),
            answers: answers.into_generator(),
        }
    }

    fn request<T: JsonSchema>(&mut self) -> Option<Schema> {
        Some(self.requests.root_schema_for::<T>())
    }

    fn answer<T: JsonSchema>(&mut self) -> Option<Schema> {
        Some(self.answers.subschema_for::<T>())
    }
}

fn op<H, T>(
    method: &'static str,
    path: &'static str,
    handler: H,
    summary: &'static str,
    auth: Auth,
    ok: (u16, &'static str, Option<Schema>),
) -> Operation
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        "delete" => MethodFilter::DELETE,
        "put" => MethodFilter::PUT,
        other => unreachable!("the route table has no {other} routes"),
    };
    Operation {
        route: axum::routing::on(filter, handler),
        method,
        path,
        summary,
        auth,
        query: None,
        body: None,
        ok,
        content_type: "application/json",
        extra: Vec::new(),
        errors: Vec::new(),
        not_found: path.contains('{'),
    }
}

impl Operation {
    fn query(mut self, q: Option<Schema>) -> Self {
        self.query = q;
        self
    }

    fn body(mut self, b: Option<Schema>) -> Self {
        self.body = b;
        self
    }

    fn errors(mut self, e: &[(u16, &'static str)]) -> Self {
        self.errors.extend_from_slice(e);
        self
    }

    /// Bodies of this route may be at most `bytes` (instead of axum's default).
    fn body_limit(mut self, bytes: usize) -> Self {
        self.route = self.route.layer(DefaultBodyLimit::max(bytes));
        self
    }
}

/// Every route of `/api/v1` (the table), for `api::router`.
pub fn routes() -> Vec<Operation> {
    operations(&mut Gen::new())
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "A stable code (`not_found`, `forbidden`, …)"},
            "message": {"type": "string", "description": "What happened and what to do, for a person"}
        }
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn parameters(o: &Operation) -> Vec<Value> {
    let mut out: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            // Gitea names: what `workflow_runs::check_name` accepts.
            let schema = match name {
                "owner" | "repo" => {
                    json!({"type": "string", "pattern": r"^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$"})
                }
                // What `package::valid_name` accepts.
                "name" if o.path.starts_with("/packages/") => {
                    json!({"type": "string", "pattern": super::PACKAGE_PATTERN})
                }
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    if let Some(q) = &o.query {
        let required: Vec<&str> = q
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = q.get("properties").and_then(Value::as_object) {
            for (name, schema) in props {
                let mut p = json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&name.as_str()),
                    "schema": schema,
                });
                if let Some(d) = schema.get("description") {
                    p["description"] = d.clone();
                }
                out.push(p);
            }
        }
    }
    out
}

fn operation(o: &Operation) -> Value {
    let mut responses = Map::new();
    let content = match &o.ok.2 {
        Some(s) => json!({ o.content_type: {"schema": s} }),
        None if o.content_type == "application/json" => json!({"application/json": {}}),
        None => json!({ o.content_type: {"schema": {"type": "string"}} }),
    };
    responses.insert(
        o.ok.0.to_string(),
        json!({"description": o.ok.1, "content": content}),
    );
    for (status, description, schema) in &o.extra {
        responses.insert(
            status.to_string(),
            json!({"description": description, "content": {"application/json": {"schema": schema}}}),
        );
    }
    if o.path.contains("desired-state") {
        responses.insert(
            "304".into(),
            json!({"description": "unchanged since the ETag given in If-None-Match"}),
        );
    }
    if o.query.is_some() || o.body.is_some() || o.path.contains('{') {
        responses.insert(
            "400".into(),
            error_response("a malformed request; the message names the field"),
        );
    }
    if o.body.is_some() {
        responses.insert(
            "413".into(),
            error_response("the body is over the configured limit"),
        );
        responses.insert(
            "415".into(),
            error_response("the body is not sent as application/json"),
        );
    }
    if o.auth != Auth::Public {
        responses.insert("401".into(), error_response("no valid token"));
    }
    if let Auth::Token(role) = o.auth
        && role != "read"
    {
        responses.insert(
            "403".into(),
            error_response("the token's role is below the one this needs"),
        );
    }
    if o.not_found {
        responses.insert("404".into(), error_response("no such resource"));
    }
    for (status, description) in &o.errors {
        responses.insert(status.to_string(), error_response(description));
    }
    let mut v = json!({
        "summary": o.summary,
        "operationId": operation_id(o),
        "responses": responses,
    });
    let params = parameters(o);
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
    }
    if let Some(b) = &o.body {
        v["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": b}}
        });
    }
    v["security"] = match o.auth {
        Auth::Public => json!([]),
        Auth::Token(_) => json!([{"api_token": []}]),
        Auth::Instance => json!([{"instance_token": []}]),
    };
    if let Auth::Token(role) = o.auth {
        v["description"] = json!(format!(
            "Needs an API token with the `{role}` role (or above)."
        ));
    }
    v
}

/// `get /versions/{id}/promote` → `post_versions_id_promote`: unique, stable, readable.
fn operation_id(o: &Operation) -> String {
    let mut id = o.method.to_owned();
    for seg in o.path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.trim_matches(|c| c == '{' || c == '}')
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The whole document.
pub fn document() -> Value {
    let mut g = Gen::new();
    let ops = operations(&mut g);
    let mut paths = Map::new();
    for o in &ops {
        let item = paths
            .entry(format!("/api/v1{}", o.path))
            .or_insert_with(|| json!({}));
        item[o.method] = operation(o);
    }
    let mut schemas = g.answers.take_definitions(true);
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "module-webhook",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The powernode module receiver: versions and their promotion, templates, instances and drift. The same operations are MCP tools at /mcp.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "api_token": {"type": "http", "scheme": "bearer", "description": "A token of `[[api.tokens]]`, with its role (read < operator < break-glass)"},
                "instance_token": {"type": "http", "scheme": "bearer", "description": "An instance's own token, given once by POST /api/v1/instances"}
            }
        }
    })
}

/// `GET /api/v1/openapi.json`: public, like any API description (it holds no data).
pub async fn serve(State(_): State<AppState>) -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_described_once() {
        let doc = document();
        let table = routes();
        assert!(table.len() > 20, "too few routes: {}", table.len());
        let mut seen = BTreeSet::new();
        for o in &table {
            assert!(
                seen.insert((o.path, o.method)),
                "{} {} is in the table twice",
                o.method,
                o.path
            );
            assert!(
                doc["paths"][format!("/api/v1{}", o.path)][o.method].is_object(),
                "{} /api/v1{} is routed but not in the OpenAPI document",
                o.method,
                o.path
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, table.len());
        // The router mounts the same table without panicking on a path given twice.
        let _ = crate::api::router();
    }

    #[test]
    fn every_reference_resolves_and_ids_are_unique() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for o in item.as_object().unwrap().values() {
                assert!(ids.insert(o["operationId"].as_str().unwrap().to_owned()));
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        // The walkthrough's names are in the answers' schemas.
        let summary = &schemas["VersionSummary"]["properties"];
        for f in [
            "id",
            "version_string",
            "lifecycle_state",
            "composefs_digest",
        ] {
            assert!(summary[f].is_object(), "VersionSummary lacks {f}");
        }
    }

    /// The document is published as `docs/openapi.json` (for clients to read and diff); a
    /// change to the API shows up there in review. After an intended change:
    /// `UPDATE_OPENAPI=1 cargo test -p module-webhook --lib openapi`.
    #[test]
    fn the_published_document_is_the_served_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let mut doc = document();
        // The crate version changes with every release; the API does not.
        doc["info"]["version"] = json!("(the receiver's version)");
        let served = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &served).unwrap();
            return;
        }
        let published = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            published == served,
            "docs/openapi.json is not the document the receiver serves; if the change is \
             intended, run: UPDATE_OPENAPI=1 cargo test -p module-webhook --lib openapi"
        );
    }
}
