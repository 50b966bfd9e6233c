//! The images, built and run for real. `scripts/image` assembles them without pulling (a base
//! FROM scratch, the Containerfile's prebuilt targets) and buildah runs them
//! (`buildah run --isolation=chroot`, as root) the way `docker run` does: the image's
//! entrypoint with the command line's arguments, its working directory, its user, its
//! environment. Needs root and buildah; fails (never skips) without them.

use powernode_testkit::{copy_tree, example, registry::TestRegistry, workspace};
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::Instant,
};

/// The walkthrough's line, which these tests run with buildah in place of docker.
const README_LINE: &str =
    "docker run --rm -v $PWD:/work:ro ghcr.io/powernode/module-builder:latest --dry-run";

/// What the module-builder image's size may be at most (unpacked, as `docker images` shows it).
const SIZE_LIMIT: u64 = 40 * 1000 * 1000;

struct Images {
    builder: String,
    webhook: String,
}

fn prerequisites() {
    assert!(
        powernode_testkit::running_as_root(),
        "the image tests need root (buildah's storage and `buildah run --isolation=chroot`); \
         run them as root, as scripts/test and CI do"
    );
    let ok = Command::new("buildah")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the image tests need buildah: apt-get install -y buildah (scripts/test installs it)"
    );
}

/// `scripts/image`, once per test binary (the runtime base is cached between runs).
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        prerequisites();
        let t = Instant::now();
        let mut cmd = Command::new(workspace().join("scripts/image"));
        cmd.env_remove("REGISTRY").env_remove("TAG");
        // The binaries this test run built (cargo test --workspace builds both), so the
        // suite compiles nothing twice; their image is larger than the release one, so the
        // size target checked below holds a fortiori for a release. Without them (a focused
        // `cargo test -p module-builder`), scripts/image builds release binaries itself.
        let bins = powernode_testkit::module_builder()
            .parent()
            .unwrap()
            .to_owned();
        if std::env::var_os("BIN_DIR").is_none() && bins.join("module-webhook").exists() {
            eprintln!(
                "packaging the binaries of this test run ({})",
                bins.display()
            );
            cmd.env("BIN_DIR", &bins).env("TAG", "test");
        }
        let o = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running scripts/image");
        assert!(o.status.success(), "scripts/image failed: {:?}", o.status);
        eprintln!("scripts/image: {:.1}s", t.elapsed().as_secs_f64());
        let out = String::from_utf8(o.stdout).unwrap();
        let refs: Vec<&str> = out.lines().collect();
        assert_eq!(refs.len(), 2, "one reference a line: {out:?}");
        assert!(refs[0].contains("/powernode/module-builder:"), "{out}");
        assert!(refs[1].contains("/powernode/module-webhook:"), "{out}");
        Images {
            builder: refs[0].to_owned(),
            webhook: refs[1].to_owned(),
        }
    })
}

fn buildah(args: &[&str]) -> Output {
    Command::new("buildah")
        .args(args)
        .output()
        .expect("running buildah")
}

/// The command succeeded (else: its exit, stdout and stderr); its stdout.
fn ok(o: Output) -> String {
    powernode_testkit::succeeded(o)
}

/// The image's OCI config (`config` of the image configuration).
fn image_config(image: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(buildah(&["inspect", "--type", "image", image]))).unwrap();
    v["OCIv1"]["config"].clone()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A working container of an image, removed when dropped (also when a test fails).
struct Container {
    id: String,
    config: serde_json::Value,
}

impl Container {
    fn of(image: &str, env: &[(&str, &str)]) -> Container {
        let id = ok(buildah(&["from", "--pull=never", "--quiet", image]))
            .trim()
            .to_owned();
        let c = Container {
            id,
            config: image_config(image),
        };
        // `docker run -e K=V`.
        for (k, v) in env {
            ok(buildah(&["config", "--env", &format!("{k}={v}"), &c.id]));
        }
        c
    }

