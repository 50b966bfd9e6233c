//! The fleet verbs tests speak ([`Fleet`]: templates, assignments, instances, their signed
//! states, reports and drift, as the operator and the nodes call them), the raw JSON calls
//! under them (for the tests that mean to send a malformed body or the wrong token), and
//! releasing a module all the way to `live` through a real registry.

use super::{
    OPS_TOKEN, READ_TOKEN, Running,
    release::{Keys, mb},
};
use module_webhook::jobs::reconcile::reconcile;
use powernode_module::desired_state::{self, DesiredState, Envelope};
use powernode_testkit::registry::TestRegistry;
use serde_json::{Value, json};
use std::path::Path;

impl Running {
    /// This receiver's fleet, spoken in the fleet's verbs.
    pub fn fleet(&self) -> Fleet<'_> {
        Fleet { r: self }
    }
}

/// A receiver's fleet API in domain verbs (after rust-lang/bors' `BorsTester`): the operator
/// creates templates and assigns modules, registers instances; a node reads its signed state
/// and reports; anyone with the read role asks for drift. Verbs that can only succeed in a
/// test's story assert it and return what the story goes on with; the others return the
/// status and the answer for the test to judge.
pub struct Fleet<'a> {
    r: &'a Running,
}

impl Fleet<'_> {
    /// The operator creates template `id` for `platform` (no modules yet).
    pub async fn create_template(&self, id: &str, platform: &str) -> (u16, Value) {
        let body = json!({"id": id, "platform": platform});
        post(self.r, "/templates", OPS_TOKEN, body).await
    }

    /// The operator creates template `id` for `platform` with a `description`.
    pub async fn create_described_template(
        &self,
        id: &str,
        platform: &str,
        description: &str,
    ) -> (u16, Value) {
        let body = json!({"id": id, "platform": platform, "description": description});
        post(self.r, "/templates", OPS_TOKEN, body).await
    }

    /// The operator assigns `module` to `template`, optionally held to a semver
    /// `requirement` (re-assigning changes the requirement); the answer has the new state.
    pub async fn assign(
        &self,
        template: &str,
        module: &str,
        requirement: Option<&str>,
    ) -> (u16, Value) {
        let mut body = json!({"module_name": module});
        if let Some(req) = requirement {
            body["requirement"] = json!(req);
        }
        let path = format!("/templates/{template}/assignments");
        post(self.r, &path, OPS_TOKEN, body).await
    }

    /// The operator takes `module` off `template`.
    pub async fn unassign(&self, template: &str, module: &str) -> (u16, Value) {
        let path = format!("/templates/{template}/assignments/{module}");
        let (s, v, _) = call(self.r, reqwest::Method::DELETE, &path, OPS_TOKEN, None, &[]).await;
        (s, v)
    }

    /// Template `id` as the read role sees it (its served state, last computation, degraded
    /// mode); it must exist.
    pub async fn template(&self, id: &str) -> Value {
        let (s, t) = self
            .r
            .get(&format!("/api/v1/templates/{id}"), Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "template {id}: {t}");
        t["template"].clone()
    }

    /// The actions of template `id`'s audit trail, oldest first.
    pub async fn template_audit(&self, id: &str) -> Vec<String> {
        let (s, a) = self
            .r
            .get(&format!("/api/v1/templates/{id}/audit"), Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "template {id}'s audit: {a}");
        a["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["action"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The operator registers instance `id` on `template`; returns its token (shown once).
    pub async fn register(&self, id: &str, template: &str) -> String {
        let body = json!({"id": id, "template_id": template});
        let (s, v) = post(self.r, "/instances", OPS_TOKEN, body).await;
        assert_eq!(s, 201, "registering {id}: {v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Instance `id` as the read role sees it (template, last report); it must exist.
    pub async fn instance(&self, id: &str) -> Value {
        let (s, v) = self
            .r
            .get(&format!("/api/v1/instances/{id}"), Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "instance {id}: {v}");
        v["instance"].clone()
    }

    /// Node `instance` reads its desired state with its `token` and verifies it with the
    /// receiver's published key, as a node would; the ETag must be the state id. Returns
    /// `(state_id, document)`.
    pub async fn signed_state(&self, instance: &str, token: &str) -> (String, DesiredState) {
        let path = format!("/instances/{instance}/desired-state");
        let (s, envelope, h) = call(self.r, reqwest::Method::GET, &path, token, None, &[]).await;
        assert_eq!(s, 200, "{instance}'s desired state: {envelope}");
        let envelope: Envelope = serde_json::from_value(envelope).unwrap();
        let (doc, id) = desired_state::verify(&envelope, &self.signing_key().await).unwrap();
        assert_eq!(
            h.get("etag").unwrap().to_str().unwrap(),
            format!("\"{id}\""),
            "the ETag is the state id"
        );
        (id.to_string(), doc)
    }

    /// The receiver's published signing key, as a node fetches it.
    pub async fn signing_key(&self) -> sigstore::crypto::CosignVerificationKey {
        let (s, pem) = self.r.get("/api/v1/signing-key", None).await;
        assert_eq!(s, 200, "{pem}");
        powernode_module::trust::keys::public_from_pem(pem.as_str().unwrap().as_bytes()).unwrap()
    }

    /// Node `instance` polls with its `token`, naming the state it has (`If-None-Match`):
    /// the status (304 while that state is served) and the ETag of the served one.
    pub async fn poll(&self, instance: &str, token: &str, state_id: &str) -> (u16, String) {
        let path = format!("/instances/{instance}/desired-state");
        let etag = format!("\"{state_id}\"");
        let headers = [("If-None-Match", etag.as_str())];
        let (s, _, h) = call(self.r, reqwest::Method::GET, &path, token, None, &headers).await;
        let served = h["etag"].to_str().unwrap().trim_matches('"').to_owned();
        (s, served)
    }

    /// Node `instance` sends the report `body` with its `token`.
    pub async fn report(&self, instance: &str, token: &str, body: Value) -> (u16, Value) {
        let path = format!("/instances/{instance}/report");
        post(self.r, &path, token, body).await
    }

    /// Node `instance` reports it applied `state_id` (signed document `doc`) exactly.
    pub async fn report_applied(
        &self,
        instance: &str,
        token: &str,
        state_id: &str,
        doc: &DesiredState,
    ) {
        report_signed_state(self.r, instance, token, state_id, doc).await;
    }

    /// Instance `id`'s drift, as judged now; it must exist.
    pub async fn drift(&self, id: &str) -> Value {
        let (s, v) = self
            .r
            .get(&format!("/api/v1/instances/{id}/drift"), Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "{id}'s drift: {v}");
        v
    }

    /// The fleet summary of `template`'s instances: counts, and the first page of the
    /// drifting ones.
    pub async fn drift_summary(&self, template: &str) -> (u16, Value) {
        let path = format!("/api/v1/drift?template={template}");
        self.r.get(&path, Some(READ_TOKEN)).await
    }

    /// A page of `limit` of `template`'s drifting instances, after `cursor`.
    pub async fn drift_page(&self, template: &str, limit: usize, cursor: Option<&str>) -> Value {
        let mut path = format!("/api/v1/drift?template={template}&limit={limit}");
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, v) = self.r.get(&path, Some(READ_TOKEN)).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    /// The operator yanks `version` (the emergency switch) and the fleet follows: the
    /// templates are recomputed before this returns.
    pub async fn yank(&self, version: &str, reason: &str) {
        let path = format!("/versions/{version}/yank");
        let (s, v) = post(self.r, &path, OPS_TOKEN, json!({"reason": reason})).await;
        assert_eq!(s, 200, "yanking {version}: {v}");
        self.r.app.drain().await.unwrap();
    }

    /// Every template is recomputed (the job a restart or a key change queues), and the
    /// queue runs dry.
    pub async fn recompute(&self) {
        let store = &self.r.app.state.store;
        store
            .enqueue(&module_webhook::fleet::recompute_job())
            .await
            .unwrap();
        self.r.app.drain().await.unwrap();
    }

    /// An author asks (read role) whether `manifest_yaml` of `category` is valid, and, with
    /// `template`, whether it composes with what that template serves.
    pub async fn validate(
        &self,
        manifest_yaml: &str,
        category: &str,
        template: Option<&str>,
    ) -> (u16, Value) {
        let mut body = json!({"manifest_yaml": manifest_yaml, "category_slug": category});
        if let Some(t) = template {
            body["template_id"] = json!(t);
        }
        post(self.r, "/validate", READ_TOKEN, body).await
    }
}

pub fn repo(name: &str) -> String {
    format!("acct/modules/{name}-module")
}

pub async fn call(
    r: &Running,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = r
        .http
        .request(method, format!("{}/api/v1{path}", r.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        h,
    )
}

pub async fn post(r: &Running, path: &str, token: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = call(r, reqwest::Method::POST, path, token, Some(body), &[]).await;
    (s, v)
}

/// Releases `name` at `version` (signed) and ingests it: a draft. Returns its id.
pub async fn release_draft(
    r: &Running,
    reg: &TestRegistry,
    k: &Keys,
    dir: &Path,
    name: &str,
    version: &str,
) -> String {
    mb(
        &[
            "release",
            "--ref",
            &reg.repo(&repo(name)),
            "--version",
            version,
        ],
        Some(dir),
        Some(&k.key),
    );
    reconcile(&r.app.worker.ctx).await.unwrap();
    r.app.drain().await.unwrap();
    format!("v-{name}-{version}")
}

/// Releases `name` at `version` (signed), ingests it and promotes it to live.
pub async fn release_live(
    r: &Running,
    reg: &TestRegistry,
    k: &Keys,
    dir: &Path,
    name: &str,
    version: &str,
) -> String {
    let id = release_draft(r, reg, k, dir, name, version).await;
    promote_through(r, &id, &["staging", "blessed", "live"]).await;
    r.app.drain().await.unwrap();
    id
}

/// Promotes version `id` through `stages`, in order, as the operator; each step answers 200.
pub async fn promote_through(r: &Running, id: &str, stages: &[&str]) {
    for to in stages {
        let (s, v) = post(
            r,
            &format!("/versions/{id}/promote"),
            OPS_TOKEN,
            json!({"to": to}),
        )
        .await;
        assert_eq!(s, 200, "{id} → {to}: {v}");
    }
}

/// Promotes a draft through staging and blessed (the last step, to live, is the caller's).
pub async fn bless(r: &Running, id: &str) {
    promote_through(r, id, &["staging", "blessed"]).await;
}

/// Reports, as instance `instance` with its `token`, exactly what the signed state `doc`
/// (`state_id`) says: every module at its composefs digest, the merged digest, `applied`.
pub async fn report_signed_state(
    r: &Running,
    instance: &str,
    token: &str,
    state_id: &str,
    doc: &DesiredState,
) {
    let (s, v) = report_observed(r, instance, token, state_id, doc, json!({})).await;
    assert_eq!(s, 200, "{v}");
}

/// As [`report_signed_state`], with what the node observed of its modules' packages and
/// units (`{module: {packages: {name: version | null}, units: {unit: state}}}`); returns
/// the receiver's answer.
pub async fn report_observed(
    r: &Running,
    instance: &str,
    token: &str,
    state_id: &str,
    doc: &DesiredState,
    modules: Value,
) -> (u16, Value) {
    let running: serde_json::Map<String, Value> = doc
        .modules
        .iter()
        .map(|m| (m.name.clone(), json!(m.composefs_digest.to_string())))
        .collect();
    let mut body = json!({
        "desired_state_id": state_id,
        "running_module_digests": running,
        "composefs_digest": doc.composefs_digest.to_string(),
        "status": "applied",
        "message": "applied generation 1",
        "state_bytes": 4_200_000_u64,
    });
    if modules.as_object().is_some_and(|m| !m.is_empty()) {
        body["modules"] = modules;
    }
    post(r, &format!("/instances/{instance}/report"), token, body).await
}

/// Instance `instance`'s desired state, read with its `token` and verified with the
/// receiver's published key, as a node would: `(state_id, document)` (see
/// [`Fleet::signed_state`]).
pub async fn signed_state_of(r: &Running, instance: &str, token: &str) -> (String, DesiredState) {
    r.fleet().signed_state(instance, token).await
}

/// Creates template `id` (platform `test`) with `modules` assigned (newest live versions);
/// any refusal fails the test.
pub async fn template_with(r: &Running, id: &str, modules: &[&str]) {
    let fleet = r.fleet();
    let (s, v) = fleet.create_template(id, "test").await;
    assert_eq!(s, 201, "template {id}: {v}");
    for m in modules {
        let (s, v) = fleet.assign(id, m, None).await;
        assert_eq!(s, 200, "assigning {m} to {id}: {v}");
    }
}

/// Registers instance `id` on `template`; the token it is shown once (see
/// [`Fleet::register`]).
pub async fn register(r: &Running, id: &str, template: &str) -> String {
    r.fleet().register(id, template).await
}

/// A new receiver signing key in `dir`: the private key file (mode 0600, as the receiver
/// requires) and the public PEM.
pub fn signing_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let pair = sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap()
        .to_sigstore_keypair()
        .unwrap();
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap()
        .write_all(pair.private_key_to_pem().unwrap().as_bytes())
        .unwrap();
    (path, pair.public_key_to_pem().unwrap())
}
