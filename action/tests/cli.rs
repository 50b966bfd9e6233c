//! `module-builder` as a user runs it: exit codes, output shapes, reproducibility.

use powernode_testkit::copy_tree;
use serde_json::Value;
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_module-builder"));
    // Builds must not depend on the caller's environment unless a test says so.
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(repo().join("templates/example-modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.push(repo().join("templates/module-repo"));
    v
}

fn run(c: &mut Command) -> Output {
    c.output().expect("module-builder runs")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn every_example_validates_builds_and_inspects() {
    assert!(
        examples().len() >= 8,
        "templates/example-modules is incomplete"
    );
    for ex in examples() {
        let name = ex.file_name().unwrap().to_string_lossy().to_string();
        let o = run(bin().args(["validate", "--format", "json"]).arg(&ex));
        let v = json(&o);
        assert!(o.status.success(), "{name}: {v:#}");
        assert_eq!(v["valid"], true, "{name}");
        assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{name}: {v:#}");

        let out = tempfile::tempdir().unwrap();
        let o = run(bin()
            .args([
                "build",
                "--format",
                "json",
                "--source-date-epoch",
                "1700000000",
                "-o",
            ])
            .arg(out.path())
            .arg(&ex));
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let built = json(&o);
        let on_disk: Value =
            serde_json::from_slice(&fs::read(out.path().join("module.json")).unwrap()).unwrap();
        assert_eq!(built, on_disk);

        let o = run(bin()
            .args(["inspect", "--format", "json"])
            .arg(out.path().join("module.tar")));
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let i = json(&o);
        assert_eq!(i["tar"]["sha256"], built["tar"]["sha256"], "{name}");
        assert_eq!(
            i["composefs"]["digest"], built["composefs"]["digest"],
            "{name}"
        );
        assert_eq!(i["release"]["source_date_epoch"], 1700000000, "{name}");
    }
}

fn module_with_manifest(text: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("templates/example-modules/my-redis"), t.path());
    fs::write(t.path().join("manifest.yaml"), text).unwrap();
    t
}

fn seed_manifest() -> String {
    fs::read_to_string(repo().join("templates/example-modules/my-redis/manifest.yaml")).unwrap()
}

#[test]
fn validate_reports_codes_fields_and_lines_and_exits_1() {
    let bad = seed_manifest()
        .replace("name: my-redis", "name: My_Redis")
        .replace("\"/var/lib/redis/.gitkeep\"", "\"var/lib/redis/.gitkeep\"");
    let t = module_with_manifest(&bad);
    let o = run(bin().args(["validate", "--format", "json"]).arg(t.path()));
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    let codes: Vec<_> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        ["NAME_INVALID", "PATH_INVALID"],
        "sorted by code: {v:#}"
    );
    assert_eq!(errors[0]["field"], "identity.name");
    assert_eq!(errors[0]["line"], 3);
    assert_eq!(errors[1]["field"], "file_spec.include[1]");
    assert_eq!(errors[1]["line"], 15);

    let o = run(bin().arg("validate").arg(t.path()));
    assert_eq!(o.status.code(), Some(1));
    let human = String::from_utf8(o.stdout).unwrap();
    assert!(
        human.contains("manifest.yaml:3:9: error[NAME_INVALID] identity.name: must match ^[a-z0-9][a-z0-9-]{0,62}$"),
        "{human}"
    );
    assert!(
        human.ends_with("invalid: 2 error(s), 0 conflict(s), 0 warning(s)\n"),
        "{human}"
    );
    // What a person reads, whole: a change of wording shows up in review.
    insta::assert_snapshot!("validate_human", human);
}

#[test]
fn validate_category_and_usage_errors() {
    let ex = repo().join("templates/example-modules/my-redis");
    let o = run(bin().args(["validate", "--category", "userland"]).arg(&ex));
    assert_eq!(o.status.code(), Some(0));
    let o = run(bin()
        .args(["validate", "--format", "json", "--category", "firmware"])
        .arg(&ex));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["errors"][0]["code"], "CATEGORY_MISMATCH");
    let o = run(bin().args(["validate", "--category", "games"]).arg(&ex));
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown category slug is a usage error"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected one of firmware"));
    let o = run(bin().args(["validate", "--format", "yaml"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(bin().arg("frobnicate"));
    assert_eq!(o.status.code(), Some(2));
    let missing = tempfile::tempdir().unwrap();
    let o = run(bin()
        .args(["validate", "--format", "json"])
        .arg(missing.path()));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["errors"][0]["code"], "MANIFEST_MISSING");
}

#[test]
fn help_teaches() {
    let o = run(bin().arg("--help"));
    let h = String::from_utf8(o.stdout).unwrap();
    assert!(
        h.contains("module-builder validate") && h.contains("Exit status"),
        "{h}"
    );
    let o = run(bin().args(["build", "--help"]));
    let h = String::from_utf8(o.stdout).unwrap();
    assert!(
        h.contains("--source-date-epoch") && h.contains("--dry-run"),
        "{h}"
    );
}

#[test]
fn dry_run_lists_and_writes_nothing() {
    let t = module_with_manifest(&seed_manifest());
    let o = run(bin().args(["build", "--dry-run"]).arg(t.path()));
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("/etc/redis/redis.conf"), "{out}");
    assert!(
        !out.contains("sentinel.conf"),
        "excluded file listed: {out}"
    );
    assert!(out.contains("my-redis: 2 files"), "{out}");
    assert!(!t.path().join("dist").exists());
    let o = run(bin()
        .args(["build", "--dry-run", "--format", "json"])
        .arg(t.path()));
    let v = json(&o);
    assert_eq!(v["files"], 2);
    let size = fs::metadata(t.path().join("rootfs/etc/redis/redis.conf"))
        .unwrap()
        .len();
    assert_eq!(v["total_size"], size);
}

