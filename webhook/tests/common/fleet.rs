//! The fleet verbs tests speak: JSON calls to the API, and releasing a module all the way
//! to `live` through a real registry.

use super::{
    OPS_TOKEN, Running,
    release::{Keys, mb},
};
use module_webhook::jobs::reconcile::reconcile;
use powernode_testkit::registry::TestRegistry;
use serde_json::{Value, json};
use std::path::Path;

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
    for to in ["staging", "blessed", "live"] {
        let (s, v) = post(
            r,
            &format!("/versions/{id}/promote"),
            OPS_TOKEN,
            json!({"to": to}),
        )
        .await;
        assert_eq!(s, 200, "{id} → {to}: {v}");
    }
    r.app.drain().await.unwrap();
    id
}

/// Reports, as instance `instance` with its `token`, exactly what the signed state `doc`
/// (`state_id`) says: every module at its composefs digest, the merged digest, `applied`.
pub async fn report_signed_state(
    r: &Running,
    instance: &str,
    token: &str,
    state_id: &str,
    doc: &powernode_module::desired_state::DesiredState,
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
    doc: &powernode_module::desired_state::DesiredState,
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
/// receiver's published key, as a node would: `(state_id, document)`.
pub async fn signed_state_of(
    r: &Running,
    instance: &str,
    token: &str,
) -> (String, powernode_module::desired_state::DesiredState) {
    let (s, envelope, _) = call(
        r,
        reqwest::Method::GET,
        &format!("/instances/{instance}/desired-state"),
        token,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{envelope}");
    let (_, pem) = r.get("/api/v1/signing-key", None).await;
    let key =
        powernode_module::trust::keys::public_from_pem(pem.as_str().unwrap().as_bytes()).unwrap();
    let (doc, id) =
        powernode_module::desired_state::verify(&serde_json::from_value(envelope).unwrap(), &key)
            .unwrap();
    (id.to_string(), doc)
}

/// Creates template `id` (platform `test`) with `modules` assigned (newest live versions);
/// any refusal fails the test.
pub async fn template_with(r: &Running, id: &str, modules: &[&str]) {
    let (s, v) = post(
        r,
        "/templates",
        OPS_TOKEN,
        json!({"id": id, "platform": "test"}),
    )
    .await;
    assert_eq!(s, 201, "template {id}: {v}");
    for m in modules {
        let path = format!("/templates/{id}/assignments");
        let (s, v) = post(r, &path, OPS_TOKEN, json!({"module_name": m})).await;
        assert_eq!(s, 200, "assigning {m} to {id}: {v}");
    }
}

/// Registers instance `id` on `template`; the token it is shown once.
pub async fn register(r: &Running, id: &str, template: &str) -> String {
    let (s, v) = post(
        r,
        "/instances",
        OPS_TOKEN,
        json!({"id": id, "template_id": template}),
    )
    .await;
    assert_eq!(s, 201, "registering {id}: {v}");
    v["token"].as_str().unwrap().to_owned()
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
