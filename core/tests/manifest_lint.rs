//! Lints that need the rootfs: `analyse` over small module directories built in a tempdir.

use powernode_module::{
    artifact::{
        plan::{Analysis, analyse},
        walk::Kind,
    },
    diagnostics::{Code, Finding, Report, Severity},
    manifest::Category,
};
use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
};

/// A config module shipping `/etc/me/**`; tests append sections from line 11 on.
const BASE: &str = r#"schema_version: 1
identity:
  name: me
  category: userland
  variety: config
  cosign_identity_regexp: '^https://git\.example\.org/acct/me-module@.*$'
  cosign_issuer_regexp: '^https://gitea\.example\.org$'
file_spec:
  include:
    - "/etc/me/**"
"#;

/// One rootfs entry: a directory when the path ends in '/', a symlink when the content
/// starts with "-> ", else a file with that content and `mode`.
struct E<'a>(&'a str, &'a str, u32);

/// Writes `manifest.yaml` and `rootfs/` into a fresh tempdir.
fn module(manifest: &str, entries: &[E]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let rootfs = t.path().join("rootfs");
    fs::create_dir(&rootfs).expect("rootfs");
    fs::write(t.path().join("manifest.yaml"), manifest).expect("manifest");
    for E(rel, content, mode) in entries {
        let p = rootfs.join(rel.trim_end_matches('/'));
        fs::create_dir_all(p.parent().expect("parent")).expect("parents");
        if rel.ends_with('/') {
            fs::create_dir_all(&p).expect("dir");
        } else if let Some(target) = content.strip_prefix("-> ") {
            symlink(target, &p).expect("symlink");
            continue;
        } else {
            fs::write(&p, content).expect("file");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    t
}

fn run(manifest: &str, entries: &[E]) -> Analysis {
    let t = module(manifest, entries);
    analyse(t.path(), None)
}

fn file(rel: &str) -> E<'_> {
    E(rel, "x\n", 0o644)
}

fn codes(fs: &[Finding]) -> Vec<Code> {
    fs.iter().map(|f| f.code).collect()
}

fn targets(a: &Analysis) -> Vec<String> {
    let plan = a
        .plan
        .as_ref()
        .unwrap_or_else(|| panic!("no plan: {:#?}", a.report));
    plan.entries.iter().map(|e| e.node.target()).collect()
}

fn mode_of(a: &Analysis, target: &str) -> u32 {
    let plan = a
        .plan
        .as_ref()
        .unwrap_or_else(|| panic!("no plan: {:#?}", a.report));
    plan.entries
        .iter()
        .find(|e| e.node.target() == target)
        .unwrap_or_else(|| panic!("{target} not shipped"))
        .mode
}

/// Every finding sits in the bucket of its severity, and `valid` agrees with the buckets.
fn check_buckets(r: &Report) {
    for f in &r.errors {
        assert_eq!(f.severity, Severity::Error, "{f}");
    }
    for f in &r.conflicts {
        assert_eq!(f.severity, Severity::Conflict, "{f}");
    }
    for f in &r.warnings {
        assert_eq!(f.severity, Severity::Warning, "{f}");
    }
    assert_eq!(r.valid, r.errors.is_empty() && r.conflicts.is_empty());
}

#[test]
fn a_valid_config_module_with_a_mask_has_no_findings() {
    let text = format!(
        "{BASE}protected_spec: [\"/etc/me/me.conf\"]\nmodes:\n  \"/etc/me/me.conf\": \"0640\"\nmask:\n  - \"/usr/lib/other/plugin.so\"\n"
    );
    let a = run(
        &text,
        &[file("etc/me/me.conf"), file("usr/lib/other/unrelated")],
    );
    assert!(a.report.valid, "{:#?}", a.report);
    assert!(a.report.errors.is_empty(), "{:#?}", a.report);
    assert!(a.report.warnings.is_empty(), "{:#?}", a.report);
    assert!(a.report.conflicts.is_empty(), "{:#?}", a.report);
    let plan = a.plan.as_ref().expect("plan");
    assert_eq!(plan.manifest.mask[0].value, "/usr/lib/other/plugin.so");
    assert_eq!(targets(&a), ["/etc", "/etc/me", "/etc/me/me.conf"]);
    assert_eq!(plan.file_count(), 1);
}

#[test]
fn an_include_that_matches_nothing_is_a_warning() {
    let text = BASE.replace(
        "    - \"/etc/me/**\"\n",
        "    - \"/etc/me/**\"\n    - \"/opt/me/*.conf\"\n    - \"/etc/me/secret.key\"\n",
    ) + "  exclude: [\"/etc/me/secret.key\"]\n";
    let a = run(
        &text,
        &[
            file("etc/me/me.conf"),
            file("etc/me/secret.key"),
            file("opt/me/sub/deep.conf"),
        ],
    );
    check_buckets(&a.report);
    assert!(a.report.valid, "{:#?}", a.report);
    let w = &a.report.warnings;
    assert_eq!(
        codes(w),
        [Code::IncludeMatchesNothing, Code::IncludeMatchesNothing],
        "{w:#?}"
    );
    // `*` does not cross '/', so /opt/me/sub/deep.conf is not matched.
    assert_eq!(w[0].field.as_deref(), Some("file_spec.include[1]"));
    assert_eq!((w[0].line, w[0].column), (Some(11), Some(7)), "{}", w[0]);
    assert!(w[0].message.contains(r#""/opt/me/*.conf""#), "{}", w[0]);
    // A pattern whose only match is excluded matches nothing either.
    assert_eq!(w[1].field.as_deref(), Some("file_spec.include[2]"));
    assert_eq!(w[1].line, Some(12), "{}", w[1]);
    assert!(w[1].message.contains(r#""/etc/me/secret.key""#), "{}", w[1]);
    assert_eq!(
        w[1].to_string(),
        "manifest.yaml:12:7: warning[INCLUDE_MATCHES_NOTHING] file_spec.include[2]: \
         \"/etc/me/secret.key\" matches nothing under rootfs/ (or only excluded paths)"
    );
}

#[test]
fn a_protected_path_that_is_not_shipped_is_a_warning() {
    let text = format!(
        "{BASE}protected_spec:\n  - \"/etc/me/me.conf\"\n  - \"/etc/me/gone.conf\"\n  - \"/etc/me\"\n"
    );
    let a = run(&text, &[file("etc/me/me.conf")]);
    check_buckets(&a.report);
    assert!(a.report.valid, "{:#?}", a.report);
    let w = &a.report.warnings;
    assert_eq!(
        codes(w),
        [Code::ProtectedNotShipped, Code::ProtectedNotShipped],
        "{w:#?}"
    );
    assert_eq!(w[0].field.as_deref(), Some("protected_spec[1]"));
    assert_eq!((w[0].line, w[0].column), (Some(13), Some(5)), "{}", w[0]);
    assert!(w[0].message.contains(r#""/etc/me/gone.conf""#), "{}", w[0]);
    // Protection is about files: a directory, even shipped, does not count.
    assert_eq!(w[1].field.as_deref(), Some("protected_spec[2]"));
    assert_eq!(w[1].line, Some(14), "{}", w[1]);
}

#[test]
fn a_mode_for_a_path_not_shipped_is_a_conflict() {
    let text = format!(
        "{BASE}modes:\n  \"/etc/me/gone.conf\": \"0600\"\n  \"/etc/me/link\": \"0600\"\n  \"/etc/me/me.conf\": \"0600\"\n"
    );
    let a = run(
        &text,
        &[file("etc/me/me.conf"), E("etc/me/link", "-> me.conf", 0)],
    );
    check_buckets(&a.report);
    assert!(!a.report.valid, "{:#?}", a.report);
    assert!(a.plan.is_none());
    let c = &a.report.conflicts;
    assert_eq!(
        codes(c),
        [Code::ModeNotShipped, Code::ModeNotShipped],
        "{c:#?}"
    );
    assert_eq!(c[0].field.as_deref(), Some(r#"modes."/etc/me/gone.conf""#));
    assert_eq!((c[0].line, c[0].column), (Some(12), Some(24)), "{}", c[0]);
    assert!(c[0].message.contains("/etc/me/gone.conf"), "{}", c[0]);
    // A symlink is shipped, but has no mode of its own to set.
    assert_eq!(c[1].field.as_deref(), Some(r#"modes."/etc/me/link""#));
    assert_eq!(c[1].line, Some(13), "{}", c[1]);
    assert!(c[1].message.contains("file or directory"), "{}", c[1]);
}

#[test]
fn masking_a_shipped_path_is_a_conflict() {
    let text = format!("{BASE}mask:\n  - \"/usr/lib/other/x\"\n  - \"/etc/me/*.conf\"\n");
    let a = run(&text, &[file("etc/me/a.conf"), file("etc/me/b.txt")]);
    check_buckets(&a.report);
    assert!(!a.report.valid, "{:#?}", a.report);
    assert!(a.plan.is_none());
    let c = &a.report.conflicts;
    assert_eq!(codes(c), [Code::MaskShipped], "{c:#?}");
    assert_eq!(c[0].field.as_deref(), Some("mask[1]"));
    assert_eq!((c[0].line, c[0].column), (Some(13), Some(5)), "{}", c[0]);
    assert!(c[0].message.contains("/etc/me/a.conf"), "{}", c[0]);
    assert!(a.report.warnings.is_empty(), "{:#?}", a.report);
}

#[test]
fn shipping_no_files_is_a_warning() {
    let text = BASE.replace("\"/etc/me/**\"", "\"/etc/me\"") + "  exclude: [\"/etc/me/*\"]\n";
    let a = run(
        &text,
        &[file("etc/me/a.conf"), E("etc/me/empty/", "", 0o755)],
    );
    check_buckets(&a.report);
    assert!(a.report.valid, "{:#?}", a.report);
    assert_eq!(codes(&a.report.warnings), [Code::NothingShipped]);
    let f = &a.report.warnings[0];
    assert!(f.message.contains("no files"), "{f}");
    // Only the (empty) included directory and its ancestor remain.
    assert_eq!(targets(&a), ["/etc", "/etc/me"]);
    assert_eq!(a.plan.as_ref().expect("plan").file_count(), 0);

    // An empty rootfs: nothing shipped, and the include matches nothing.
    let a = run(BASE, &[]);
    assert_eq!(
        codes(&a.report.warnings),
        [Code::IncludeMatchesNothing, Code::NothingShipped]
    );
}

#[test]
fn a_category_mismatch_is_an_error() {
    let t = module(BASE, &[file("etc/me/a.conf")]);
    let a = analyse(t.path(), Some(Category::Security));
    check_buckets(&a.report);
    assert!(!a.report.valid);
    assert!(a.plan.is_none());
    assert_eq!(codes(&a.report.errors), [Code::CategoryMismatch]);
    let f = &a.report.errors[0];
    assert_eq!(f.field.as_deref(), Some("identity.category"));
    assert_eq!((f.line, f.column), (Some(4), Some(13)), "{f}");
    assert!(f.message.contains("userland"), "{f}");
    assert!(f.message.contains("security"), "{f}");

    let a = analyse(t.path(), Some(Category::Userland));
    assert!(a.report.valid, "{:#?}", a.report);
    assert!(a.report.all().next().is_none(), "{:#?}", a.report);
}

#[test]
fn modes_override_the_normalised_mode() {
    let text = format!(
        "{BASE}modes:\n  \"/etc/me/secret.conf\": \"0600\"\n  \"/etc/me/private\": \"0700\"\n  \"/etc/me/tool\": \"4750\"\n"
    );
    let a = run(
        &text,
        &[
            E("etc/me/secret.conf", "s\n", 0o644),
            E("etc/me/plain.conf", "p\n", 0o600),
            E("etc/me/run", "#!/bin/sh\n", 0o700),
            E("etc/me/tool", "#!/bin/sh\n", 0o755),
            E("etc/me/private/", "", 0o755),
            E("etc/me/open/", "", 0o777),
        ],
    );
    assert!(a.report.valid, "{:#?}", a.report);
    assert!(a.report.all().next().is_none(), "{:#?}", a.report);
    // Overridden.
    assert_eq!(mode_of(&a, "/etc/me/secret.conf"), 0o600);
    assert_eq!(mode_of(&a, "/etc/me/private"), 0o700);
    assert_eq!(mode_of(&a, "/etc/me/tool"), 0o4750);
    // Normalised: what is on disk only decides "executable or not".
    assert_eq!(mode_of(&a, "/etc/me/plain.conf"), 0o644);
    assert_eq!(mode_of(&a, "/etc/me/run"), 0o755);
    assert_eq!(mode_of(&a, "/etc/me/open"), 0o755);
    assert_eq!(mode_of(&a, "/etc/me"), 0o755);
}

#[test]
fn exclusion_wins_over_inclusion() {
    let text = BASE.replace(
        "    - \"/etc/me/**\"\n",
        "    - \"/etc/me/**\"\n    - \"/etc/me/keys/public.pem\"\n",
    ) + "  exclude:\n    - \"/etc/me/keys\"\n    - \"/etc/me/*.bak\"\n";
    let a = run(
        &text,
        &[
            file("etc/me/me.conf"),
            file("etc/me/me.conf.bak"),
            file("etc/me/keys/public.pem"),
            file("etc/me/keys/private.pem"),
            file("etc/me/sub/old.bak"),
        ],
    );
    assert!(a.report.valid, "{:#?}", a.report);
    assert_eq!(
        targets(&a),
        [
            "/etc",
            "/etc/me",
            "/etc/me/me.conf",
            "/etc/me/sub",
            "/etc/me/sub/old.bak",
        ]
    );
    // The explicit include of an excluded file is reported as matching nothing.
    assert_eq!(codes(&a.report.warnings), [Code::IncludeMatchesNothing]);
    assert_eq!(
        a.report.warnings[0].field.as_deref(),
        Some("file_spec.include[1]")
    );
}

#[test]
fn ancestors_of_included_files_are_shipped_as_directories_and_nothing_else() {
    let text = BASE.replace("\"/etc/me/**\"", "\"/usr/lib/me/bin/tool\"");
    let a = run(
        &text,
        &[
            E("usr/lib/me/bin/tool", "#!/bin/sh\n", 0o755),
            file("usr/lib/me/bin/other"),
            file("usr/lib/me/data"),
            file("usr/share/doc/me/README"),
            file("etc/unrelated.conf"),
            E("var/empty/", "", 0o755),
        ],
    );
    assert!(a.report.valid, "{:#?}", a.report);
    assert!(a.report.all().next().is_none(), "{:#?}", a.report);
    let plan = a.plan.as_ref().expect("plan");
    let shipped: Vec<(String, bool, u32)> = plan
        .entries
        .iter()
        .map(|e| (e.node.target(), e.node.kind == Kind::Dir, e.mode))
        .collect();
    let want = |t: &str, dir: bool, mode: u32| (t.to_string(), dir, mode);
    assert_eq!(
        shipped,
        [
            want("/usr", true, 0o755),
            want("/usr/lib", true, 0o755),
            want("/usr/lib/me", true, 0o755),
            want("/usr/lib/me/bin", true, 0o755),
            want("/usr/lib/me/bin/tool", false, 0o755),
        ]
    );
}

#[test]
fn findings_are_sorted_by_code_in_each_bucket() {
    // Written so that the lints emit findings out of code order.
    let text = r#"schema_version: 1
identity:
  name: me
  category: userland
  variety: subscription
  cosign_issuer_regexp: 'gitea\.example\.org'
package_spec: [redis, redis]
file_spec:
  include:
    - "/opt/none/**"
    - "/etc/me/**"
    - "/srv/none"
protected_spec: ["/etc/me/gone"]
mask: ["/usr/lib/other/x", "/etc/me/a.conf"]
modes:
  "/etc/me/b.conf": "0600"
  "/etc/me/a.conf": "0600"
"#;
    let a = run(text, &[file("etc/me/a.conf")]);
    check_buckets(&a.report);
    assert!(!a.report.valid);
    let lines = |fs: &[Finding]| fs.iter().map(|f| f.line).collect::<Vec<_>>();
    let w = &a.report.warnings;
    assert_eq!(
        codes(w),
        [
            Code::IdentityRegexUnanchored,
            Code::IdentityUnpinned,
            Code::IncludeMatchesNothing,
            Code::IncludeMatchesNothing,
            Code::ProtectedNotShipped,
            Code::MaskOutsideConfig,
            Code::MaskOutsideConfig,
            Code::PackageDuplicate,
        ],
        "{w:#?}"
    );
    // Within a code, by position (IDENTITY_UNPINNED has none).
    assert_eq!(
        lines(w),
        [
            Some(6),
            None,
            Some(10),
            Some(12),
            Some(13),
            Some(14),
            Some(14),
            Some(7)
        ]
    );
    let c = &a.report.conflicts;
    assert_eq!(
        codes(c),
        [Code::ModeNotShipped, Code::MaskShipped],
        "{c:#?}"
    );
    assert_eq!(lines(c), [Some(16), Some(14)]);
    assert!(a.report.errors.is_empty());

    // Errors are sorted the same way, and the order is stable from run to run.
    let text = r#"schema_version: 1
identity:
  name: Me
  category: userland
  variety: config
  cosign_identity_regexp: '^a$'
file_spec:
  include: ["etc/me", "/etc/[x", "/etc/../me"]
modes:
  "/etc/me/a": "rwx"
package_spec: [X]
"#;
    let t = module(text, &[]);
    let a = analyse(t.path(), None);
    check_buckets(&a.report);
    assert_eq!(
        codes(&a.report.errors),
        [
            Code::NameInvalid,
            Code::PathInvalid,
            Code::PathInvalid,
            Code::GlobInvalid,
            Code::ModeInvalid,
            Code::PackageInvalid,
        ],
        "{:#?}",
        a.report
    );
    let fields: Vec<_> = a
        .report
        .errors
        .iter()
        .map(|f| f.field.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        [
            "identity.name",
            "file_spec.include[0]",
            "file_spec.include[2]",
            "file_spec.include[1]",
            r#"modes."/etc/me/a""#,
            "package_spec[0]",
        ]
    );
    let json = |r: &Report| serde_json::to_string(r).expect("json");
    assert_eq!(json(&a.report), json(&analyse(t.path(), None).report));
}

#[test]
fn identity_regexp_anchored_only_on_its_outer_alternatives_is_a_warning() {
    let unanchored = |re: &str| {
        let text = BASE.replace(
            r"'^https://git\.example\.org/acct/me-module@.*$'",
            &format!("'{re}'"),
        );
        let a = run(&text, &[file("etc/me/me.conf")]);
        check_buckets(&a.report);
        a.report
            .warnings
            .iter()
            .any(|f| f.code == Code::IdentityRegexUnanchored)
    };
    // `^a|b$` is `(^a)|(b$)`: the second alternative matches anywhere it ends.
    assert!(unanchored(
        r"^https://git\.example\.org/acct/me-module@.*|evil$"
    ));
    assert!(unanchored(
        r"(?m)^https://git\.example\.org/acct/me-module@.*$"
    ));
    assert!(!unanchored(
        r"^(https://git\.example\.org/acct/me-module|https://git\.example\.org/acct/other)@.*$"
    ));
    assert!(!unanchored(
        r"^https://git\.example\.org/acct/me-module@.*$|^https://git\.example\.org/acct/other@.*$"
    ));
    assert!(powernode_module::trust::is_anchored(r"^(a|b)$"));
    assert!(!powernode_module::trust::is_anchored(r"^a|b$"));
}
