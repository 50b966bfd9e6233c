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

/// A release cannot forget to bump the image the Actions step runs, and the step names it by
/// digest: on main the placeholder (which cannot be pulled), at tag action-v<version> the one
/// the release pushed and signed (`scripts/release-pin image`).
#[test]
fn action_yml_runs_the_builder_image_of_the_workspace_version() {
    let text = fs::read_to_string(workspace().join("action.yml")).unwrap();
    let a: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let image = a["runs"]["image"].as_str().unwrap();
    let pinned = regex::Regex::new(&format!(
        r"^docker://ghcr\.io/powernode/module-builder:{}@sha256:[0-9a-f]{{64}}$",
        regex::escape(&workspace_version())
    ))
    .unwrap();
    assert!(pinned.is_match(image), "action.yml runs {image}");
    // The README's quickstart runs the same image repository.
    let readme = fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(readme.contains("ghcr.io/powernode/module-builder:"));
}

fn release_pin(args: &[&str]) -> std::process::Output {
    Command::new(workspace().join("scripts/release-pin"))
        .args(args)
        .output()
        .unwrap()
}

/// What the release writes: action.yml with the image's digest (and nothing else changed), and
/// the template's workflow with the step at the commit of tag action-v<version>.
#[test]
fn release_pin_writes_the_image_digest_and_the_action_commit() {
    let version = workspace_version();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let o = release_pin(&["image", &digest]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pinned = String::from_utf8(o.stdout).unwrap();
    let original = fs::read_to_string(workspace().join("action.yml")).unwrap();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(pinned.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(original.lines().count(), pinned.lines().count());
    assert_eq!(changed.len(), 1, "{changed:?}");
    let a: serde_json::Value = serde_saphyr::from_str(&pinned).unwrap();
    assert_eq!(
        a["runs"]["image"],
        format!("docker://ghcr.io/powernode/module-builder:{version}@{digest}").as_str()
    );
    for bad in ["sha256:abc", "ab".repeat(32).as_str(), "sha512:00"] {
        let o = release_pin(&["image", bad]);
        assert!(!o.status.success() && o.stdout.is_empty(), "{bad}");
    }

    let commit = "0123456789abcdef0123456789abcdef01234567";
    let o = release_pin(&["action", commit, &version]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rendered = String::from_utf8(o.stdout).unwrap();
    let line = rendered
        .lines()
        .find(|l| l.contains("/module-builder@"))
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("uses: https://git.example.org/powernode/module-builder@{commit}   # v{version}")
    );
    let w: serde_json::Value = serde_saphyr::from_str(&rendered).unwrap();
    assert!(
        w["jobs"]["module"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["uses"]
                == format!("https://git.example.org/powernode/module-builder@{commit}").as_str())
    );
    for (c, v) in [
        ("v1", version.as_str()),
        (commit, "latest"),
        (&commit[..12], "1.0.0"),
    ] {
        assert!(!release_pin(&["action", c, v]).status.success(), "{c} {v}");
    }
}

fn release_workflow() -> (String, serde_json::Value) {
    let text = fs::read_to_string(workspace().join(".gitea/workflows/release.yaml")).unwrap();
    let w = serde_saphyr::from_str(&text).expect("release.yaml parses");
    (text, w)
}

/// The `run:` scripts and `uses:` of one job of the release workflow.
fn job(w: &serde_json::Value, name: &str) -> (String, Vec<String>) {
    let steps = w["jobs"][name]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("release.yaml has no job {name}"));
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let uses = steps
        .iter()
        .filter_map(|s| s["uses"].as_str().map(str::to_owned))
        .collect();
    (runs.join("\n"), uses)
}

#[test]
fn the_release_workflow_builds_once_pushes_signs_and_attaches() {
    let (_, w) = release_workflow();
    assert_eq!(w["on"]["push"]["tags"][0], "v*");
    // Nothing by default; each job says what it holds.
    assert_eq!(w["permissions"], serde_json::json!({}));
    let mut jobs: Vec<&String> = w["jobs"].as_object().unwrap().keys().collect();
    jobs.sort();
    assert_eq!(jobs, ["build", "publish", "sign"]);

    // build: the one compile, every build script and cargo install, with a read-only token
    // and no OIDC token or secret.
    let (build, _) = job(&w, "build");
    assert_eq!(
        w["jobs"]["build"]["permissions"],
        serde_json::json!({"contents": "read"})
    );
    let build_yaml = serde_json::to_string(&w["jobs"]["build"]).unwrap();
    assert!(!build_yaml.contains("secrets."), "{build_yaml}");
    assert_eq!(build.matches("cargo build").count(), 1, "{build}");
    assert!(build.contains(
        "cargo build --release --locked -p module-builder -p module-webhook -p module-agent"
    ));
    assert!(build.contains("cargo install --locked --root target/tools --version"));
    assert!(build.contains("cargo-cyclonedx"));
    assert!(build.contains("BIN_DIR=target/release"));
    assert!(build.contains("scripts/image"));
    // The images' digests are fixed here (OCI archives), action.yml pinned to the builder's.
    assert!(build.contains("oci-archive:"));
    assert!(build.contains("scripts/release-pin image \"$digest\""));
    assert!(build.contains("sha256sum -- * >SHA256SUMS"));
    assert!(build.contains("application/vnd.powernode.release.checksums.v1"));

    // sign: the only job with an OIDC token; it needs the build and runs no cargo, no build
    // script, no checkout: Debian's skopeo and module-builder's sign/verify.
    let sign_job = &w["jobs"]["sign"];
    assert_eq!(sign_job["needs"], "build");
    assert_eq!(sign_job["permissions"]["id-token"], "write");
    assert_eq!(sign_job["permissions"]["contents"], "read");
    let (sign, sign_uses) = job(&w, "sign");
    for forbidden in ["cargo", "scripts/", "git ", "make", "buildah"] {
        assert!(!sign.contains(forbidden), "the sign job runs {forbidden}");
    }
    assert!(sign.contains("sha256sum --strict -c SHA256SUMS"));
    assert!(sign.contains("skopeo copy -q --preserve-digests"));
    // Signed by module-builder itself, by digest, keyless: the images and SHA256SUMS.
    assert!(sign.contains("\"$MB\" sign \"$ref\" --fulcio-url"));
    assert!(sign.contains("\"$MB\" verify \"$ref\" --trusted-root"));
    assert!(sign.contains("echo \"$sums\" >>target/signable.txt"));
    let mb_calls: Vec<&str> = sign
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("\"$MB\" "))
        .collect();
    assert!(
        mb_calls
            .iter()
            .all(|c| c.starts_with("sign ") || c.starts_with("verify ") || *c == "--version"),
        "{mb_calls:?}"
    );
    assert!(
        sign_uses
            .iter()
            .all(|u| u.starts_with("actions/download-artifact@")),
        "{sign_uses:?}"
    );

    // publish: needs the signatures, holds no OIDC token; tags the pinned action, attaches.
    let publish_job = &w["jobs"]["publish"];
    assert_eq!(publish_job["needs"], "sign");
    assert_eq!(
        publish_job["permissions"],
        serde_json::json!({"contents": "write"})
    );
    let (publish, _) = job(&w, "publish");
    assert!(!publish.contains("cargo"));
    assert!(publish.contains("refs/tags/$tag"));
    assert!(publish.contains("scripts/release-pin action \"$commit\" \"$VERSION\""));
    assert!(publish.contains("/releases/$id/assets"));

    // Only sign holds id-token, anywhere in the file.
    for (name, j) in w["jobs"].as_object().unwrap() {
        if name != "sign" {
            assert!(
                j["permissions"]["id-token"].is_null(),
                "{name} holds id-token"
            );
        }
    }
    // The flags it signs and verifies with exist.
    for (cmd, flags) in [
        ("sign", &["--fulcio-url", "--rekor-url"][..]),
        (
            "verify",
            &[
                "--trusted-root",
                "--certificate-identity-regexp",
                "--certificate-oidc-issuer-regexp",
            ][..],
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(o.stdout).unwrap();
        for flag in flags {
            assert!(help.contains(flag), "`module-builder {cmd}` has no {flag}");
        }
    }
}

/// Third-party actions only by full commit SHA (a tag can be moved), in every workflow; this
/// project's own step too, with the version it is as a comment.
#[test]
fn workflows_pin_third_party_actions_by_commit() {
    let pinned = regex::Regex::new(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$").unwrap();
    let own =
        regex::Regex::new(r"^https://git\.example\.org/powernode/module-builder@[0-9a-f]{40}$")
            .unwrap();
    let mut own_steps = 0;
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
                    if own.is_match(u) {
                        own_steps += 1;
                        let line = text.lines().find(|l| l.contains(u)).unwrap();
                        assert!(
                            line.ends_with(&format!("# v{}", workspace_version())),
                            "{path}: `{line}` does not say which version the commit is"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(own_steps, 1, "the template uses the Actions step once");
}
