//! The fleet end to end: real releases into a real registry, ingested and promoted to live;
//! a template gets modules (their dependencies come along), an instance registers, reads its
//! signed desired state and reports; drift follows promotions, yanks and a protected-path
//! collision that must not replace the served state.

mod common;
use common::{fleet::*, release::*, *};
use powernode_module::{
    desired_state::{self, DesiredState, Envelope},
    lifecycle::StagePolicy,
    trust::keys::public_from_pem,
};
use powernode_testkit::registry::TestRegistry;
use rstest::rstest;
use serde_json::{Value, json};
use std::{fs, path::Path};

const MODULES: [&str; 5] = [
    "system-base",
    "security-hardening",
    "my-redis",
    "redis-tuning",
    "rogue",
];

/// A config-variety override of my-redis: replaces its protected redis.conf (allowed for an
/// override module) and masks its `.gitkeep`.
fn redis_tuning(dir: &Path) {
    fs::create_dir_all(dir.join("rootfs/etc/redis")).unwrap();
    fs::write(
        dir.join("manifest.yaml"),
        "schema_version: 1\nidentity:\n  name: redis-tuning\n  category: userland\n  variety: config\n  description: Site tuning for my-redis\nfile_spec:\n  include: [\"/etc/redis/redis.conf\"]\ndependency_spec:\n  - name: my-redis\nmask:\n  - \"/var/lib/redis/.gitkeep\"\n",
    )
    .unwrap();
    fs::write(dir.join("rootfs/etc/redis/redis.conf"), "maxmemory 256mb\n").unwrap();
}

/// A module that ships /etc/fstab, which system-base protects.
fn rogue(dir: &Path) {
    fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    fs::write(
        dir.join("manifest.yaml"),
        "schema_version: 1\nidentity:\n  name: rogue\n  category: userland\n  variety: subscription\n  description: Ships its own fstab\nfile_spec:\n  include: [\"/etc/fstab\"]\ndependency_spec:\n  - name: system-base\n",
    )
    .unwrap();
    fs::write(
        dir.join("rootfs/etc/fstab"),
        "/dev/sda1 / ext4 defaults 0 1\n",
    )
    .unwrap();
}

fn source(name: &str) -> tempfile::TempDir {
    match name {
        "redis-tuning" | "rogue" => {
            let t = tempfile::tempdir().unwrap();
            if name == "rogue" {
                rogue(t.path())
            } else {
                redis_tuning(t.path())
            }
            t
        }
        n => module(n),
    }
}

