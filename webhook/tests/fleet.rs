//! The fleet end to end: real releases into a real registry, ingested and promoted to live;
//! a template gets modules (their dependencies come along), an instance registers, reads its
//! signed desired state and reports; drift follows promotions, yanks and a protected-path
//! collision that must not replace the served state. (Drift across many instances, and the
//! fleet summary's verdicts, are `fleet_drift.rs`.)

mod common;
use common::{fleet::*, release::*, *};
use powernode_module::{desired_state::DesiredState, lifecycle::StagePolicy};
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

/// node-1's drift; the fleet summary (which reuses the verdict judged when the report
/// arrived, while it still holds) must say the same.
async fn drift(r: &Running) -> Value {
    let v = r.fleet().drift("node-1").await;
    let (s, summary) = r.fleet().drift_summary("edge").await;
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
    let fleet = r.fleet();
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
    let (s, v) = fleet
        .create_described_template("edge", "rpi4", "edge nodes")
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
    let (s, v) = fleet.assign("edge", "my-redis", Some("^0.1")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["message"],
        "Instances built from this template will get my-redis on next reconcile"
    );
    assert_eq!(
        v["desired_state"]["modules"],
        json!(["system-base", "security-hardening", "my-redis"])
    );
    let (s, v) = fleet.assign("edge", "redis-tuning", None).await;
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
    let (s, v) = fleet.assign("edge", "my-redis", Some("not semver")).await;
    assert_eq!(s, 400, "{v}");

    // An instance registers, reads its signed state, reports it: no drift.
    let token = fleet.register("node-1", "edge").await;
    let (first_id, doc) = fleet.signed_state("node-1", &token).await;
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
    let (s, served) = fleet.poll("node-1", &token, &first_id).await;
    assert_eq!((s, served), (304, first_id.clone()));
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
    fleet
        .report_applied("node-1", &token, &first_id, &doc)
        .await;
    let v = drift(&r).await;
    assert_eq!(v["drift"], false, "{v}");
    let node = fleet.instance("node-1").await;
    assert_eq!(node["template_id"], "edge");
    assert_eq!(
        node["running_module_digests"]["my-redis"],
        doc.modules[2].composefs_digest.to_string()
    );
    assert_eq!(node["status"], "applied");

    // A newer my-redis goes live: the state moves on, the instance is outdated.
    let (_, redis) = &sources[2];
    // (a new file: redis.conf itself is replaced by the override, so changing it would
    // change the module's digest but not the merged tree's)
    fs::write(
        redis.path().join("rootfs/etc/redis/extra.conf"),
        "maxclients 100\n",
    )
    .unwrap();
    let (s, v) = fleet.assign("edge", "my-redis", Some("<1")).await;
    assert_eq!(s, 200, "{v}");
    let newer = release_live(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    let (second_id, doc2) = fleet.signed_state("node-1", &token).await;
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
    fleet.yank(&newer, "CVE").await;
    let (third_id, doc3) = fleet.signed_state("node-1", &token).await;
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
    fleet
        .report_applied("node-1", &token, &third_id, &doc3)
        .await;
    assert_eq!(drift(&r).await["drift"], false);

    // A module that ships a path system-base protects: the state is not replaced.
    let (_, rogue_dir) = &sources[4];
    release_live(&r, &reg, &k, rogue_dir.path(), "rogue", "1.0.0").await;
    let (s, v) = fleet.assign("edge", "rogue", None).await;
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
    let (fourth_id, _) = fleet.signed_state("node-1", &token).await;
    assert_eq!(fourth_id, third_id);
    let t = fleet.template("edge").await;
    assert_eq!(t["last_computation"]["blocked"], true, "{t}");
    assert_eq!(t["desired_state"]["state_id"], third_id.as_str());
    let actions = fleet.template_audit("edge").await;
    for want in [
        "template_created",
        "module_assigned",
        "desired_state_changed",
        "desired_state_blocked",
        "instance_registered",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }

    // The walkthrough's validate: the collision shows before anything is pushed.
    let rogue2 = fs::read_to_string(rogue_dir.path().join("manifest.yaml"))
        .unwrap()
        .replace("name: rogue", "name: rogue2");
    let (s, v) = fleet.validate(&rogue2, "userland", Some("edge")).await;
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
    let redis = fs::read_to_string(sources[2].1.path().join("manifest.yaml")).unwrap();
    let (s, v) = fleet.validate(&redis, "userland", None).await;
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
    let (s, v) = fleet.drift_summary("edge").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["counts"]["total"], 1);
    assert_eq!(v["counts"]["in_sync"], 1, "{v}");
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
    let fleet = r.fleet();
    for id in ["plain", "redis"] {
        let (s, v) = fleet.create_template(id, "p").await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = fleet.assign("redis", "my-redis", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["desired_state"]["blocked"], true, "{v}");
    let conflicts = v["desired_state"]["conflicts"].to_string();
    assert!(
        conflicts.contains("ENTRY_INVALID") && conflicts.contains("no file index"),
        "{conflicts}"
    );
    // The job that recomputes every template still completes, and the other template serves.
    fleet.recompute().await;
    assert!(!has_pending_jobs(&r.app.state.store).await);
    let t = fleet.template("plain").await;
    assert!(t["desired_state"]["state_id"].is_string(), "{t}");
    let (_, dead) = r.get("/api/v1/dead-letters", Some(READ_TOKEN)).await;
    assert_eq!(
        dead["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{dead}"
    );
}
