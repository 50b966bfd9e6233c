//! Facts about the module's git checkout, used as build defaults. Git is optional: without
//! it (or outside a repository) the defaults fall back to fixed values.

use std::{path::Path, process::Command};

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Commit time of HEAD, in seconds since the epoch.
pub fn head_commit_time(dir: &Path) -> Option<u64> {
    git(dir, &["log", "-1", "--format=%ct", "HEAD"])?
        .parse()
        .ok()
}

/// Full hash of HEAD.
pub fn head_commit(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "HEAD"])
}

/// The tag pointing exactly at HEAD, if any.
pub fn exact_tag(dir: &Path) -> Option<String> {
    git(dir, &["describe", "--tags", "--exact-match", "HEAD"])
}

/// `git remote get-url origin`, for org.opencontainers.image.source.
pub fn origin_url(dir: &Path) -> Option<String> {
    git(dir, &["remote", "get-url", "origin"])
}
