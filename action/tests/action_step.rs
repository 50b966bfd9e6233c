//! The Actions step: action.yml, the Containerfile and the entry point script. Docker cannot
//! run here, so the entry point runs directly with module-builder on PATH.

use powernode_testkit::{copy_tree, example, registry::TestRegistry, workspace};
use std::{collections::BTreeSet, fs, path::Path, process::Command};

fn action_yml() -> serde_json::Value {
    let text = fs::read_to_string(workspace().join("action.yml")).unwrap();
    serde_saphyr::from_str(&text).expect("action.yml parses as YAML")
}

fn release_help() -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
        .args(["release", "--help"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn action_yml_inputs_reach_the_binary() {
    let a = action_yml();
    assert_eq!(a["runs"]["using"], "docker");
    // The published image, pinned to the workspace version (tests/version.rs checks the tag).
    assert!(
        a["runs"]["image"]
            .as_str()
            .unwrap()
            .starts_with("docker://ghcr.io/powernode/module-builder:"),
        "{}",
        a["runs"]["image"]
    );
    assert_eq!(
        a["runs"]["entrypoint"],
        "/usr/local/bin/module-builder-action"
    );
    let inputs: BTreeSet<String> = a["inputs"].as_object().unwrap().keys().cloned().collect();
    let env = a["runs"]["env"].as_object().unwrap();
    let script = fs::read_to_string(workspace().join("action/entrypoint.sh")).unwrap();
    // Every input is passed to the container, and the entry point reads every variable.
    for input in &inputs {
        let (var, _) = env
            .iter()
            .find(|(_, v)| v.as_str() == Some(&format!("${{{{ inputs.{input} }}}}")))
            .unwrap_or_else(|| panic!("input {input} is not passed in runs.env"));
        assert!(
            script.contains(&format!("${{{var}")),
            "entrypoint.sh ignores {var} (input {input})"
        );
    }
    assert_eq!(env.len(), inputs.len());
    // Every flag the entry point passes exists on `module-builder release`.
    let help = release_help();
    for flag in [
        "--ref",
        "--version",
        "--insecure",
        "--fulcio-url",
        "--rekor-url",
        "--key",
    ] {
        assert!(
            script.contains(flag),
            "entrypoint.sh no longer passes {flag}"
        );
        assert!(
            help.contains(flag),
            "`module-builder release` has no {flag}"
        );
    }
    // Secrets go through the environment, as the binary reads them.
    for var in ["REGISTRY_USERNAME", "REGISTRY_PASSWORD", "COSIGN_PASSWORD"] {
        assert!(script.contains(&format!("export {var}=")), "{var}");
    }
    assert!(help.contains("REGISTRY_USERNAME") && help.contains("REGISTRY_PASSWORD"));
    // The outputs are the ones release writes.
    let outputs: BTreeSet<&str> = a["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        outputs,
        BTreeSet::from(["digest", "reference", "composefs-digest", "version"])
    );
}

#[test]
fn containerfile_is_multi_stage_pinned_and_non_root() {
    let c = fs::read_to_string(workspace().join("Containerfile")).unwrap();
    let froms: Vec<&str> = c.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    // Every base is pinned by digest, or an earlier stage, or ${BASE} (whose default is an
    // earlier stage; scripts/image passes the base it assembles).
    let pinned = regex::Regex::new(r"@sha256:[0-9a-f]{64}( |$)").unwrap();
    let mut stages: Vec<&str> = Vec::new();
    let base_default = c
        .lines()
        .find_map(|l| l.strip_prefix("ARG BASE="))
        .expect("ARG BASE=<default>");
    for f in &froms {
        let mut words = f.split_whitespace().skip(1);
        let image = words.next().unwrap();
        let from_stage = |name: &str| stages.contains(&name);
        assert!(
            pinned.is_match(f)
                || from_stage(image)
                || (image == "${BASE}" && c.find(&format!("AS {base_default}")).is_some()),
            "base image not pinned by digest: {f}"
        );
        if let (Some("AS"), Some(name)) = (words.next(), words.next()) {
            stages.push(name);
        }
    }
    // The prebuilt targets the release pipeline packages (scripts/image builds them).
    for target in ["module-builder", "module-webhook"] {
        assert!(
            froms.contains(&format!("FROM ${{BASE}} AS {target}").as_str()),
            "no prebuilt target {target}: {froms:?}"
        );
        assert!(c.contains(&format!(
            "COPY ${{BIN_DIR}}/{target} /usr/local/bin/{target}"
        )));
    }
    assert!(c.contains("WORKDIR /work"));
    assert!(c.contains(r#"ENTRYPOINT ["/usr/local/bin/module-builder"]"#));
    assert!(c.contains("cargo build --release --locked -p module-builder"));
    assert!(c.contains("ca-certificates"));
    let user = c
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    assert!(c.contains("COPY action/entrypoint.sh /usr/local/bin/module-builder-action"));
    // The template builds FROM a pinned module-builder tag.
    let t = fs::read_to_string(workspace().join("templates/module-repo/Containerfile")).unwrap();
    assert!(
        t.lines()
            .any(|l| l.starts_with("FROM ") && l.contains("module-builder:")),
        "{t}"
    );
}

#[test]
fn template_workflow_uses_the_action_on_tag_push() {
    let text =
        fs::read_to_string(workspace().join("templates/module-repo/.gitea/workflows/build.yaml"))
            .unwrap();
    let w: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(w["on"]["push"]["tags"][0], "v*");
    assert_eq!(w["permissions"]["id-token"], "write");
    let steps = w["jobs"]["module"]["steps"].as_array().unwrap();
    let step = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.contains("module-builder"))
        })
        .expect("a module-builder step");
    let inputs: BTreeSet<String> = action_yml()["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for (k, _) in step["with"].as_object().unwrap() {
        assert!(inputs.contains(k), "the template passes unknown input {k}");
    }
}

fn run_entrypoint(env: &[(&str, String)], cwd: &Path) -> std::process::Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_module-builder"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg(workspace().join("action/entrypoint.sh"))
        .current_dir(cwd)
        .env("PATH", path);
    for k in [
        "SIGSTORE_ID_TOKEN",
        "COSIGN_PASSWORD",
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "GITHUB_ACTIONS",
    ] {
        c.env_remove(k);
    }
    c.env("DOCKER_CONFIG", "/nonexistent");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn entrypoint_releases_with_a_cosign_key_from_a_secret() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    copy_tree(&example("chrony"), &work.path().join("module"));
    let keys = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(keys.path().join("cosign"))
        .env("COSIGN_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(o.status.success());
    let key = fs::read_to_string(keys.path().join("cosign.key")).unwrap();
    let outputs = work.path().join("out");
    let tmp = tempfile::tempdir().unwrap();

    // Missing required input: a clear error.
    let o = run_entrypoint(&[("MB_REPOSITORY", "x".into())], work.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("registry input is required"));

    let o = run_entrypoint(
        &[
            ("MB_REGISTRY", reg.host.clone()),
            ("MB_REPOSITORY", "acct/modules/chrony-module".into()),
            ("MB_PATH", "module".into()),
            ("MB_COSIGN_KEY", key),
            ("MB_COSIGN_PASSWORD", "s3cret".into()),
            ("MB_FULCIO_URL", "https://fulcio.invalid".into()),
            ("MB_REKOR_URL", String::new()),
            ("MB_VERSION", String::new()),
            ("MB_INSECURE", "false".into()),
            ("GITEA_ACTIONS", "true".into()),
            ("GITHUB_REF_TYPE", "tag".into()),
            ("GITHUB_REF_NAME", "v4.5.0".into()),
            ("GITHUB_OUTPUT", outputs.display().to_string()),
            ("TMPDIR", tmp.path().display().to_string()),
        ],
        work.path(),
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = fs::read_to_string(&outputs).unwrap();
    assert!(out.contains("version=4.5.0"), "{out}");
    let reference = out
        .lines()
        .find_map(|l| l.strip_prefix("reference="))
        .unwrap()
        .to_owned();
    assert!(
        reference.starts_with(&reg.repo("acct/modules/chrony-module@sha256:")),
        "{out}"
    );
    // Signed with the key: it verifies with the public half.
    let o = Command::new(env!("CARGO_BIN_EXE_module-builder"))
        .arg("verify")
        .arg(&reference)
        .arg("--key")
        .arg(keys.path().join("cosign.pub"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The key file does not outlive the step.
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "the step left files in its TMPDIR: {leftovers:?}"
    );
}
