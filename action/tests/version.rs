//! One version, in one place: the workspace's. `--version` names the commit, action.yml runs
//! the builder image of this version, and the release workflow builds once and signs with
//! module-builder itself.

use powernode_testkit::workspace;
use std::{fs, process::Command};

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version() -> String {
    let text = fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let section = text
        .split("\n[")
        .find(|s| s.starts_with("workspace.package]"))
        .expect("[workspace.package]");
    section
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("[workspace.package] version")
        .trim_matches('"')
        .to_string()
}

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .args(args)
        .current_dir(workspace())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8(o.stdout).unwrap().trim().to_string())
}

#[test]
fn version_names_the_commit_of_head() {
    let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
    let line = String::from_utf8(o.stdout).unwrap();
    let version = workspace_version();
    assert_eq!(env!("CARGO_PKG_VERSION"), version);
    match git(&["rev-parse", "--short=7", "HEAD"]) {
        Some(short) => {
            let date = git(&["show", "-s", "--format=%cs", "HEAD"]).unwrap();
            assert_eq!(
                line.trim(),
                format!("module-builder {version} ({short} {date})")
            );
        }
        // A source tarball: $POWERNODE_COMMIT at build time, else unknown.
        None => assert!(
            line.starts_with(&format!("module-builder {version} (")),
            "{line}"
        ),
    }
}

#[test]
fn every_crate_takes_the_workspace_version() {
    let root = fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let members = root
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("members = [...]");
    let members: Vec<&str> = members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .collect();
    assert!(members.contains(&"action"), "{members:?}");
    for m in members {
        let text = fs::read_to_string(workspace().join(m).join("Cargo.toml")).unwrap();
        let package = text.split("\n[").next().unwrap();
        assert!(
            package
                .lines()
                .any(|l| l.trim() == "version.workspace = true"),
            "{m}/Cargo.toml: [package] must say version.workspace = true"
        );
        assert!(
            !package
                .lines()
                .any(|l| l.trim_start().starts_with("version =")),
            "{m}/Cargo.toml sets its own version"
        );
    }
}

/// A release cannot forget to bump the image the Actions step runs.
#[test]
fn action_yml_runs_the_builder_image_of_the_workspace_version() {
    let text = fs::read_to_string(workspace().join("action.yml")).unwrap();
    let a: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let image = format!(
        "docker://ghcr.io/powernode/module-builder:{}",
        workspace_version()
    );
    assert_eq!(a["runs"]["image"], image.as_str());
    // The README's quickstart runs the same image repository.
    let readme = fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(readme.contains("ghcr.io/powernode/module-builder:"));
}

fn release_workflow() -> (String, serde_json::Value) {
    let text = fs::read_to_string(workspace().join(".gitea/workflows/release.yaml")).unwrap();
    let w = serde_saphyr::from_str(&text).expect("release.yaml parses");
    (text, w)
}

#[test]
fn the_release_workflow_builds_once_pushes_signs_and_attaches() {
    let (_, w) = release_workflow();
    assert_eq!(w["on"]["push"]["tags"][0], "v*");
    assert_eq!(w["permissions"]["id-token"], "write");
    assert_eq!(w["permissions"]["contents"], "write");
    let steps = w["jobs"]["release"]["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let all = runs.join("\n");
    // One compile, of the three binaries; the images package those (scripts/image's BIN_DIR).
    assert_eq!(all.matches("cargo build").count(), 1, "{all}");
    assert!(all.contains(
        "cargo build --release --locked -p module-builder -p module-webhook -p module-agent"
    ));
    assert!(all.contains("BIN_DIR=target/release"));
    assert!(all.contains("scripts/image"));
    assert!(all.contains("buildah push"));
    // Signed by module-builder itself, by digest, keyless.
    assert!(all.contains("target/release/module-builder sign \"$ref\" --fulcio-url"));
    assert!(all.contains("SHA256SUMS"));
    assert!(all.contains("cargo-cyclonedx"));
    assert!(all.contains("/releases/$id/assets"));
    // The flags it signs with exist.
    let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
        .args(["sign", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in ["--fulcio-url", "--rekor-url"] {
        assert!(help.contains(flag), "`module-builder sign` has no {flag}");
    }
}

/// Third-party actions only by full commit SHA (a tag can be moved), in every workflow.
#[test]
fn workflows_pin_third_party_actions_by_commit() {
    let pinned = regex::Regex::new(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$").unwrap();
    let own =
        regex::Regex::new(r"^https://git\.example\.org/powernode/module-builder@v\d").unwrap();
    for path in [
        ".gitea/workflows/release.yaml",
        "templates/module-repo/.gitea/workflows/build.yaml",
    ] {
        let text = fs::read_to_string(workspace().join(path)).unwrap();
        let w: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        for (_, job) in w["jobs"].as_object().unwrap() {
            for step in job["steps"].as_array().unwrap() {
                if let Some(u) = step["uses"].as_str() {
                    assert!(
                        pinned.is_match(u) || own.is_match(u),
                        "{path}: `uses: {u}` is not pinned by commit"
                    );
                }
            }
        }
    }
}
