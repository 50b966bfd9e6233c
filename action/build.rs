// Names the commit a binary was built from, for `--version`:
// `module-builder 0.1.0 (abc1234 2026-12-04)`.
//
// From a git checkout: `git rev-parse` of HEAD and its committer date. Otherwise (a source
// tarball, or git missing): `$POWERNODE_COMMIT` (a commit id, shortened to 7 characters) and
// `$POWERNODE_COMMIT_DATE` (YYYY-MM-DD, optional), else `unknown`.
//
// Cheap: it reruns only when HEAD, the branch HEAD points to, packed-refs or those variables
// change, never on source edits. module-webhook and module-agent include this file as their
// build script (`include!("../action/build.rs")`; no inner attributes here for that reason)
// and print the same line.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../action/build.rs");
    println!("cargo:rerun-if-env-changed=POWERNODE_COMMIT");
    println!("cargo:rerun-if-env-changed=POWERNODE_COMMIT_DATE");
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));

    let from_git = git(
        &dir,
        &["log", "-1", "--format=%h %cs", "--abbrev=7", "HEAD"],
    );
    if from_git.is_some() {
        // Rerun when HEAD moves: HEAD itself (a checkout, a detached HEAD), the branch file it
        // points to (a commit), and packed-refs (where `git gc` moves branch files).
        let git_dir = git(&dir, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
        let common = git(
            &dir,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .map(PathBuf::from)
        .or_else(|| git_dir.clone());
        let branch = git(&dir, &["symbolic-ref", "-q", "HEAD"]);
        let mut watch = Vec::new();
        if let Some(g) = &git_dir {
            watch.push(g.join("HEAD"));
        }
        if let Some(c) = &common {
            watch.push(c.join("packed-refs"));
            if let Some(b) = &branch {
                watch.push(c.join(b));
            }
        }
        // A path that does not exist would make cargo rerun this script on every build.
        for p in watch.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }

    let line = from_git.unwrap_or_else(|| {
        let commit = env::var("POWERNODE_COMMIT").unwrap_or_default();
        let commit = commit.trim();
        if commit.is_empty() {
            return "unknown".into();
        }
        let short: String = commit.chars().take(7).collect();
        match env::var("POWERNODE_COMMIT_DATE") {
            Ok(date) if !date.trim().is_empty() => format!("{short} {}", date.trim()),
            _ => short,
        }
    });
    println!("cargo:rustc-env=POWERNODE_BUILD_COMMIT={line}");
}
