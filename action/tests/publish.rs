//! push, sign, verify and release against a real registry (Debian's docker-registry), with
//! HTTP stand-ins for Fulcio and Rekor and a test CA for keyless signing.

use powernode_module::{
    digest::Digest,
    registry::{Credentials, Registry, parse_reference, with_tag},
    trust::{
        layout::{SignatureManifest, signature_tag},
        trusted_root::TrustedRoot,
    },
};
use powernode_testkit::{
    copy_tree, example,
    http::{Response, Server},
    registry::TestRegistry,
    sigstore::{FakeCtLog, FakeFulcio, FakeRekor, PemLayout, SctFrom, TestCa, Validity, jwt},
    workspace,
};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

fn mb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_module-builder"));
    for k in [
        "SOURCE_DATE_EPOCH",
        "GITHUB_ACTIONS",
        "GITEA_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_REF",
        "GITHUB_REF_NAME",
        "GITHUB_REF_TYPE",
        "SIGSTORE_ID_TOKEN",
        "COSIGN_PASSWORD",
        "COSIGN_KEY",
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "FULCIO_URL",
        "REKOR_URL",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ] {
        c.env_remove(k);
    }
    // No docker config from the machine running the tests.
    c.env("DOCKER_CONFIG", "/nonexistent");
    c
}

/// The command succeeded (else: its exit, stdout and stderr); its stdout.
fn ok(o: Output) -> String {
    powernode_testkit::succeeded(o)
}

fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected failure\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of an example module, built into DIR/dist.
fn built(name: &str, version: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&example(name), t.path());
    ok(mb()
        .args([
            "build",
            "--source-date-epoch",
            "1700000000",
            "--version",
            version,
        ])
        .arg(t.path())
        .output()
        .unwrap());
    t
}

fn push(dir: &Path, target: &str) -> String {
    ok(mb()
        .arg("push")
        .arg(dir)
        .args(["--ref", target])
        .output()
        .unwrap())
    .trim()
    .to_owned()
}

fn digest_of(reference: &str) -> Digest {
    reference.rsplit_once('@').unwrap().1.parse().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(reference: &str) -> (Registry, oci_client::Reference) {
    let r = parse_reference(reference).unwrap();
    (Registry::new(&r, Credentials::Anonymous, false), r)
}

fn oras_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ORAS_PYTHON") {
        return p.into();
    }
    let p = workspace().join("target/oras-venv/bin/python");
    assert!(
        p.exists(),
        "oras-py is needed for this test: python3 -m venv target/oras-venv && \
         target/oras-venv/bin/pip install oras (scripts/test does this), or set ORAS_PYTHON"
    );
    p
}