    /// `docker run --rm -v HOST:CTR[:ro] --network host [--entrypoint E] IMAGE ARGS…`: the
    /// entrypoint (the image's unless given) and the arguments, in the image's working
    /// directory, as the image's user.
    fn run(
        &self,
        mounts: &[(&Path, &str, bool)],
        entrypoint: Option<&str>,
        args: &[&str],
    ) -> Output {
        let mut argv: Vec<String> = match entrypoint {
            Some(e) => vec![e.to_owned()],
            None => strings(&self.config["Entrypoint"]),
        };
        assert!(!argv.is_empty(), "the image has no entrypoint");
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut c = Command::new("buildah");
        c.args(["run", "--isolation=chroot", "--network=host"]);
        if let Some(u) = self.config["User"].as_str().filter(|u| !u.is_empty()) {
            c.args(["--user", u]);
        }
        if let Some(w) = self.config["WorkingDir"].as_str().filter(|w| !w.is_empty()) {
            c.args(["--workingdir", w]);
        }
        for (host, ctr, ro) in mounts {
            let opt = if *ro { ":ro" } else { "" };
            c.arg("-v").arg(format!("{}:{ctr}{opt}", host.display()));
        }
        c.arg(&self.id).arg("--").args(&argv);
        c.output().expect("buildah run")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["rm", &self.id]).output();
    }
}

/// Every path under `dir` with its size, mode and mtime.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32, i64)> {
    let mut m = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                todo.push(p.clone());
            }
            m.insert(p, (md.len(), md.mode(), md.mtime()));
        }
    }
    m.insert(dir.to_owned(), {
        let md = fs::metadata(dir).unwrap();
        (md.len(), md.mode(), md.mtime())
    });
    m
}

#[test]
fn the_walkthrough_dry_run_works_on_a_read_only_mount() {
    let images = images();
    let cfg = image_config(&images.builder);
    // What `docker run` honours: entrypoint, working directory, user.
    assert_eq!(
        strings(&cfg["Entrypoint"]),
        ["/usr/local/bin/module-builder"]
    );
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["User"], "10001:10001");
    // The README shows exactly the line this test runs.
    let readme = fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(readme.contains(README_LINE), "README lost: {README_LINE}");

    // $PWD is the example module itself, mounted read-only.
    let module = example("chrony");
    let before = snapshot(&module);
    let c = Container::of(&images.builder, &[]);
    let o = c.run(&[(&module, "/work", true)], None, &["--dry-run"]);
    let out = ok(o);
    for path in [
        "/etc/chrony/chrony.conf",
        "/etc/chrony/conf.d/powernode.conf",
        "/etc/chrony/sources.d/powernode-nts.sources",
        "/etc/default/chrony",
    ] {
        assert!(out.contains(path), "{path} not listed:\n{out}");
    }
    assert!(out.contains("chrony: 4 files"), "{out}");
    assert_eq!(snapshot(&module), before, "the dry run wrote something");
    assert!(!module.join("dist").exists());

    // Exit status as `validate`: an invalid module is 1, with the finding's code.
    let bad = tempfile::tempdir().unwrap();
    copy_tree(&module, bad.path());
    let m = bad.path().join("manifest.yaml");
    fs::write(
        &m,
        fs::read_to_string(&m)
            .unwrap()
            .replace("name: chrony", "name: Chrony_NTP"),
    )
    .unwrap();
    let o = c.run(&[(bad.path(), "/work", true)], None, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("NAME_INVALID"),
        "{o:?}"
    );
}

fn uids(status: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_images_run_as_a_non_root_user() {
    let images = images();
    for image in [&images.builder, &images.webhook] {
        assert_eq!(image_config(image)["User"], "10001:10001", "{image}");
    }
    // From inside: real, effective, saved and filesystem uid of a process in the image.
    let c = Container::of(&images.builder, &[]);
    let status = ok(c.run(&[], Some("/bin/cat"), &["/proc/self/status"]));
    assert_eq!(uids(&status), ["10001"; 4], "{status}");
    let who = ok(c.run(&[], Some("/bin/sh"), &["-c", "id -u; id -g; echo $HOME"]));
    assert_eq!(
        who.lines().collect::<Vec<_>>(),
        ["10001", "10001", "/home/builder"]
    );
    // The binary itself starts (its libraries are all in the image) and git is there.
    let v = ok(c.run(&[], None, &["--version"]));
    assert!(v.starts_with("module-builder "), "{v}");
    let g = ok(c.run(
        &[],
        Some("/usr/bin/git"),
        &["config", "--system", "--get-all", "safe.directory"],
    ));
    assert_eq!(g.trim(), "*");

    // The operators' image: the receiver as uid 10001, on its port.
    let cfg = image_config(&images.webhook);
    assert_eq!(
        strings(&cfg["Entrypoint"]),
        ["/usr/local/bin/module-webhook"]
    );
    assert_eq!(strings(&cfg["Cmd"]), ["serve"]);
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");
    let w = Container::of(&images.webhook, &[]);
    let v = ok(w.run(&[], None, &["--version"]));
    assert!(v.starts_with("module-webhook "), "{v}");
    let status = ok(w.run(&[], Some("/bin/cat"), &["/proc/self/status"]));
    assert_eq!(uids(&status), ["10001"; 4], "{status}");
}

fn host_mb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_module-builder"));
    c.env("DOCKER_CONFIG", "/nonexistent");
    c
}

