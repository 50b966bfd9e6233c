//! Test support shared by the workspace's integration tests.
//!
//! - [`registry::TestRegistry`]: Debian's `docker-registry` on a free loopback port;
//! - [`http::Server`]: a small HTTP/1.1 server for stand-ins, recording every request;
//! - [`sigstore`]: a test certificate authority acting as Fulcio, and a Rekor stand-in.

#![allow(missing_debug_implementations)]

pub mod http;
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

/// `examples/modules/<name>`.
pub fn example(name: &str) -> PathBuf {
    workspace().join("examples/modules").join(name)
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
