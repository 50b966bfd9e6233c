//! Test support shared by the workspace's integration tests.
//!
//! - [`registry::TestRegistry`]: Debian's `docker-registry` on a free loopback port;
//! - [`http::Server`]: a small HTTP/1.1 server for stand-ins, recording every request;
//! - [`proxy::FaultProxy`]: a TCP proxy in front of a real server that can answer 5xx for a while;
//! - [`sigstore`]: a test certificate authority acting as Fulcio, and a Rekor stand-in;
//! - [`node::Node`]: a real Debian node (mmdebstrap root, booted with systemd-nspawn);
//! - `browser::Browser` (feature `browser`): headless Debian Chromium over WebDriver.

#![allow(missing_debug_implementations)]

#[cfg(feature = "browser")]
pub mod browser;
pub mod gitea;
pub mod http;
pub mod node;
pub mod proxy;
pub mod registry;
pub mod sigstore;

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `templates/example-modules/<name>`.
pub fn example(name: &str) -> PathBuf {
    workspace().join("templates/example-modules").join(name)
}

/// Copies a directory tree (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Asserts a command exited 0, showing its exit, stdout and stderr when not; returns stdout.
pub fn succeeded(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Whether this process runs with effective uid 0 (from /proc/self/status: no libc call).
/// Tests that mount, chown or run containers need it and fail, saying so, without it.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// The `module-builder` binary of this workspace: the one `cargo test --workspace` built, or
/// built on first use when a single package's tests run alone.
pub fn module_builder() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/<test> → target/debug/module-builder
            let dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
            let bin = dir.join("module-builder");
            // `cargo test --workspace` has built it (with the workspace's features); building
            // it again from here would resolve features for one package and rebuild much.
            if bin.exists() {
                return bin;
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ok = std::process::Command::new(cargo)
                .args(["build", "-q", "-p", "module-builder"])
                .current_dir(workspace())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok && bin.exists(),
                "could not build module-builder at {}",
                bin.display()
            );
            bin
        })
        .clone()
}

/// `fsverity digest FILE` of fsverity-utils (an implementation nobody here wrote), as
/// `sha256:<hex>`. Fails loudly when the tool is missing.
pub fn fsverity_utils_digest(file: &Path) -> String {
    let out = std::process::Command::new("fsverity")
        .arg("digest")
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs fsverity-utils: apt-get install -y fsverity ({e})")
        });
    assert!(
        out.status.success(),
        "fsverity digest {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