/// The walkthrough's local check, `docker run --rm -v $PWD:/work:ro IMAGE --dry-run`: a bare
/// `--dry-run` in the module directory validates it and lists what would be packed, writes
/// nothing, and exits as `validate` does; it does not mix with subcommands.
#[test]
fn bare_dry_run_checks_the_current_directory() {
    let t = module_with_manifest(&seed_manifest());
    let o = run(bin().arg("--dry-run").current_dir(t.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("/etc/redis/redis.conf"), "{out}");
    assert!(out.contains("my-redis: 2 files"), "{out}");
    assert!(!t.path().join("dist").exists(), "nothing written");

    let bad =
        module_with_manifest(&seed_manifest().replace("schema_version: 1", "schema_version: 2"));
    let o = run(bin().arg("--dry-run").current_dir(bad.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SCHEMA_VERSION_UNSUPPORTED"));

    let o = run(bin().args(["--dry-run", "build"]).current_dir(t.path()));
    assert_eq!(o.status.code(), Some(2), "a usage error");
    let o = run(bin().current_dir(t.path()));
    assert_eq!(
        o.status.code(),
        Some(2),
        "nothing asked: help, as a usage error"
    );
}

#[test]
fn invalid_module_is_not_built() {
    let t =
        module_with_manifest(&seed_manifest().replace("schema_version: 1", "schema_version: 2"));
    let o = run(bin().arg("build").arg(t.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SCHEMA_VERSION_UNSUPPORTED"));
    assert!(!t.path().join("dist/module.tar").exists());
}

/// Writes the example module with the given permissions and creation order.
fn scatter(src: &Path, dest: &Path, file_mode: u32, dir_mode: u32, reverse: bool) {
    let mut files = Vec::new();
    fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                collect(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_owned());
            }
        }
    }
    collect(src, src, &mut files);
    files.sort();
    if reverse {
        files.reverse();
    }
    for rel in files {
        let to = dest.join(&rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(src.join(&rel), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(file_mode)).unwrap();
    }
    let mut dirs = vec![dest.join("rootfs")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
        fs::set_permissions(&d, fs::Permissions::from_mode(dir_mode)).unwrap();
    }
}

#[test]
fn same_inputs_give_the_same_bytes_under_different_conditions() {
    let src = repo().join("templates/example-modules/security-hardening");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::Builder::new()
        .prefix("other-checkout-path")
        .tempdir()
        .unwrap();
    let a_mod = a.path().join("m");
    let b_mod = b.path().join("deeper/dir/m");
    scatter(&src, &a_mod, 0o644, 0o755, false);
    // Other umask-like permissions, reverse creation order (so directory read order differs).
    scatter(&src, &b_mod, 0o600, 0o700, true);
    // Different mtimes.
    let ok = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(b_mod.join("rootfs/etc/login.defs"))
        .status()
        .unwrap()
        .success();
    assert!(ok);

    let out_a = a.path().join("out");
    let out_b = b.path().join("out");
    let o = run(bin()
        .args(["build", "--source-date-epoch", "1234567890", "-o"])
        .arg(&out_a)
        .arg(&a_mod)
        .env("TZ", "UTC")
        .env("LC_ALL", "C"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(bin()
        .args(["build", "-o"])
        .arg(&out_b)
        .arg(&b_mod)
        .current_dir(b.path())
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .env("TZ", "Pacific/Chatham")
        .env("LC_ALL", "tr_TR.UTF-8")
        .env("LANG", "de_DE.UTF-8"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ta = fs::read(out_a.join("module.tar")).unwrap();
    let tb = fs::read(out_b.join("module.tar")).unwrap();
    assert!(ta == tb, "module.tar differs between the two builds");
    assert_eq!(
        fs::read(out_a.join("module.json")).unwrap(),
        fs::read(out_b.join("module.json")).unwrap()
    );
    // The manifest's modes still apply after normalisation.
    let o = run(bin()
        .args(["inspect", "--format", "json"])
        .arg(out_b.join("module.tar")));
    let v = json(&o);
    let sudoers = v["index"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "rootfs/etc/sudoers.d/10-powernode")
        .unwrap()
        .clone();
    assert_eq!(sudoers["mode"], "0440");
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_DATE", "2024-05-06T07:08:09Z")
        .env("GIT_COMMITTER_DATE", "2024-05-06T07:08:09Z")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .status()
        .expect("git is needed for this test: apt-get install git")
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn defaults_come_from_git_head_and_tag() {
    let t = module_with_manifest(&seed_manifest());
    git(t.path(), &["init", "-q"]);
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-qm", "v0.1.0"]);
    git(t.path(), &["tag", "v0.1.0"]);
    let o = run(bin().args(["build", "--format", "json"]).arg(t.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    assert_eq!(v["source_date_epoch"], 1714979289);
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["git_commit"].as_str().unwrap().len(), 40);

    // The environment beats git; the flag beats the environment.
    let o = run(bin()
        .args(["build", "--format", "json", "--version", "9.9.9"])
        .arg(t.path())
        .env("SOURCE_DATE_EPOCH", "5"));
    assert_eq!(json(&o)["source_date_epoch"], 5);
    assert_eq!(json(&o)["version"], "9.9.9");
    let o = run(bin()
        .args(["build", "--format", "json", "--source-date-epoch", "6"])
        .arg(t.path())
        .env("SOURCE_DATE_EPOCH", "5"));
    assert_eq!(json(&o)["source_date_epoch"], 6);
    let o = run(bin()
        .args(["build"])
        .arg(t.path())
        .env("SOURCE_DATE_EPOCH", "soon"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SOURCE_DATE_EPOCH"));

    // Outside git, and without the variable: 0.
    let u = module_with_manifest(&seed_manifest());
    let o = run(bin().args(["build", "--format", "json"]).arg(u.path()));
    assert_eq!(json(&o)["source_date_epoch"], 0);
    assert_eq!(json(&o)["version"], "0.0.0-dev");
}

#[test]
fn inspect_refuses_a_tampered_artifact() {
    let t = module_with_manifest(&seed_manifest());
    let o = run(bin().arg("build").arg(t.path()));
    assert!(o.status.success());
    let tar = t.path().join("dist/module.tar");
    let mut bytes = fs::read(&tar).unwrap();
    let at = bytes.windows(9).position(|w| w == b"port 6379").unwrap();
    bytes[at + 5] = b'7';
    fs::write(&tar, bytes).unwrap();
    let o = run(bin().arg("inspect").arg(&tar));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rootfs/etc/redis/redis.conf") && err.contains("fs-verity"),
        "{err}"
    );
}

/// A module.tar whose first entry is an `index.json` listing `n` directories (plus the
/// three fixed entries), written compactly, and nothing else.
fn tar_with_index_of(n: usize) -> Vec<u8> {
    let sha = format!("sha256:{}", "0".repeat(64));
    let mut index = format!(
        r#"{{"schema_version":2,"module":"big","entries":[{{"path":"manifest.yaml","mode":"0644","type":"file","size":0,"fsverity":"{sha}","inline":""}},{{"path":"module-release","mode":"0644","type":"file","size":0,"fsverity":"{sha}","inline":""}},{{"path":"rootfs","mode":"0755","type":"dir"}}"#
    );
    // Half at the top, half in the last top-level directory: a parent lookup by scanning
    // the list is quadratic on this shape.
    let half = n / 2;
    for i in 0..n {
        if i < half {
            index.push_str(&format!(
                r#",{{"path":"rootfs/{i}","mode":"0755","type":"dir"}}"#
            ));
        } else {
            index.push_str(&format!(
                r#",{{"path":"rootfs/{}/{i}","mode":"0755","type":"dir"}}"#,
                half - 1
            ));
        }
    }
    index.push_str("]}");
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(index.len() as u64);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "index.json", index.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

#[test]
fn index_with_a_million_entries_is_refused_quickly() {
    let t = tempfile::tempdir().unwrap();
    let tar = t.path().join("module.tar");
    let bytes = tar_with_index_of(1_000_000);
    // Under the 64 MiB index cap: it is the entry count that refuses it.
    assert!(bytes.len() < 64 << 20, "{} bytes", bytes.len());
    fs::write(&tar, bytes).unwrap();
    let started = std::time::Instant::now();
    let o = run(bin().arg("inspect").arg(&tar));
    let took = started.elapsed();
    eprintln!("1M-entry index refused in {took:?}");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("index.json lists 1000003 entries, more than the limit of 200000"),
        "{err}"
    );
    // A loose guard: the point is seconds, not the minutes a quadratic check takes.
    assert!(took.as_secs() < 5, "took {took:?}");
}

#[test]
fn release_refuses_an_untagged_head_without_version() {
    let t = module_with_manifest(&seed_manifest());
    git(t.path(), &["init", "-q"]);
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-qm", "untagged"]);
    let o = run(bin()
        .arg("release")
        .arg(t.path())
        .args([
            "--ref",
            "127.0.0.1:9/acct/modules/x",
            "--key",
            "/nonexistent",
        ])
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITEA_ACTIONS"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not tagged") && err.contains("--version"),
        "{err}"
    );
    assert!(
        !t.path().join("dist/module.tar").exists(),
        "nothing was built"
    );
}

/// Issue 8, item 3: versions are SemVer wherever they enter the builder, and a push's tag must
/// name the artifact's version (the receiver refuses a mismatch; the builder says so first).
#[test]
fn item3_versions_and_release_tags_must_be_semver() {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("templates/example-modules/my-redis"), t.path());
    for bad in ["redis-3.0.0", "1.0", "v1.0.0", "latest"] {
        let o = run(bin().args(["build", "--version", bad]).arg(t.path()));
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a SemVer 2.0 version"),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run(bin()
        .args(["build", "--version", "3.0.0", "--source-date-epoch", "1"])
        .arg(t.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing listens on port 1: the tag is checked before anything is sent.
    for (tag, says) in [
        (
            "v3.0.1",
            "the tag names version 3.0.1, but the artifact is version 3.0.0",
        ),
        ("redis-3.0.0", "not a SemVer 2.0 version"),
    ] {
        let o = run(bin()
            .arg("push")
            .arg(t.path())
            .args(["--ref", &format!("127.0.0.1:1/acct/modules/my:{tag}")]));
        assert_eq!(o.status.code(), Some(1), "{tag}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{tag}: {err}");
    }
}