/// Reads the instance's desired state with its token and verifies it with the receiver's
/// published key, as a node would.
async fn desired(r: &Running, token: &str, key_pem: &str) -> (String, DesiredState) {
    let (s, v, h) = call(
        r,
        reqwest::Method::GET,
        "/instances/node-1/desired-state",
        token,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let envelope: Envelope = serde_json::from_value(v).unwrap();
    let key = public_from_pem(key_pem.as_bytes()).unwrap();
    let (doc, id) = desired_state::verify(&envelope, &key).unwrap();
    assert_eq!(
        h.get("etag").unwrap().to_str().unwrap(),
        format!("\"{id}\""),
        "the ETag is the state id"
    );
    (id.to_string(), doc)
}

async fn report_state(r: &Running, token: &str, id: &str, doc: &DesiredState) {
    report_signed_state(r, "node-1", token, id, doc).await;
}

/// node-1's drift; the fleet summary (which reuses the verdict judged when the report
/// arrived, while it still holds) must say the same.
async fn drift(r: &Running) -> Value {
    let (s, v) = r
        .get("/api/v1/instances/node-1/drift", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, summary) = r.get("/api/v1/drift?template=edge", Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{summary}");
    let listed: Vec<&Value> = summary["drifting"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["id"] == "node-1")
        .collect();
    if v["drift"] == true {
        assert_eq!(
            listed.len(),
            1,
            "the summary lists node-1 as drifting: {summary}"
        );
        assert_eq!(listed[0]["reasons"], v["reasons"], "{summary}");
    } else {
        assert!(
            listed.is_empty(),
            "the summary lists node-1 in sync: {summary}"
        );
    }
    v
}

/// Creates template `id` with no modules; returns the state it serves and its merged
/// composefs digest, as an in-sync report names them.
async fn empty_template(r: &Running, id: &str) -> (Value, Value) {
    let (s, v) = post(
        r,
        "/templates",
        OPS_TOKEN,
        json!({"id": id, "platform": "p"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let st = &v["template"]["desired_state"];
    (
        st["state_id"].clone(),
        st["document"]["composefs_digest"].clone(),
    )
}

fn names(doc: &DesiredState) -> Vec<&str> {
    doc.modules.iter().map(|m| m.name.as_str()).collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn template_desired_state_reports_and_drift_end_to_end(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let reg = TestRegistry::start();
    let k = keys();
    let policies = MODULES
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    let r = serve(cfg).await;
    let (_, key_pem) = r.get("/api/v1/signing-key", None).await;
    let key_pem = key_pem.as_str().unwrap().to_owned();
    assert!(key_pem.contains("BEGIN PUBLIC KEY"), "{key_pem}");

    let sources: Vec<_> = MODULES.iter().map(|m| (*m, source(m))).collect();
    for (name, dir) in &sources[..4] {
        let v = if *name == "my-redis" {
            "0.1.0"
        } else {
            "1.0.0"
        };
        release_live(&r, &reg, &k, dir.path(), name, v).await;
    }

    // A template with my-redis: its dependencies come along, in composition order.
    let (s, v) = post(
        &r,
        "/templates",
        OPS_TOKEN,
        json!({"id": "edge", "platform": "rpi4", "description": "edge nodes"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &r,
        "/templates",
        READ_TOKEN,
        json!({"id": "x", "platform": "p"}),
    )
    .await;
    assert_eq!(s, 403, "templates need the operator role: {v}");
    let (s, v) = post(
        &r,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "my-redis", "requirement": "^0.1"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["message"],
        "Instances built from this template will get my-redis on next reconcile"
    );
    assert_eq!(
        v["desired_state"]["modules"],
        json!(["system-base", "security-hardening", "my-redis"])
    );
    let (s, v) = post(
        &r,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "redis-tuning"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["desired_state"]["blocked"], false, "{v}");
    let codes: Vec<&str> = v["desired_state"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"FILE_SHADOWED"),
        "the override replaces redis.conf: {codes:?}"
    );
    let (s, v) = post(
        &r,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "my-redis", "requirement": "not semver"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // An instance registers, reads its signed state, reports it: no drift.
    let (s, v) = post(
        &r,
        "/instances",
        OPS_TOKEN,
        json!({"id": "node-1", "template_id": "edge"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (first_id, doc) = desired(&r, &token, &key_pem).await;
    assert_eq!(
        names(&doc),
        [
            "system-base",
            "security-hardening",
            "my-redis",
            "redis-tuning"
        ]
    );
    assert_eq!(doc.modules[2].version, "0.1.0");
    assert!(doc.modules[2].reference.ends_with(&format!(
        "{}@{}",
        repo("my-redis"),
        doc.modules[2].manifest_digest
    )));
    assert!(
        !doc.modules[2].signer.keys.is_empty(),
        "the pinned signer travels with the module"
    );
    let (s, _, _) = call(
        &r,
        reqwest::Method::GET,
        "/instances/node-1/desired-state",
        &token,
        None,
        &[("If-None-Match", &format!("\"{first_id}\""))],
    )
    .await;
    assert_eq!(s, 304);
    let (s, _, _) = call(
        &r,
        reqwest::Method::GET,
        "/instances/node-1/desired-state",
        "pni_wrong",
        None,
        &[],
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &r,
        "/templates",
        &token,
        json!({"id": "y", "platform": "p"}),
    )
    .await;
    assert_eq!(s, 401, "an instance token can do nothing else");
    let v = drift(&r).await;
    assert_eq!(v["drift"], true, "never reported: {v}");
    assert_eq!(v["stale"], true);
    report_state(&r, &token, &first_id, &doc).await;
    let v = drift(&r).await;
    assert_eq!(v["drift"], false, "{v}");
    let (s, v) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    assert_eq!(s, 200);
    assert_eq!(v["instance"]["template_id"], "edge");
    assert_eq!(
        v["instance"]["running_module_digests"]["my-redis"],
        doc.modules[2].composefs_digest.to_string()
    );
    assert_eq!(v["instance"]["status"], "applied");

    // A newer my-redis goes live: the state moves on, the instance is outdated.
    let (_, redis) = &sources[2];
    // (a new file: redis.conf itself is replaced by the override, so changing it would
    // change the module's digest but not the merged tree's)
    fs::write(
        redis.path().join("rootfs/etc/redis/extra.conf"),
        "maxclients 100\n",
    )
    .unwrap();
    let (s, _) = post(
        &r,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "my-redis", "requirement": "<1"}),
    )
    .await;
    assert_eq!(s, 200);
    let newer = release_live(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    let (second_id, doc2) = desired(&r, &token, &key_pem).await;
    assert_ne!(second_id, first_id);
    assert_eq!(doc2.modules[2].version, "0.2.0");
    let v = drift(&r).await;
    assert_eq!(v["drift"], true);
    assert_eq!(v["outdated"][0]["module"], "my-redis", "{v}");
    assert_eq!(
        v["outdated"][0]["running"],
        doc.modules[2].composefs_digest.to_string()
    );
    assert_eq!(
        v["outdated"][0]["desired"],
        doc2.modules[2].composefs_digest.to_string()
    );
    assert_eq!(v["composefs_mismatch"], true);

    // Yanked: the desired state falls back to 0.1.0, the very state the node runs.
    let (s, v) = post(
        &r,
        &format!("/versions/{newer}/yank"),
        OPS_TOKEN,
        json!({"reason": "CVE"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    r.app.drain().await.unwrap();
    let (third_id, doc3) = desired(&r, &token, &key_pem).await;
    assert_eq!(
        doc3.content_id(),
        doc.content_id(),
        "the same modules as the first state"
    );
    assert!(
        doc3.sequence > doc2.sequence && doc2.sequence > doc.sequence,
        "a new state, later in the sequence: {} {} {}",
        doc.sequence,
        doc2.sequence,
        doc3.sequence
    );
    // The instance still runs the first state's modules: nothing is outdated.
    report_state(&r, &token, &third_id, &doc3).await;
    assert_eq!(drift(&r).await["drift"], false);

    // A module that ships a path system-base protects: the state is not replaced.
    let (_, rogue_dir) = &sources[4];
    release_live(&r, &reg, &k, rogue_dir.path(), "rogue", "1.0.0").await;
    let (s, v) = post(
        &r,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "rogue"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["desired_state"]["blocked"], true, "{v}");
    assert_eq!(
        v["desired_state"]["state_id"],
        third_id.as_str(),
        "the served state stays"
    );
    let conflict = &v["desired_state"]["conflicts"][0];
    assert_eq!(conflict["code"], "PROTECTED_OVERRIDDEN", "{v}");
    assert!(
        conflict["message"].as_str().unwrap().contains("/etc/fstab"),
        "{conflict}"
    );
    let (fourth_id, _) = desired(&r, &token, &key_pem).await;
    assert_eq!(fourth_id, third_id);
    let (_, t) = r.get("/api/v1/templates/edge", Some(READ_TOKEN)).await;
    assert_eq!(t["template"]["last_computation"]["blocked"], true, "{t}");
    assert_eq!(
        t["template"]["desired_state"]["state_id"],
        third_id.as_str()
    );
    let (_, a) = r
        .get("/api/v1/templates/edge/audit", Some(READ_TOKEN))
        .await;
    let actions: Vec<&str> = a["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["action"].as_str().unwrap())
        .collect();
    for want in [
        "template_created",
        "module_assigned",
        "desired_state_changed",
        "desired_state_blocked",
        "instance_registered",
    ] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }

    // The walkthrough's validate: the collision shows before anything is pushed.
    let (s, v) = post(&r, "/validate", READ_TOKEN, json!({
        "manifest_yaml": fs::read_to_string(rogue_dir.path().join("manifest.yaml")).unwrap().replace("name: rogue", "name: rogue2"),
        "category_slug": "userland",
        "template_id": "edge",
    })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert!(
        v["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "PROTECTED_OVERRIDDEN"),
        "{v}"
    );
    let (s, v) = post(
        &r,
        "/validate",
        READ_TOKEN,
        json!({
            "manifest_yaml": fs::read_to_string(sources[2].1.path().join("manifest.yaml")).unwrap(),
            "category_slug": "userland",
        }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["valid"], true, "{v}");

    // The same check from an author's machine: module-builder validate --against.
    let (url, dir) = (r.url.clone(), rogue_dir.path().to_owned());
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(powernode_testkit::module_builder())
            .args([
                "validate",
                "--format",
                "json",
                "--against",
                &url,
                "--template",
                "edge",
            ])
            .arg(&dir)
            .env("POWERNODE_API_TOKEN", READ_TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "PROTECTED_OVERRIDDEN"
                && c["message"].as_str().unwrap().contains("/etc/fstab")),
        "{v}"
    );

    // The walkthrough's version shapes: a light list, paginated, and the full record.
    let (s, v) = r
        .get(
            "/api/v1/modules/my-redis/versions?limit=1",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let first = &v["versions"][0];
    assert_eq!(first["version_string"], "0.1.0", "{v}");
    assert_eq!(first["lifecycle_state"], "live", "{v}");
    assert!(
        first["composefs_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        first.get("file_index").is_none() && first.get("manifest").is_none(),
        "light: {first}"
    );
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let (_, v) = r
        .get(
            &format!("/api/v1/modules/my-redis/versions?limit=1&cursor={cursor}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(v["versions"][0]["version_string"], "0.2.0", "{v}");
    assert_eq!(v["versions"][0]["lifecycle_state"], "yanked", "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    let (s, _) = r
        .get(
            "/api/v1/modules/my-redis/versions?cursor=bogus",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 400);
    let (_, full) = r
        .get("/api/v1/versions/v-my-redis-0.1.0", Some(READ_TOKEN))
        .await;
    assert_eq!(
        (
            full["version_string"].clone(),
            full["lifecycle_state"].clone()
        ),
        (json!("0.1.0"), json!("live"))
    );
    assert!(
        full["file_index"].is_object(),
        "the full record keeps the index"
    );

    // The fleet summary.
    let (s, v) = r.get("/api/v1/drift?template=edge", Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["counts"]["total"], 1);
    assert_eq!(v["counts"]["in_sync"], 1, "{v}");
}

/// The fleet summary counts every instance and pages through the drifting ones.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn drift_summary_counts_and_pages_the_drifting_instances(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let (state, merged) = empty_template(&r, "empty").await;
    let merged = merged.as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let (s, v) = post(
            &r,
            "/instances",
            OPS_TOKEN,
            json!({"id": format!("n{i}"), "template_id": "empty"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    let report = |composefs: &str, status: &str| json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": composefs, "status": status});
    for (i, token) in tokens.iter().enumerate().take(3) {
        let (s, v) = post(
            &r,
            &format!("/instances/n{i}/report"),
            token,
            report(&merged, "applied"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let other = format!("sha256:{}", "0".repeat(64));
    let (s, _) = post(
        &r,
        "/instances/n3/report",
        &tokens[3],
        report(&other, "failed"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = post(
        &r,
        "/instances/n3/report",
        &tokens[4],
        report(&merged, "applied"),
    )
    .await;
    assert_eq!(
        s, 401,
        "one instance's token cannot report for another: {v}"
    );
    let (s, v) = post(
        &r,
        "/instances/n2/report",
        &tokens[2],
        json!({"desired_state_id": "nope", "running_module_digests": {}, "status": "applied"}),
    )
    .await;
    assert_eq!(s, 400, "a malformed report is refused: {v}");
    assert_eq!(v["error"], "bad_request", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("desired_state_id"),
        "the message names the field: {v}"
    );

    let (s, v) = r
        .get("/api/v1/drift?template=empty&limit=1", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["counts"],
        json!({"total": 5, "in_sync": 3, "drifting": 2, "stale": 1, "failed": 1, "rejected": 0, "never_reported": 1}),
        "{v}"
    );
    assert_eq!(v["drifting"][0]["id"], "n3");
    assert!(
        v["drifting"][0]["reasons"].to_string().contains("failed"),
        "{v}"
    );
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let (_, v) = r
        .get(
            &format!("/api/v1/drift?template=empty&limit=1&cursor={cursor}"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(v["drifting"][0]["id"], "n4", "{v}");
    assert!(
        v["drifting"][0]["reasons"]
            .to_string()
            .contains("never reported"),
        "{v}"
    );
    assert!(v["next_cursor"].is_null(), "{v}");
    let (s, _) = r.get("/api/v1/drift?template=nope", Some(READ_TOKEN)).await;
    assert_eq!(s, 404);
}

/// A live version whose stored index cannot be composed blocks the templates that need it
/// (fail safe, with the reason), and only those.
#[tokio::test(flavor = "multi_thread")]
async fn an_uncomposable_version_blocks_only_its_templates() {
    let db = sqlite().await;
    let k = keys();
    let r = serve(config(
        &db.url,
        "127.0.0.1:1",
        vec![key_policy(
            "my-redis",
            "acct/modules/my-redis-module",
            k.public.clone(),
        )],
    ))
    .await;
    // Written straight into the store, without the file index ingest keeps.
    published(
        &r,
        "0.1.0",
        module_webhook::store::Lifecycle::Live,
        "ab",
        "c0ffee",
    )
    .await;
    for id in ["plain", "redis"] {
        let (s, v) = post(
            &r,
            "/templates",
            OPS_TOKEN,
            json!({"id": id, "platform": "p"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = post(
        &r,
        "/templates/redis/assignments",
        OPS_TOKEN,
        json!({"module_name": "my-redis"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["desired_state"]["blocked"], true, "{v}");
    let conflicts = v["desired_state"]["conflicts"].to_string();
    assert!(
        conflicts.contains("ENTRY_INVALID") && conflicts.contains("no file index"),
        "{conflicts}"
    );
    // The job that recomputes every template still completes, and the other template serves.
    r.app
        .state
        .store
        .enqueue(&module_webhook::fleet::recompute_job())
        .await
        .unwrap();
    r.app.drain().await.unwrap();
    assert!(!has_pending_jobs(&r.app.state.store).await);
    let (_, t) = r.get("/api/v1/templates/plain", Some(READ_TOKEN)).await;
    assert!(
        t["template"]["desired_state"]["state_id"].is_string(),
        "{t}"
    );
    let (_, dead) = r.get("/api/v1/dead-letters", Some(READ_TOKEN)).await;
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{dead}"
    );
}

/// A report is judged when it arrives, and the fleet summary reads that verdict instead of
/// judging the report again, but only while it holds: judged against something else, the
/// instance is judged in full and the new verdict kept; once the report is stale, it is
/// judged in full. (The end-to-end test above checks, at every step, that the summary
/// agrees with the instance's own drift across promotions and yanks.)
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_report_is_judged_when_it_arrives_and_its_verdict_holds_only_while_fresh(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let clock = module_webhook::store::Clock::manual();
    let r = serve_with_clock(config(&db.url, "127.0.0.1:1", vec![]), clock.clone()).await;
    let (state, merged) = empty_template(&r, "t").await;
    let token = register(&r, "n0", "t").await;
    let (s, v) = post(
        &r,
        "/instances/n0/report",
        &token,
        json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": merged, "status": "applied"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let stored = r.app.state.store.verdicts_page(None, "", 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].state,
        Some(module_webhook::store::DriftState::InSync)
    );
    let key = stored[0].judged_against.clone().unwrap();
    assert!(
        key.starts_with(state.as_str().unwrap()),
        "judged against the served state: {key}"
    );

    // Proof that the summary reads the stored word: a verdict changed behind the receiver's
    // back (nothing does that but this test) is what it shows, while it holds.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE instances SET drift_state = 'failed', drift_reasons = '[\"judged earlier\"]' WHERE id = 'n0'")
        .execute(&pool)
        .await
        .unwrap();
    let (_, v) = r.get("/api/v1/drift?template=t", Some(READ_TOKEN)).await;
    assert_eq!(
        v["drifting"][0]["reasons"],
        json!(["judged earlier"]),
        "{v}"
    );

    // Judged against something else (another served state, another yanked set): judged in
    // full again, and that verdict is kept for the next walk.
    sqlx::query("UPDATE instances SET judged_against = 'an older state' WHERE id = 'n0'")
        .execute(&pool)
        .await
        .unwrap();
    let (_, v) = r.get("/api/v1/drift?template=t", Some(READ_TOKEN)).await;
    assert_eq!(v["counts"]["in_sync"], 1, "{v}");
    let mut kept = None;
    for _ in 0..50 {
        let row = r
            .app
            .state
            .store
            .verdicts_page(None, "", 10)
            .await
            .unwrap()
            .remove(0);
        if row.judged_against.as_deref() == Some(key.as_str()) {
            kept = Some(row);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = kept.expect("the re-judged verdict is kept");
    assert_eq!(kept.state, Some(module_webhook::store::DriftState::InSync));
    assert_eq!(kept.reasons, None);

    // Stale: judged in full again, from the report itself.
    clock.advance(std::time::Duration::from_secs(3600));
    let (_, v) = r.get("/api/v1/drift?template=t", Some(READ_TOKEN)).await;
    assert_eq!(v["counts"]["stale"], 1, "{v}");
    let reasons = v["drifting"][0]["reasons"].to_string();
    assert!(
        reasons.contains("no report for") && !reasons.contains("judged earlier"),
        "{v}"
    );
    pool.close().await;
}

/// Many instances reporting at once: each report is recorded (and answered only once it is
/// committed), with its verdict, and they share transactions (group commit).
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reports_share_commits_and_each_is_recorded_with_its_verdict(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let (state, merged) = empty_template(&r, "t").await;
    let mut tokens = Vec::new();
    for i in 0..150 {
        tokens.push(register(&r, &format!("n{i:03}"), "t").await);
    }
    let mut sends = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (http, url) = (r.http.clone(), r.url.clone());
        // Every third instance reports a failed apply.
        let status = if i % 3 == 0 { "failed" } else { "applied" };
        let body = json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": merged, "status": status});
        sends.spawn(async move {
            let res = http
                .post(format!("{url}/api/v1/instances/n{i:03}/report"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (i, res.status().as_u16(), res.text().await.unwrap())
        });
    }
    while let Some(res) = sends.join_next().await {
        let (i, status, body) = res.unwrap();
        assert_eq!(status, 200, "{}: n{i:03}: {body}", db.name);
    }
    let (_, v) = r.get("/api/v1/drift?template=t", Some(READ_TOKEN)).await;
    assert_eq!(
        v["counts"],
        json!({"total": 150, "in_sync": 100, "drifting": 50, "stale": 0, "failed": 50, "rejected": 0, "never_reported": 0}),
        "{}: {v}",
        db.name
    );
    let stored = r
        .app
        .state
        .store
        .verdicts_page(None, "", 200)
        .await
        .unwrap();
    assert_eq!(stored.len(), 150);
    assert!(
        stored
            .iter()
            .all(|v| v.judged_against.is_some() && v.state.is_some()),
        "every report was judged when it arrived"
    );
    let commits = r.counter("module_webhook_report_commits_total").await;
    assert!(
        (1.0..150.0).contains(&commits),
        "{}: 150 reports, {commits} transactions: reports shared commits",
        db.name
    );
}