fn git(dir: &Path, args: &[&str]) -> String {
    ok(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        // The checkout belongs to the image's uid, as a CI workspace does.
        .args(["-c", "safe.directory=*"])
        .args(args)
        .output()
        .unwrap())
    .trim()
    .to_owned()
}

/// The release's `module-release` file, from the tar the container wrote.
fn module_release(tar_path: &Path) -> String {
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().as_os_str() == "module-release" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            return s;
        }
    }
    panic!("no module-release in {}", tar_path.display());
}

/// A tagged checkout of an example module owned by the image's user, as a CI workspace is.
fn checkout(tag: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&example("chrony"), t.path());
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-q", "-m", "chrony"]);
    git(t.path(), &["tag", tag]);
    chown_to_image_user(t.path());
    t
}

/// Gives a tree to uid 10001, the images' user, as a bind mount it reads or writes needs.
fn chown_to_image_user(path: &Path) {
    ok(Command::new("chown")
        .args(["-R", "10001:10001"])
        .arg(path)
        .output()
        .unwrap());
}

fn annotations(reference: &str) -> serde_json::Value {
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is needed: apt-get install -y skopeo"));
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v["annotations"].clone()
}

#[test]
fn release_inside_the_image_verifies_from_outside() {
    let images = images();
    let reg = TestRegistry::start();
    let keys = tempfile::tempdir().unwrap();
    ok(host_mb()
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(keys.path().join("cosign"))
        .env("COSIGN_PASSWORD", "image test")
        .output()
        .unwrap());
    // The key is the image user's (0600), as a user's own key mounted into the container is.
    chown_to_image_user(keys.path());
    let repo = reg.repo("acct/modules/chrony-module");

    // `docker run -v $PWD:/work -v keys:/keys:ro -e COSIGN_PASSWORD IMAGE release --ref … --key …`;
    // the version comes from the git tag, read by the image's git.
    let work = checkout("v1.4.0");
    let head = git(work.path(), &["rev-parse", "HEAD"]);
    let time = git(work.path(), &["log", "-1", "--format=%ct"]);
    let c = Container::of(&images.builder, &[("COSIGN_PASSWORD", "image test")]);
    let t = Instant::now();
    let o = c.run(
        &[(work.path(), "/work", false), (keys.path(), "/keys", true)],
        None,
        &["release", "--ref", &repo, "--key", "/keys/cosign.key"],
    );
    let elapsed = t.elapsed();
    let out = ok(o);
    eprintln!(
        "release inside the image: {:.2}s wall (buildah run, chrony example, key signing)",
        elapsed.as_secs_f64()
    );
    let reference = out
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.contains("@sha256:")))
        .unwrap_or_else(|| panic!("no reference in:\n{out}"))
        .to_owned();
    assert!(reference.starts_with(&format!("{repo}@sha256:")), "{out}");
    // Verified from outside, with the public key only.
    ok(host_mb()
        .arg("verify")
        .arg(format!("{repo}:v1.4.0"))
        .arg("--key")
        .arg(keys.path().join("cosign.pub"))
        .output()
        .unwrap());
    let a = annotations(&format!("{repo}:v1.4.0"));
    assert_eq!(a["org.opencontainers.image.version"], "1.4.0");
    assert_eq!(a["org.opencontainers.image.revision"], head.as_str());
    let release = module_release(&work.path().join("dist/module.tar"));
    assert!(
        release.contains(&format!("GIT_COMMIT=\"{head}\"")),
        "{release}"
    );
    assert!(
        release.contains(&format!("SOURCE_DATE_EPOCH=\"{time}\"")),
        "{release}"
    );
    drop(c);

    // The Actions step: action.yml's entry point in the image, with the step's inputs and the
    // key as a secret's contents, in a workspace the runner checked out as root (so uid 10001
    // cannot write it) and a `$GITHUB_OUTPUT` file the runner made writable for the step.
    let work = checkout("v1.5.0");
    ok(Command::new("chown")
        .args(["-R", "0:0"])
        .arg(work.path())
        .output()
        .unwrap());
    ok(Command::new("chmod")
        .args(["-R", "u=rwX,go=rX"])
        .arg(work.path())
        .output()
        .unwrap());
    let key = fs::read_to_string(keys.path().join("cosign.key")).unwrap();
    let outputs = work.path().join(".outputs");
    fs::write(&outputs, "").unwrap();
    fs::set_permissions(
        &outputs,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let c = Container::of(
        &images.builder,
        &[
            ("MB_REGISTRY", &reg.host),
            ("MB_REPOSITORY", "acct/modules/chrony-module"),
            ("MB_PATH", "."),
            ("MB_COSIGN_KEY", &key),
            ("MB_COSIGN_PASSWORD", "image test"),
            ("MB_FULCIO_URL", "https://fulcio.invalid"),
            ("MB_REKOR_URL", ""),
            ("MB_VERSION", ""),
            ("MB_INSECURE", "false"),
            ("GITEA_ACTIONS", "true"),
            ("GITHUB_REF_TYPE", "tag"),
            ("GITHUB_REF_NAME", "v1.5.0"),
            ("GITHUB_OUTPUT", "/work/.outputs"),
        ],
    );
    let t = Instant::now();
    let o = c.run(
        &[(work.path(), "/work", false)],
        Some("/usr/local/bin/module-builder-action"),
        &[],
    );
    let elapsed = t.elapsed();
    ok(o);
    eprintln!(
        "the Actions step inside the image: {:.2}s wall",
        elapsed.as_secs_f64()
    );
    let out = fs::read_to_string(&outputs).unwrap();
    assert!(out.contains("version=1.5.0"), "{out}");
    let reference = out
        .lines()
        .find_map(|l| l.strip_prefix("reference="))
        .unwrap();
    assert!(
        !work.path().join("dist").exists(),
        "the read-only workspace was left as it was"
    );
    ok(host_mb()
        .arg("verify")
        .arg(reference)
        .arg("--key")
        .arg(keys.path().join("cosign.pub"))
        .output()
        .unwrap());
}

