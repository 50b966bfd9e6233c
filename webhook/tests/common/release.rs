//! Releasing example modules for real: keys, `module-builder` runs, module copies.

use powernode_testkit::{copy_tree, example, module_builder};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct Keys {
    pub _dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: PathBuf,
}

pub fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(module_builder())
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(dir.path().join("cosign"))
        .env("COSIGN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(o.status.success());
    Keys {
        key: dir.path().join("cosign.key"),
        public: dir.path().join("cosign.pub"),
        _dir: dir,
    }
}

pub fn mb(args: &[&str], dir: Option<&Path>, key: Option<&Path>) -> String {
    let mut c = Command::new(module_builder());
    c.args(args)
        .env("COSIGN_PASSWORD", "pw")
        .env("DOCKER_CONFIG", "/nonexistent")
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(d) = dir {
        c.arg(d);
    }
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "module-builder {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn module(name: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&example(name), t.path());
    t
}
