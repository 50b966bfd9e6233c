//! What nodes observe of their modules' Debian packages and systemd units, end to end: two
//! modules that name packages (one pinned) are released for real and assigned to two
//! templates; instances report observations, which are stored and shown, judged by drift
//! (`package_missing`, `package_version`, `unit_failed`), answered by `GET /packages/{name}`
//! across the fleet, and bounded: an oversized or invalid report is refused and changes
//! nothing.

mod common;
use common::{fleet::*, release::*, *};
use powernode_module::lifecycle::StagePolicy;
use powernode_testkit::registry::TestRegistry;
use rstest::rstest;
use serde_json::{Value, json};
use std::{fs, path::Path};

const REDIS: &str = "5:7.0.15-1~deb12u1";
const OLD_REDIS: &str = "5:7.0.11-1";

/// A module that names `packages` and ships one file under `/etc/{name}`.
fn package_module(dir: &Path, name: &str, packages: &[&str]) {
    fs::create_dir_all(dir.join("rootfs/etc").join(name)).unwrap();
    let list: String = packages.iter().map(|p| format!("  - \"{p}\"\n")).collect();
    fs::write(
        dir.join("manifest.yaml"),
        format!(
            "schema_version: 1\nidentity:\n  name: {name}\n  category: userland\n  variety: subscription\n  description: The {name} service\npackage_spec:\n{list}file_spec:\n  include: [\"/etc/{name}/**\"]\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("rootfs/etc").join(name).join("main.conf"),
        "port 6379\n",
    )
    .unwrap();
}

async fn create(r: &Running, path: &str, body: Value) -> Value {
    let (s, v) = post(r, path, OPS_TOKEN, body).await;
    assert!(s == 200 || s == 201, "{path}: {s} {v}");
    v
}

async fn get(r: &Running, path: &str) -> Value {
    let (s, v) = r.get(&format!("/api/v1{path}"), Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

/// kv's observation: both packages at `redis_server` / `redis_tools`, its unit in `unit`.
fn kv(redis_server: Value, redis_tools: Option<Value>, unit: &str) -> Value {
    let mut packages = json!({"redis-server": redis_server});
    if let Some(t) = redis_tools {
        packages["redis-tools"] = t;
    }
    json!({"kv": {"packages": packages, "units": {"kv.service": unit, "kv-backup.timer": "active"}}})
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn observed_packages_and_units_are_stored_judged_and_queried(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let reg = TestRegistry::start();
    let k = keys();
    let policies = ["kv", "web"]
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    let r = serve(cfg).await;

    let kv_dir = tempfile::tempdir().unwrap();
    package_module(
        kv_dir.path(),
        "kv",
        &[&format!("redis-server={REDIS}"), "redis-tools"],
    );
    let web_dir = tempfile::tempdir().unwrap();
    package_module(web_dir.path(), "web", &["nginx", "redis-tools"]);
    release_live(&r, &reg, &k, kv_dir.path(), "kv", "1.0.0").await;
    release_live(&r, &reg, &k, web_dir.path(), "web", "1.0.0").await;
    let mut tokens = Vec::new();
    for (template, module, instance) in [("edge", "kv", "node-1"), ("front", "web", "node-2")] {
        create(&r, "/templates", json!({"id": template, "platform": "p"})).await;
        let v = create(
            &r,
            &format!("/templates/{template}/assignments"),
            json!({"module_name": module}),
        )
        .await;
        assert_eq!(v["desired_state"]["blocked"], false, "{v}");
        let v = create(
            &r,
            "/instances",
            json!({"id": instance, "template_id": template}),
        )
        .await;
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    let (state1, doc1) = signed_state_of(&r, "node-1", &tokens[0]).await;
    assert_eq!(
        doc1.modules[0].packages,
        [format!("redis-server={REDIS}").as_str(), "redis-tools"],
        "the signed state names the module's packages"
    );
    let (state2, doc2) = signed_state_of(&r, "node-2", &tokens[1]).await;
    let report1 = |modules| report_observed(&r, "node-1", &tokens[0], &state1, &doc1, modules);

    // Healthy observations are stored, shown and judged in sync.
    let healthy = kv(json!(REDIS), Some(json!(REDIS)), "active");
    let (s, v) = report1(healthy.clone()).await;
    assert_eq!(s, 200, "{v}");
    let inst = get(&r, "/instances/node-1").await;
    assert_eq!(inst["instance"]["modules"], healthy, "{inst}");
    assert_eq!(inst["instance"]["drift"], false, "{inst}");
    assert_eq!(
        inst["instance"]["state_bytes"], 4_200_000,
        "the state directory's size is kept"
    );
    let d = get(&r, "/instances/node-1/drift").await;
    assert_eq!(d["drift"], false, "{d}");
    for f in ["package_missing", "package_version", "unit_failed"] {
        assert_eq!(d[f], json!([]), "{f}: {d}");
    }
    let summary = get(&r, "/drift?template=edge").await;
    assert_eq!(summary["counts"]["in_sync"], 1, "{summary}");

    // A pinned package at another version, one left out, a failed unit.
    let (s, v) = report1(kv(json!(OLD_REDIS), None, "failed")).await;
    assert_eq!(s, 200, "{v}");
    let d = get(&r, "/instances/node-1/drift").await;
    assert_eq!(d["drift"], true, "{d}");
    assert_eq!(
        d["package_missing"],
        json!([{"module": "kv", "package": "redis-tools"}]),
        "{d}"
    );
    assert_eq!(
        d["package_version"],
        json!([{"module": "kv", "package": "redis-server", "installed": OLD_REDIS, "desired": REDIS}]),
        "{d}"
    );
    assert_eq!(
        d["unit_failed"],
        json!([{"module": "kv", "unit": "kv.service"}]),
        "{d}"
    );
    assert_eq!(
        d["reasons"],
        json!([
            "kv needs redis-tools, which is not installed",
            format!("kv needs redis-server={REDIS} but {OLD_REDIS} is installed"),
            "kv.service of kv has failed",
        ]),
        "{d}"
    );
    let summary = get(&r, "/drift?template=edge").await;
    assert_eq!(summary["counts"]["drifting"], 1, "{summary}");
    assert_eq!(summary["drifting"][0]["reasons"], d["reasons"], "{summary}");
    assert_eq!(
        get(&r, "/instances/node-1").await["instance"]["drift"],
        true
    );

    // Reported not installed is missing too.
    let (s, v) = report1(kv(json!(REDIS), Some(Value::Null), "active")).await;
    assert_eq!(s, 200, "{v}");
    let d = get(&r, "/instances/node-1/drift").await;
    assert_eq!(
        d["reasons"],
        json!(["kv needs redis-tools, which is not installed"]),
        "{d}"
    );

    // Across the fleet: node-2 (another template) runs redis-tools through web.
    let (s, v) = report_observed(
        &r,
        "node-2",
        &tokens[1],
        &state2,
        &doc2,
        json!({"web": {"packages": {"nginx": "1.22.1-9", "redis-tools": OLD_REDIS}, "units": {"nginx.service": "active"}}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let p = get(&r, "/packages/redis-tools").await;
    assert_eq!(
        p,
        json!({
            "package": "redis-tools",
            "instances": [
                {"instance_id": "node-1", "template_id": "edge", "module": "kv", "version": null},
                {"instance_id": "node-2", "template_id": "front", "module": "web", "version": OLD_REDIS},
            ],
            "versions": {OLD_REDIS: 1},
        })
    );
    let (s, v) = report1(healthy.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(get(&r, "/instances/node-1/drift").await["drift"], false);
    let p = get(&r, "/packages/redis-tools?limit=1").await;
    assert_eq!(p["versions"], json!({REDIS: 1, OLD_REDIS: 1}), "{p}");
    assert_eq!(p["instances"][0]["version"], REDIS, "{p}");
    let cursor = p["next_cursor"].as_str().unwrap().to_owned();
    let p = get(
        &r,
        &format!("/packages/redis-tools?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(p["instances"][0]["instance_id"], "node-2", "{p}");
    assert!(p.get("next_cursor").is_none(), "the last page: {p}");
    let p = get(&r, "/packages/nginx").await;
    assert_eq!(p["instances"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["instances"][0]["template_id"], "front", "{p}");
    assert_eq!(
        get(&r, "/packages/no-such-package").await,
        json!({"package": "no-such-package", "instances": [], "versions": {}}),
        "an unknown package is an empty list, not a 404"
    );
    let (s, v) = r.get("/api/v1/packages/Redis", Some(READ_TOKEN)).await;
    assert_eq!((s, &v["error"]), (400, &json!("bad_request")), "{v}");
    let (s, _) = r.get("/api/v1/packages/nginx", None).await;
    assert_eq!(s, 401);

    // An agent that observes nothing: no observations, no package or unit findings.
    let (s, v) = report1(json!({})).await;
    assert_eq!(s, 200, "{v}");
    let inst = get(&r, "/instances/node-1").await;
    assert_eq!(inst["instance"]["modules"], json!({}), "{inst}");
    assert_eq!(inst["instance"]["drift"], false, "{inst}");
    report1(healthy.clone()).await;

    // Refused reports name the field and change nothing.
    let before = get(&r, "/instances/node-1").await;
    let many = |n: usize, f: &dyn Fn(usize) -> (String, Value)| -> Value {
        Value::Object((0..n).map(f).collect())
    };
    let packages = many(257, &|i| (format!("pkg{i}"), json!("1.0")));
    let units = many(65, &|i| (format!("u{i}.service"), json!("active")));
    let modules = many(65, &|i| (format!("m{i}"), json!({})));
    let long_unit = format!("{}.service", "a".repeat(250));
    for (modules, field) in [
        (modules, "modules: at most 64"),
        (json!({"Bad_Name": {}}), "modules: \"Bad_Name\""),
        (
            json!({"kv": {"packages": packages}}),
            "modules.kv.packages: at most 256",
        ),
        (
            json!({"kv": {"units": units}}),
            "modules.kv.units: at most 64",
        ),
        (
            json!({"kv": {"packages": {"Redis": "1.0"}}}),
            "modules.kv.packages: \"Redis\"",
        ),
        (
            json!({"kv": {"packages": {"redis": "latest"}}}),
            "modules.kv.packages.redis: \"latest\"",
        ),
        (
            json!({"kv": {"units": {"kv": "active"}}}),
            "modules.kv.units: \"kv\"",
        ),
        (
            json!({"kv": {"units": {"../kv.service": "active"}}}),
            "modules.kv.units: \"../kv.service\"",
        ),
        (
            json!({"kv": {"units": {long_unit: "active"}}}),
            "modules.kv.units: \"aaaa",
        ),
        (
            json!({"kv": {"units": {"kv.service": "FAILED"}}}),
            "modules.kv.units.kv.service: \"FAILED\"",
        ),
        (json!({"kv": {"files": {}}}), "unknown field `files`"),
    ] {
        let (s, v) = report1(modules).await;
        assert_eq!(s, 400, "{field}: {v}");
        assert_eq!(v["error"], "bad_request", "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(field), "{field:?} in {message:?}");
    }
    assert_eq!(get(&r, "/instances/node-1").await, before, "nothing stored");
}