/// The sum of the image's layer sizes as `buildah push` writes them (gzip'd): what a runner
/// downloads.
fn compressed_size(image: &str) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let dest = format!("oci:{}", dir.display());
    ok(buildah(&["push", "--quiet", image, &dest]));
    let blob = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum()
}

/// The image unpacked (what `docker images` shows): the bytes of every file in its root
/// file system, through `buildah mount` of a container of it.
fn unpacked_size(image: &str) -> u64 {
    let c = Container::of(image, &[]);
    let root = PathBuf::from(ok(buildah(&["mount", &c.id])).trim());
    let mut total = 0;
    let mut todo = vec![root.clone()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                todo.push(e.path());
            } else {
                total += md.len();
            }
        }
    }
    let _ = buildah(&["umount", &c.id]);
    total
}

#[test]
fn the_image_size_is_reported_and_within_the_target() {
    let images = images();
    let mb = |n: u64| n as f64 / 1e6;
    let builder = unpacked_size(&images.builder);
    let builder_gz = compressed_size(&images.builder);
    let webhook = unpacked_size(&images.webhook);
    let webhook_gz = compressed_size(&images.webhook);
    eprintln!(
        "image size: {} {:.1} MB ({:.1} MB gzip'd); {} {:.1} MB ({:.1} MB gzip'd)",
        images.builder,
        mb(builder),
        mb(builder_gz),
        images.webhook,
        mb(webhook),
        mb(webhook_gz)
    );
    assert!(
        builder <= SIZE_LIMIT,
        "module-builder image is {:.1} MB, over the {:.0} MB target",
        mb(builder),
        mb(SIZE_LIMIT)
    );
}