#[test]
fn push_is_idempotent_and_readable_by_oras_and_skopeo() {
    let reg = TestRegistry::start();
    let m = built("my-redis", "0.1.0");
    let target = reg.repo("acct/modules/my-redis-module");
    let first = push(m.path(), &target);
    assert!(first.starts_with(&format!("{target}@sha256:")), "{first}");
    let o = mb()
        .arg("push")
        .arg(m.path())
        .args(["--ref", &target])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        ok(o).trim(),
        first,
        "pushing the same build twice changes nothing"
    );
    assert!(stderr.contains("already in the registry"), "{stderr}");

    // skopeo sees our media types and annotations.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}:v0.1.0"))
        .output()
        .expect("skopeo is needed: apt-get install -y skopeo");
    let v: serde_json::Value = serde_json::from_slice(&ok(raw).into_bytes()).unwrap();
    assert_eq!(v["artifactType"], "application/vnd.powernode.module.v1");
    assert_eq!(
        v["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        v["layers"][0]["mediaType"],
        "application/vnd.powernode.module.v1+tar"
    );
    let mj: serde_json::Value =
        serde_json::from_slice(&fs::read(m.path().join("dist/module.json")).unwrap()).unwrap();
    assert_eq!(v["layers"][0]["digest"], mj["tar"]["sha256"]);
    assert_eq!(
        v["annotations"]["org.powernode.module.composefs-digest"],
        mj["composefs"]["digest"]
    );
    assert_eq!(
        v["annotations"]["org.powernode.module.composefs-format"],
        "1"
    );
    assert_eq!(v["annotations"]["org.powernode.module.name"], "my-redis");
    assert_eq!(
        v["annotations"]["org.opencontainers.image.version"],
        "0.1.0"
    );
    assert_eq!(
        v["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );

    // oras-py pulls the very bytes we built.
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "import oras.client\nc = oras.client.OrasClient(hostname='{}', insecure=True)\nprint(c.pull(target='{target}:v0.1.0', outdir='{}'))\n",
        reg.host,
        out.path().display()
    );
    ok(Command::new(oras_python())
        .arg("-c")
        .arg(script)
        .output()
        .unwrap());
    assert_eq!(
        fs::read(out.path().join("module.tar")).unwrap(),
        fs::read(m.path().join("dist/module.tar")).unwrap()
    );
}

#[test]
fn plain_http_only_for_loopback_unless_insecure() {
    // A non-loopback registry name: the client must try HTTPS (and fail to connect),
    // never fall back to plain HTTP by itself.
    let m = built("chrony", "1.0.0");
    let o = mb()
        .arg("push")
        .arg(m.path())
        .args(["--ref", "registry.invalid:5999/acct/chrony"])
        .output()
        .unwrap();
    let err = fails(o);
    assert!(err.contains("registry.invalid"), "{err}");
}

#[test]
fn key_signing_appends_and_verifies() {
    let reg = TestRegistry::start();
    let m = built("nginx", "1.2.0");
    let target = reg.repo("acct/modules/nginx-module");
    let reference = push(m.path(), &target);
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("cosign");
    ok(mb()
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(&prefix)
        .env("COSIGN_PASSWORD", "correct horse")
        .output()
        .unwrap());
    let key = keys.path().join("cosign.key");
    let public = keys.path().join("cosign.pub");
    assert!(
        fs::read_to_string(&key)
            .unwrap()
            .contains("ENCRYPTED SIGSTORE PRIVATE KEY")
    );

    let err = fails(
        mb().arg("sign")
            .arg(&reference)
            .arg("--key")
            .arg(&key)
            .env("COSIGN_PASSWORD", "wrong")
            .output()
            .unwrap(),
    );
    assert!(err.contains("wrong COSIGN_PASSWORD"), "{err}");

    for _ in 0..2 {
        ok(mb()
            .arg("sign")
            .arg(&reference)
            .arg("--key")
            .arg(&key)
            .env("COSIGN_PASSWORD", "correct horse")
            .output()
            .unwrap());
    }
    let (c, r) = client(&reference);
    let sig = rt()
        .block_on(c.fetch_manifest(&with_tag(&r, &signature_tag(&digest_of(&reference)))))
        .unwrap()
        .unwrap();
    let sm = SignatureManifest::parse(&sig.0).unwrap();
    assert_eq!(
        sm.layers.len(),
        2,
        "the second signature is appended, the first kept"
    );

    let out = ok(mb()
        .arg("verify")
        .arg(format!("{target}:v1.2.0"))
        .arg("--key")
        .arg(&public)
        .output()
        .unwrap());
    assert!(
        out.contains("Verified") && out.contains("cosign.pub"),
        "{out}"
    );

    let other = tempfile::tempdir().unwrap();
    ok(mb()
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(other.path().join("other"))
        .env("COSIGN_PASSWORD", "x")
        .output()
        .unwrap());
    let err = fails(
        mb().arg("verify")
            .arg(&reference)
            .arg("--key")
            .arg(other.path().join("other.pub"))
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("does not verify with any trusted key"),
        "{err}"
    );

    // Unsigned artifact.
    let n = built("apache", "2.0.0");
    let unsigned = push(n.path(), &reg.repo("acct/modules/apache-module"));
    let err = fails(
        mb().arg("verify")
            .arg(&unsigned)
            .arg("--key")
            .arg(&public)
            .output()
            .unwrap(),
    );
    assert!(err.contains("is not signed"), "{err}");
}

/// Everything keyless tests need: registry, CA, Fulcio and Rekor stand-ins, trusted root.
struct Keyless {
    reg: TestRegistry,
    fulcio: FakeFulcio,
    rekor: FakeRekor,
    dir: tempfile::TempDir,
    root: PathBuf,
}

const IDENTITY: &str = "https://git.example.org/acct/modules/my-redis-module@refs/tags/v0.1.0";
const ISSUER: &str = "https://gitea.example.org";

fn keyless() -> Keyless {
    let ca = Arc::new(TestCa::new("test fulcio"));
    let fulcio = FakeFulcio::start(ca.clone());
    let rekor = FakeRekor::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    fs::write(&root, ca.trusted_root(Some(&rekor.public_key_der))).unwrap();
    Keyless {
        reg: TestRegistry::start(),
        fulcio,
        rekor,
        dir,
        root,
    }
}

fn token() -> String {
    jwt(&serde_json::json!({
        "iss": ISSUER,
        "sub": "repo:acct/modules/my-redis-module:ref:refs/tags/v0.1.0",
        "san": IDENTITY,
        "aud": "sigstore",
    }))
}

impl Keyless {
    fn release(&self, dir: &Path, target: &str, version: &str) -> Output {
        mb().arg("release")
            .arg(dir)
            .args([
                "--ref",
                target,
                "--version",
                version,
                "--source-date-epoch",
                "1700000000",
            ])
            .args([
                "--fulcio-url",
                &self.fulcio.server.url,
                "--rekor-url",
                &self.rekor.server.url,
            ])
            .env("SIGSTORE_ID_TOKEN", token())
            .output()
            .unwrap()
    }

    fn verify(&self, reference: &str, identity: &str, issuer: &str, root: &Path) -> Output {
        mb().arg("verify")
            .arg(reference)
            .args([
                "--certificate-identity-regexp",
                identity,
                "--certificate-oidc-issuer-regexp",
                issuer,
            ])
            .arg("--trusted-root")
            .arg(root)
            .output()
            .unwrap()
    }
}

fn released(k: &Keyless, repo: &str, version: &str) -> (tempfile::TempDir, String) {
    let m = tempfile::tempdir().unwrap();
    copy_tree(&example("my-redis"), m.path());
    let out = ok(k.release(m.path(), &k.reg.repo(repo), version));
    let reference = out.lines().last().unwrap().trim().to_owned();
    (m, reference)
}

const ID_RE: &str = r"^https://git\.example\.org/acct/modules/my-redis-module@.*$";
const ISS_RE: &str = r"^https://gitea\.example\.org$";

#[test]
fn keyless_release_verifies_and_each_forgery_fails_for_its_reason() {
    let k = keyless();
    let (_m, reference) = released(&k, "acct/modules/my-redis-module", "0.1.0");
    assert_eq!(k.fulcio.server.requests().len(), 1);
    assert_eq!(k.rekor.server.requests().len(), 1);

    let out = ok(k.verify(&reference, ID_RE, ISS_RE, &k.root));
    assert!(out.contains(IDENTITY) && out.contains(ISSUER), "{out}");

    // The signature manifest carries the PEM certificate (raw newlines, escaped once).
    let (c, r) = client(&reference);
    let d = digest_of(&reference);
    let rt = rt();
    let (sig_bytes, _) = rt
        .block_on(c.fetch_manifest(&with_tag(&r, &signature_tag(&d))))
        .unwrap()
        .unwrap();
    let sm = SignatureManifest::parse(&sig_bytes).unwrap();
    let ann = sm.layers[0].annotations.clone().unwrap();
    assert!(ann["dev.sigstore.cosign/certificate"].starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(ann.contains_key("dev.sigstore.cosign/bundle"));
    assert!(String::from_utf8_lossy(&sig_bytes).contains("-----BEGIN CERTIFICATE-----\\n"));

    // Wrong identity, wrong issuer.
    let err = fails(k.verify(
        &reference,
        r"^https://git\.example\.org/acct/modules/other@.*$",
        ISS_RE,
        &k.root,
    ));
    assert!(err.contains("does not match the pinned identity"), "{err}");
    let err = fails(k.verify(
        &reference,
        ID_RE,
        r"^https://token\.actions\.githubusercontent\.com$",
        &k.root,
    ));
    assert!(err.contains("does not match the pinned issuer"), "{err}");

    // Untrusted CA: a trusted root with another CA (and the same Rekor).
    let other_root = k.dir.path().join("other_root.json");
    fs::write(
        &other_root,
        TestCa::new("someone else").trusted_root(Some(&k.rekor.public_key_der)),
    )
    .unwrap();
    let err = fails(k.verify(&reference, ID_RE, ISS_RE, &other_root));
    assert!(err.contains("does not chain to a trusted root"), "{err}");

    // Tampered artifact: another build under the same tag has no valid signature.
    let t = built("my-redis", "0.1.0");
    std::fs::write(
        t.path().join("rootfs/etc/redis/redis.conf"),
        "protected-mode no\n",
    )
    .unwrap();
    ok(mb()
        .args([
            "build",
            "--source-date-epoch",
            "1700000000",
            "--version",
            "0.1.0",
        ])
        .arg(t.path())
        .output()
        .unwrap());
    let tag = format!("{}:v0.1.0", k.reg.repo("acct/modules/my-redis-module"));
    let evil = push(t.path(), &tag);
    assert_ne!(digest_of(&evil), d);
    let err = fails(k.verify(&tag, ID_RE, ISS_RE, &k.root));
    assert!(err.contains("is not signed"), "{err}");
    // … and copying the good signature manifest onto the evil digest does not help.
    let evil_sig = with_tag(&r, &signature_tag(&digest_of(&evil)));
    rt.block_on(c.push_manifest(
        &evil_sig,
        &sig_bytes,
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let err = fails(k.verify(&tag, ID_RE, ISS_RE, &k.root));
    assert!(err.contains("signs another manifest"), "{err}");

    // Certificate and bundle copied onto a garbage signature.
    let mut forged = sm.clone();
    let mut a = ann.clone();
    a.insert(
        "dev.cosignproject.cosign/signature".into(),
        "MEUCIQDx2G0Z5oQ4x8kq1Vd9+8vX8Cq2j3d9pE0c0tq1n2v3wIgQ1v0e2c8Zr7n0m1l2k3j4h5g6f7e8d9c0b1a2z3y4x5w=".into(),
    );
    forged.layers[0].annotations = Some(a);
    let forged_bytes = forged.to_bytes();
    rt.block_on(c.push_manifest(
        &with_tag(&r, &signature_tag(&d)),
        &forged_bytes,
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let err = fails(k.verify(&reference, ID_RE, ISS_RE, &k.root));
    assert!(err.contains("signature does not verify"), "{err}");
}

#[test]
fn keyless_verify_accepts_single_line_pem_certificate() {
    let k = keyless();
    *k.fulcio.pem_layout.lock().unwrap() = PemLayout::SingleLine;
    let (_m, reference) = released(&k, "acct/modules/my-redis-module", "0.1.0");
    // The certificate is stored as Fulcio answered it: one line of base64.
    let (c, r) = client(&reference);
    let (sig_bytes, _) = rt()
        .block_on(c.fetch_manifest(&with_tag(&r, &signature_tag(&digest_of(&reference)))))
        .unwrap()
        .unwrap();
    let ann = SignatureManifest::parse(&sig_bytes).unwrap().layers[0]
        .annotations
        .clone()
        .unwrap();
    let cert = &ann["dev.sigstore.cosign/certificate"];
    assert_eq!(cert.lines().count(), 3, "{cert}");
    assert!(cert.lines().nth(1).unwrap().len() > 64, "{cert}");

    let out = ok(k.verify(&reference, ID_RE, ISS_RE, &k.root));
    assert!(out.contains(IDENTITY) && out.contains(ISSUER), "{out}");
}

#[test]
fn keyless_verify_checks_the_embedded_sct_when_the_trusted_root_lists_ct_logs() {
    let k = keyless();
    let ct = Arc::new(FakeCtLog::new());
    *k.fulcio.sct.lock().unwrap() = Some(SctFrom {
        log: ct.clone(),
        tamper: false,
    });
    let (_m, reference) = released(&k, "acct/modules/my-redis-module", "0.1.0");
    let root: TrustedRoot = TrustedRoot::load(&k.root).unwrap();
    let with_ct = |log: &FakeCtLog, name: &str| {
        let mut r = root.clone();
        r.ctlogs.push(log.log_key());
        let path = k.dir.path().join(name);
        fs::write(&path, r.to_json_pretty()).unwrap();
        path
    };
    ok(k.verify(&reference, ID_RE, ISS_RE, &with_ct(&ct, "ct.json")));
    let err = fails(k.verify(
        &reference,
        ID_RE,
        ISS_RE,
        &with_ct(&FakeCtLog::new(), "other_ct.json"),
    ));
    assert!(
        err.contains("no valid SCT from a CT log of the trusted root")
            && err.contains("which the trusted root does not list"),
        "{err}"
    );
}

#[test]
fn expired_certificate_fails() {
    let k = keyless();
    *k.fulcio.validity.lock().unwrap() = Validity::Expired;
    let (_m, reference) = released(&k, "acct/modules/my-redis-module", "0.2.0");
    let err = fails(k.verify(&reference, ID_RE, ISS_RE, &k.root));
    assert!(err.contains("not valid at signing time"), "{err}");
}

#[test]
fn keyless_without_tlog_needs_the_explicit_waiver() {
    let k = keyless();
    let m = tempfile::tempdir().unwrap();
    copy_tree(&example("my-redis"), m.path());
    let out = ok(mb()
        .arg("release")
        .arg(m.path())
        .args([
            "--ref",
            &k.reg.repo("acct/modules/my-redis-module"),
            "--version",
            "0.3.0",
        ])
        .args(["--fulcio-url", &k.fulcio.server.url])
        .env("SIGSTORE_ID_TOKEN", token())
        .output()
        .unwrap());
    let reference = out.lines().last().unwrap().trim().to_owned();
    let err = fails(k.verify(&reference, ID_RE, ISS_RE, &k.root));
    assert!(err.contains("no transparency-log bundle"), "{err}");
    ok(mb()
        .arg("verify")
        .arg(&reference)
        .args([
            "--certificate-identity-regexp",
            ID_RE,
            "--certificate-oidc-issuer-regexp",
            ISS_RE,
            "--insecure-ignore-tlog",
        ])
        .arg("--trusted-root")
        .arg(&k.root)
        .output()
        .unwrap());
}

#[test]
fn a_registry_error_while_fetching_signatures_fails_verification() {
    // A registry that serves the API root but fails every other request.
    let broken = Server::start(|req| {
        if req.path == "/v2/" {
            Response::json(200, &serde_json::json!({}))
        } else {
            Response::text(500, "storage backend down")
        }
    });
    let host = broken.url.trim_start_matches("http://");
    let keys = tempfile::tempdir().unwrap();
    ok(mb()
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(keys.path().join("k"))
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap());
    let reference = format!("{host}/acct/modules/x@sha256:{}", "ab".repeat(32));
    let err = fails(
        mb().arg("verify")
            .arg(&reference)
            .arg("--key")
            .arg(keys.path().join("k.pub"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("could not fetch signatures"), "{err}");
    assert!(err.contains("500"), "{err}");
    // Retried before giving up.
    let sig_fetches = broken
        .requests()
        .iter()
        .filter(|r| r.path.contains(".sig"))
        .count();
    assert!(sig_fetches >= 2, "expected retries, saw {sig_fetches}");
}

#[test]
fn release_in_actions_writes_outputs_and_summary() {
    let k = keyless();
    let m = tempfile::tempdir().unwrap();
    copy_tree(&example("my-redis"), m.path());
    let outputs = m.path().join("github_output");
    let summary = m.path().join("summary.md");
    let run = |ref_type: &str, version: Option<&str>| {
        let mut c = mb();
        c.arg("release")
            .arg(m.path())
            .args(["--ref", &k.reg.repo("acct/modules/my-redis-module")])
            .args([
                "--fulcio-url",
                &k.fulcio.server.url,
                "--rekor-url",
                &k.rekor.server.url,
            ])
            .env("SIGSTORE_ID_TOKEN", token())
            .env("GITEA_ACTIONS", "true")
            .env("GITHUB_REF_TYPE", ref_type)
            .env(
                "GITHUB_REF_NAME",
                if ref_type == "tag" { "v0.4.0" } else { "main" },
            )
            .env("GITHUB_OUTPUT", &outputs)
            .env("GITHUB_STEP_SUMMARY", &summary);
        if let Some(v) = version {
            c.args(["--version", v]);
        }
        c.output().unwrap()
    };
    let err = fails(run("branch", None));
    assert!(err.contains("not for a tag"), "{err}");
    assert!(!outputs.exists());

    let out = ok(run("tag", None));
    assert!(
        out.contains("::group::validate")
            && out.contains("::group::sign")
            && out.contains("::endgroup::"),
        "{out}"
    );
    let o = fs::read_to_string(&outputs).unwrap();
    let get = |k: &str| {
        o.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {o}"))
            .to_owned()
    };
    assert_eq!(get("version"), "0.4.0");
    let reference = get("reference");
    assert!(reference.ends_with(&get("digest")), "{o}");
    let mj: serde_json::Value =
        serde_json::from_slice(&fs::read(m.path().join("dist/module.json")).unwrap()).unwrap();
    assert_eq!(
        get("composefs-digest"),
        mj["composefs"]["digest"].as_str().unwrap()
    );
    let s = fs::read_to_string(&summary).unwrap();
    assert!(
        s.contains("| Reference | `") && s.contains(&reference) && s.contains("keyless"),
        "{s}"
    );
    ok(k.verify(&reference, ID_RE, ISS_RE, &k.root));
}
