//! What the agent's integration tests share: a real receiver and registry with the example
//! modules live, a template `edge` with my-redis, one registered instance, and the agent's
//! options for a temporary root.
#![allow(dead_code)]

use crate::common::{fleet::*, release::*, *};
use module_agent::cli::Opts;
use powernode_module::lifecycle::StagePolicy;
use powernode_testkit::registry::TestRegistry;
use std::{fs, path::Path, process::Command};

pub const MODULES: [&str; 3] = ["system-base", "security-hardening", "my-redis"];

pub struct Node {
    pub dir: tempfile::TempDir,
    pub opts: Opts,
}

impl Node {
    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let o = &self.opts;
        Command::new(env!("CARGO_BIN_EXE_module-agent"))
            .args(args)
            .arg("--state-dir")
            .arg(o.state_dir.as_ref().unwrap())
            .arg("--root")
            .arg(o.root.as_ref().unwrap())
            .arg("--no-mount")
            .output()
            .unwrap()
    }
}

/// A receiver with the example modules live, a template `edge` with my-redis and one
/// registered instance; the agent's options for it.
pub async fn setup(
    db: &TestDb,
    packages: bool,
) -> (Running, TestRegistry, Keys, Node, Vec<tempfile::TempDir>) {
    setup_with(db, packages, |_| {}).await
}

/// As [`setup`], with the receiver's configuration changed by `tweak` first.
pub async fn setup_with(
    db: &TestDb,
    packages: bool,
    tweak: impl FnOnce(&mut module_webhook::config::Config),
) -> (Running, TestRegistry, Keys, Node, Vec<tempfile::TempDir>) {
    let reg = TestRegistry::start();
    let k = keys();
    let policies = MODULES
        .iter()
        .map(|m| key_policy(m, &repo(m), k.public.clone()))
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    // The agent's tests are about the agent: the receiver's report budget (its own tests,
    // webhook/tests/report_bounds.rs) stays out of their way.
    cfg.fleet.max_reports = 10_000;
    tweak(&mut cfg);
    let r = serve(cfg).await;
    let mut sources = Vec::new();
    for name in MODULES {
        let dir = module(name);
        if !packages {
            without_packages(dir.path());
        }
        let v = if name == "my-redis" { "0.1.0" } else { "1.0.0" };
        release_live(&r, &reg, &k, dir.path(), name, v).await;
        sources.push(dir);
    }
    template_with(&r, "edge", &["my-redis"]).await;
    let token = register(&r, "node-1", "edge").await;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("token"), token).unwrap();
    let (_, pem) = r.get("/api/v1/signing-key", None).await;
    fs::write(dir.path().join("receiver.pub"), pem.as_str().unwrap()).unwrap();
    let opts = Opts {
        receiver: Some(r.url.clone()),
        instance: Some("node-1".into()),
        token_file: Some(dir.path().join("token")),
        receiver_key: vec![dir.path().join("receiver.pub")],
        root: Some(dir.path().join("root")),
        state_dir: Some(dir.path().join("state")),
        // A temporary root: the images are mounted in agent/tests/mount.rs, which cleans up.
        no_mount: true,
        ..Default::default()
    };
    (r, reg, k, Node { dir, opts }, sources)
}

/// Drops the module's `package_spec`: this root is a directory, not a Debian system, and a
/// state naming packages is refused on it (`packages_are_refused_where_apt_cannot_install`).
pub fn without_packages(dir: &Path) {
    let m = dir.join("manifest.yaml");
    let mut out = String::new();
    let mut skipping = false;
    for line in fs::read_to_string(&m).unwrap().lines() {
        if line.starts_with("package_spec:") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("  - ") {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    fs::write(m, out).unwrap();
}

pub async fn drift(r: &Running) -> serde_json::Value {
    let (s, v) = r
        .get("/api/v1/instances/node-1/drift", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Every path under `dir` (relative) → its mode, owner, and content or link target: what
/// "byte for byte as before" compares.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, (u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let body = if m.is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                stack.push(p.clone());
                Vec::new()
            };
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, (m.mode(), m.uid(), body));
        }
    }
    out
}
