//! Manifest parsing: every error names the field, line and column.

use powernode_module::diagnostics::{Code, Finding, Severity};
use powernode_module::manifest::{Category, Variety, parse};

const SEED: &str = include_str!("../../templates/example-modules/my-redis/manifest.yaml");

fn errors(text: &str) -> Vec<Finding> {
    let out = parse(text);
    assert!(out.manifest.is_none(), "expected errors, got a manifest");
    out.findings
}

fn one(text: &str, code: Code) -> Finding {
    let fs = errors(text);
    fs.into_iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} finding"))
}

#[test]
fn the_seed_manifest_parses() {
    let out = parse(SEED);
    let m = out.manifest.expect("seed manifest is valid");
    assert_eq!(m.identity.name.as_str(), "my-redis");
    assert_eq!(m.identity.category, Category::Userland);
    assert_eq!(m.identity.variety, Variety::Subscription);
    assert_eq!(m.package_spec, ["redis-server", "redis-tools"]);
    assert_eq!(m.dependency_spec.len(), 2);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
}

#[test]
fn bad_name_names_field_line_and_column() {
    let text = SEED.replace("name: my-redis", "name: My_Redis");
    let f = one(&text, Code::NameInvalid);
    assert_eq!(f.field.as_deref(), Some("identity.name"));
    assert_eq!(f.line, Some(3));
    assert_eq!(f.column, Some(9));
    assert!(
        f.message.contains("^[a-z0-9][a-z0-9-]{0,62}$"),
        "{}",
        f.message
    );
    assert_eq!(
        f.to_string(),
        "manifest.yaml:3:9: error[NAME_INVALID] identity.name: must match ^[a-z0-9][a-z0-9-]{0,62}$ (got \"My_Redis\")"
    );
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let text = SEED.replace(
        "  variety: subscription",
        "  variety: subscription\n  varity: config",
    );
    let f = one(&text, Code::FieldUnknown);
    assert_eq!(f.line, Some(6), "{f}");
    assert!(f.message.contains("varity"), "{f}");
    assert_eq!(f.field.as_deref(), Some("identity.varity"), "{f}");
}

#[test]
fn missing_and_mistyped_fields() {
    let f = one(
        "schema_version: 1\nidentity: {name: x, category: userland, variety: config}\n",
        Code::FieldMissing,
    );
    assert!(f.message.contains("file_spec"), "{f}");
    let text = SEED.replace("category: userland", "category: games");
    let f = one(&text, Code::FieldInvalid);
    assert_eq!(f.field.as_deref(), Some("identity.category"), "{f}");
    assert_eq!(f.line, Some(4), "{f}");
    let f = one("- a\n- b\n", Code::YamlInvalid);
    assert_eq!(f.line, Some(1), "{f}");
    assert!(f.message.contains("mapping"), "{f}");
    let f = one("identity: [a]\n", Code::FieldInvalid);
    assert_eq!(f.field.as_deref(), Some("identity"), "{f}");
    let f = one("schema_version: {\n", Code::YamlInvalid);
    assert!(f.line.is_some(), "{f}");
    let text = SEED.replace("schema_version: 1", "schema_version: one");
    let f = one(&text, Code::FieldInvalid);
    assert_eq!(
        (f.field.as_deref(), f.line),
        (Some("schema_version"), Some(1)),
        "{f}"
    );
}

// --- every code the parser and the pure lints produce -------------------------------------
//
// `BASE` is a small valid config module; tests append sections to it (from line 11 on) or
// replace one of its lines, so the expected line numbers below can be read off the text.

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

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// The single finding with `code` and `field`; fails if there is none or more than one.
fn at_field(findings: &[Finding], code: Code, field: &str) -> Finding {
    let hits: Vec<_> = findings
        .iter()
        .filter(|f| f.code == code && f.field.as_deref() == Some(field))
        .collect();
    assert_eq!(hits.len(), 1, "{code} at {field}: {findings:#?}");
    hits[0].clone()
}

/// Findings of a manifest that must still parse (warnings only).
fn warnings(text: &str) -> Vec<Finding> {
    let out = parse(text);
    assert!(
        out.manifest.is_some(),
        "expected a manifest: {:#?}",
        out.findings
    );
    for f in &out.findings {
        assert_eq!(f.severity, Severity::Warning, "{f}");
    }
    out.findings
}

fn codes(findings: &[Finding]) -> Vec<Code> {
    findings.iter().map(|f| f.code).collect()
}

#[test]
fn the_base_manifest_is_clean() {
    let out = parse(BASE);
    let m = out.manifest.expect("BASE is valid");
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    assert_eq!(m.identity.variety, Variety::Config);
    assert_eq!(m.file_spec.include[0].value, "/etc/me/**");
    assert_eq!(m.file_spec.include[0].pos.map(|p| p.line), Some(10));
}

#[test]
fn unsupported_schema_version() {
    let text = BASE.replace("schema_version: 1", "schema_version: 2");
    let fs = errors(&text);
    assert_eq!(codes(&fs), [Code::SchemaVersionUnsupported]);
    let f = &fs[0];
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.field.as_deref(), Some("schema_version"));
    assert_eq!((f.line, f.column), (Some(1), Some(17)), "{f}");
    assert!(f.message.contains("schema_version 2"), "{f}");
}

#[test]
fn regexps_must_compile() {
    let text = BASE
        .replace(r"'^https://git\.example\.org/acct/me-module@.*$'", "'^(a$'")
        .replace(r"'^https://gitea\.example\.org$'", "'^[z-a]$'");
    let fs = errors(&text);
    let f = at_field(&fs, Code::RegexInvalid, "identity.cosign_identity_regexp");
    assert_eq!((f.line, f.column), (Some(6), Some(27)), "{f}");
    assert!(f.message.contains(r#""^(a$""#), "{f}");
    assert!(f.message.contains("unclosed group"), "{f}");
    let f = at_field(&fs, Code::RegexInvalid, "identity.cosign_issuer_regexp");
    assert_eq!(f.line, Some(7), "{f}");
    assert!(f.message.contains(r#""^[z-a]$""#), "{f}");
    // A regexp that is present but broken is reported as broken, not as missing.
    assert_eq!(
        codes(&fs),
        [Code::RegexInvalid, Code::RegexInvalid],
        "{fs:#?}"
    );
}

#[test]
fn paths_must_be_absolute_and_normal() {
    let text = BASE.replace(
        "    - \"/etc/me/**\"\n",
        "    - \"/etc/me/**\"\n    - \"etc/me/x\"\n    - \"/etc/../shadow\"\n    - \"/etc/./me\"\n    - \"/etc//me\"\n",
    ) + "protected_spec: [\"relative\"]\nmask:\n  - \"/usr/lib/me/..\"\n";
    let fs = errors(&text);
    let f = at_field(&fs, Code::PathInvalid, "file_spec.include[1]");
    assert_eq!((f.line, f.column), (Some(11), Some(7)), "{f}");
    assert!(f.message.contains(r#""etc/me/x""#), "{f}");
    assert!(f.message.contains("absolute"), "{f}");
    let f = at_field(&fs, Code::PathInvalid, "file_spec.include[2]");
    assert_eq!(f.line, Some(12), "{f}");
    assert!(f.message.contains(r#""/etc/../shadow""#), "{f}");
    assert!(f.message.contains("'..'"), "{f}");
    assert_eq!(
        at_field(&fs, Code::PathInvalid, "file_spec.include[3]").line,
        Some(13)
    );
    assert_eq!(
        at_field(&fs, Code::PathInvalid, "file_spec.include[4]").line,
        Some(14)
    );
    let f = at_field(&fs, Code::PathInvalid, "protected_spec[0]");
    assert_eq!((f.line, f.column), (Some(15), Some(18)), "{f}");
    assert!(f.message.contains(r#""relative""#), "{f}");
    let f = at_field(&fs, Code::PathInvalid, "mask[0]");
    assert_eq!(f.line, Some(17), "{f}");
    assert!(f.message.contains(r#""/usr/lib/me/..""#), "{f}");
    assert_eq!(fs.len(), 6, "{fs:#?}");
}

#[test]
fn globs_must_compile() {
    let text = with("  exclude:\n    - \"/etc/me/[x\"\n    - \"/etc/me/{a,b\"\n");
    let fs = errors(&text);
    let f = at_field(&fs, Code::GlobInvalid, "file_spec.exclude[0]");
    assert_eq!((f.line, f.column), (Some(12), Some(7)), "{f}");
    assert!(f.message.contains(r#""/etc/me/[x""#), "{f}");
    assert!(f.message.contains("unclosed character class"), "{f}");
    let f = at_field(&fs, Code::GlobInvalid, "file_spec.exclude[1]");
    assert_eq!(f.line, Some(13), "{f}");
    assert!(f.message.contains(r#""/etc/me/{a,b""#), "{f}");
    assert_eq!(codes(&fs), [Code::GlobInvalid, Code::GlobInvalid]);
}

#[test]
fn modes_take_exact_absolute_paths() {
    let text = with(concat!(
        "modes:\n",
        "  \"/etc/me/*.conf\": \"0640\"\n",
        "  \"etc/me/a\": \"0640\"\n",
        "  \"/etc/me/../b\": \"0640\"\n",
        "  \"/etc/me/dir/\": \"0750\"\n",
    ));
    let fs = errors(&text);
    let f = at_field(&fs, Code::PathInvalid, r#"modes."/etc/me/*.conf""#);
    assert_eq!(f.line, Some(12), "{f}");
    assert!(f.message.contains(r#""/etc/me/*.conf""#), "{f}");
    assert!(f.message.contains("not globs"), "{f}");
    let f = at_field(&fs, Code::PathInvalid, r#"modes."etc/me/a""#);
    assert_eq!(f.line, Some(13), "{f}");
    assert!(f.message.contains(r#""etc/me/a""#), "{f}");
    assert!(f.message.contains("absolute"), "{f}");
    let f = at_field(&fs, Code::PathInvalid, r#"modes."/etc/me/../b""#);
    assert_eq!(f.line, Some(14), "{f}");
    assert!(f.message.contains("'..'"), "{f}");
    // A trailing '/' would never equal a shipped path, so the mode would silently not apply.
    let f = at_field(&fs, Code::PathInvalid, r#"modes."/etc/me/dir/""#);
    assert_eq!(f.line, Some(15), "{f}");
    assert!(f.message.contains(r#""/etc/me/dir/""#), "{f}");
    assert_eq!(fs.len(), 4, "{fs:#?}");
}

#[test]
fn modes_must_be_octal_permission_bits() {
    let text = with(concat!(
        "modes:\n",
        "  \"/etc/me/a\": 999\n",
        "  \"/etc/me/b\": \"rwx\"\n",
        "  \"/etc/me/c\": \"+64\"\n",
        "  \"/etc/me/d\": \"10000\"\n",
        "  \"/etc/me/e\": \"64\"\n",
        "  \"/etc/me/f\": true\n",
    ));
    let fs = errors(&text);
    for (path, line, shown) in [
        ("/etc/me/a", 12, "\"999\""),
        ("/etc/me/b", 13, "\"rwx\""),
        ("/etc/me/c", 14, "\"+64\""),
        ("/etc/me/d", 15, "\"10000\""),
        ("/etc/me/e", 16, "\"64\""),
        ("/etc/me/f", 17, "\"true\""),
    ] {
        let f = at_field(&fs, Code::ModeInvalid, &format!("modes.{path:?}"));
        assert_eq!((f.line, f.column), (Some(line), Some(16)), "{f}");
        assert!(f.message.contains(shown), "{f}");
        assert!(f.message.contains("octal"), "{f}");
    }
    assert_eq!(fs.len(), 6, "{fs:#?}");
}

#[test]
fn unquoted_modes_keep_their_octal_text() {
    // serde-saphyr hands a plain scalar to a String field as written, so an unquoted 0640 is
    // read as the text "0640" (octal), not as the integer 640 or as FIELD_INVALID.
    let text = with(concat!(
        "modes:\n",
        "  \"/etc/me/a\": 0640\n",
        "  \"/etc/me/b\": 750\n",
        "  \"/etc/me/c\": 0o4755\n",
        "  \"/etc/me/d\": \"0600\"\n",
    ));
    let out = parse(&text);
    assert!(out.findings.is_empty(), "{:#?}", out.findings);
    let m = out.manifest.expect("valid");
    let modes: Vec<(&str, u32)> = m
        .modes
        .iter()
        .map(|(p, a)| (p.as_str(), a.value.0))
        .collect();
    assert_eq!(
        modes,
        [
            ("/etc/me/a", 0o640),
            ("/etc/me/b", 0o750),
            ("/etc/me/c", 0o4755),
            ("/etc/me/d", 0o600),
        ]
    );
    assert_eq!(m.modes["/etc/me/b"].pos.map(|p| p.line), Some(13));
}

#[test]
fn package_names_and_duplicates() {
    let text = with(
        "package_spec:\n  - redis-server\n  - Redis\n  - redis-server\n  - a\n  - libc6:amd64\n  - g++\n",
    );
    let out = parse(&text);
    assert!(out.manifest.is_none());
    let fs = out.findings;
    let f = at_field(&fs, Code::PackageInvalid, "package_spec[1]");
    assert_eq!((f.line, f.column), (Some(13), Some(5)), "{f}");
    assert!(f.message.contains(r#""Redis""#), "{f}");
    let f = at_field(&fs, Code::PackageInvalid, "package_spec[3]");
    assert_eq!(f.line, Some(15), "{f}");
    assert!(f.message.contains(r#""a""#), "{f}");
    let f = at_field(&fs, Code::PackageInvalid, "package_spec[4]");
    assert!(f.message.contains(r#""libc6:amd64""#), "{f}");
    let f = at_field(&fs, Code::PackageDuplicate, "package_spec[2]");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.line, Some(14), "{f}");
    assert!(f.message.contains(r#""redis-server""#), "{f}");
    assert_eq!(fs.len(), 4, "{fs:#?}");

    // A duplicate alone is only a warning: the manifest parses, with the package once.
    let fs = warnings(&with("package_spec: [redis, redis-tools, redis]\n"));
    assert_eq!(codes(&fs), [Code::PackageDuplicate]);
    assert_eq!(fs[0].field.as_deref(), Some("package_spec[2]"));
    assert_eq!((fs[0].line, fs[0].column), (Some(11), Some(36)));
    let m = parse(&with("package_spec: [redis, redis-tools, redis]\n"))
        .manifest
        .expect("valid");
    assert_eq!(m.package_spec, ["redis", "redis-tools"]);

    // apt's `name=version` pins an exact version; anything else after `=` is refused by line.
    let m = parse(&with("package_spec: [redis-server=5:7.0.15-1~deb12u1]\n"))
        .manifest
        .expect("valid");
    assert_eq!(
        m.package_spec[0].version.as_deref(),
        Some("5:7.0.15-1~deb12u1")
    );
    let out = parse(&with("package_spec:\n  - redis-server=latest\n"));
    assert!(out.manifest.is_none());
    let f = at_field(&out.findings, Code::PackageInvalid, "package_spec[0]");
    assert_eq!(f.line, Some(12), "{f}");
    assert!(f.message.contains("not a Debian version"), "{f}");
}

#[test]
fn dependency_names_duplicates_and_self() {
    let text = with(concat!(
        "dependency_spec:\n",
        "  - name: system-base\n",
        "  - name: Bad_Dep\n",
        "  - name: system-base\n",
        "  - name: me\n",
    ));
    let fs = errors(&text);
    let f = at_field(&fs, Code::DependencyInvalid, "dependency_spec[1].name");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!((f.line, f.column), (Some(13), Some(11)), "{f}");
    assert!(f.message.contains(r#""Bad_Dep""#), "{f}");
    let f = at_field(&fs, Code::DependencyDuplicate, "dependency_spec[2].name");
    assert_eq!(f.severity, Severity::Conflict);
    assert_eq!(f.line, Some(14), "{f}");
    assert!(f.message.contains("system-base"), "{f}");
    let f = at_field(&fs, Code::DependencySelf, "dependency_spec[3].name");
    assert_eq!(f.severity, Severity::Conflict);
    assert_eq!(f.line, Some(15), "{f}");
    assert!(f.message.contains("me "), "{f}");
    assert_eq!(fs.len(), 3, "{fs:#?}");

    // Conflicts alone also withhold the manifest.
    let out = parse(&with("dependency_spec: [{name: me}]\n"));
    assert!(out.manifest.is_none());
    assert_eq!(codes(&out.findings), [Code::DependencySelf]);
}

#[test]
fn protected_paths_must_not_be_excluded() {
    let text = with(concat!(
        "  exclude: [\"/etc/me/private\"]\n",
        "protected_spec:\n",
        "  - \"/etc/me/me.conf\"\n",
        "  - \"/etc/me/private/key.pem\"\n",
    ));
    let fs = errors(&text);
    assert_eq!(codes(&fs), [Code::ProtectedExcluded], "{fs:#?}");
    let f = at_field(&fs, Code::ProtectedExcluded, "protected_spec[1]");
    assert_eq!(f.severity, Severity::Conflict);
    assert_eq!((f.line, f.column), (Some(14), Some(5)), "{f}");
    assert!(f.message.contains(r#""/etc/me/private/key.pem""#), "{f}");
}

#[test]
fn mask_outside_config_is_a_warning() {
    let text = with("mask:\n  - \"/usr/lib/other/a\"\n")
        .replace("variety: config", "variety: subscription");
    let fs = warnings(&text);
    assert_eq!(codes(&fs), [Code::MaskOutsideConfig]);
    let f = at_field(&fs, Code::MaskOutsideConfig, "mask[0]");
    assert_eq!((f.line, f.column), (Some(12), Some(5)), "{f}");
    assert!(f.message.contains(r#""/usr/lib/other/a""#), "{f}");
    // The same mask in a config module is fine.
    assert!(warnings(&with("mask:\n  - \"/usr/lib/other/a\"\n")).is_empty());
}

#[test]
fn unanchored_identity_regexps_are_warnings() {
    let text = BASE
        .replace(
            r"'^https://git\.example\.org/acct/me-module@.*$'",
            r"'git\.example\.org/acct/me-module'",
        )
        .replace(
            r"'^https://gitea\.example\.org$'",
            r"'^https://gitea\.example\.org'",
        );
    let fs = warnings(&text);
    assert_eq!(
        codes(&fs),
        [Code::IdentityRegexUnanchored, Code::IdentityRegexUnanchored]
    );
    let f = at_field(
        &fs,
        Code::IdentityRegexUnanchored,
        "identity.cosign_identity_regexp",
    );
    assert_eq!((f.line, f.column), (Some(6), Some(27)), "{f}");
    assert!(
        f.message
            .contains(r#""git\\.example\\.org/acct/me-module""#),
        "{f}"
    );
    let f = at_field(
        &fs,
        Code::IdentityRegexUnanchored,
        "identity.cosign_issuer_regexp",
    );
    assert_eq!(f.line, Some(7), "{f}");
    assert!(f.message.contains("gitea"), "{f}");
    let m = parse(&text).manifest.expect("still valid");
    let re = m.identity.cosign_identity_regexp.expect("kept");
    assert!(
        re.regex
            .is_match("https://evil.example/git.example.org/acct/me-module")
    );
}

#[test]
fn a_missing_identity_regexp_is_unpinned() {
    let text = BASE.replace(
        "  cosign_identity_regexp: '^https://git\\.example\\.org/acct/me-module@.*$'\n",
        "",
    );
    assert_ne!(text, BASE);
    let fs = warnings(&text);
    assert_eq!(codes(&fs), [Code::IdentityUnpinned]);
    let f = &fs[0];
    assert_eq!(f.field.as_deref(), Some("identity.cosign_identity_regexp"));
    // Nothing was written, so there is no line to point at.
    assert_eq!(f.line, None);
    assert!(f.message.contains("cosign_identity_regexp"), "{f}");
}

#[test]
fn unknown_fields_at_every_level() {
    let f = one(
        &BASE.replace("  include:", "  includes:"),
        Code::FieldUnknown,
    );
    assert_eq!(f.field.as_deref(), Some("file_spec.includes"), "{f}");
    assert_eq!((f.line, f.column), (Some(9), Some(3)), "{f}");
    assert!(f.message.contains("`includes`"), "{f}");

    let f = one(&with("  exlude: []\n"), Code::FieldUnknown);
    assert_eq!(f.field.as_deref(), Some("file_spec.exlude"), "{f}");
    assert_eq!(f.line, Some(11), "{f}");
    assert!(f.message.contains("`exlude`"), "{f}");

    let f = one(
        &with("dependency_spec:\n  - name: system-base\n  - name: other\n    nmae: x\n"),
        Code::FieldUnknown,
    );
    assert_eq!(f.field.as_deref(), Some("dependency_spec[1].nmae"), "{f}");
    assert_eq!((f.line, f.column), (Some(14), Some(5)), "{f}");
    assert!(f.message.contains("`nmae`"), "{f}");

    let f = one(&with("protected: [\"/etc/me/a\"]\n"), Code::FieldUnknown);
    assert_eq!(f.field.as_deref(), Some("protected"), "{f}");
    assert_eq!((f.line, f.column), (Some(11), Some(1)), "{f}");
}

#[test]
fn missing_fields_name_the_missing_key() {
    let f = one(
        &BASE.replace("file_spec:\n  include:\n    - \"/etc/me/**\"\n", ""),
        Code::FieldMissing,
    );
    assert_eq!(f.field.as_deref(), Some("file_spec"), "{f}");
    assert!(f.message.contains("`file_spec`"), "{f}");
    assert!(f.line.is_some(), "{f}");

    // serde-saphyr places a missing key at the last key of the mapping that lacks it.
    let f = one(&BASE.replace("  name: me\n", ""), Code::FieldMissing);
    assert_eq!(f.field.as_deref(), Some("identity.name"), "{f}");
    assert!(f.message.contains("`name`"), "{f}");
    let line = f.line.expect("a line");
    assert!((2..=6).contains(&line), "{f}");

    let f = one(
        &BASE.replace("  include:\n    - \"/etc/me/**\"\n", "  exclude: []\n"),
        Code::FieldMissing,
    );
    assert_eq!(f.field.as_deref(), Some("file_spec.include"), "{f}");
    assert_eq!(f.line, Some(9), "{f}");

    let f = one(&with("dependency_spec:\n  - {}\n"), Code::FieldMissing);
    assert_eq!(f.field.as_deref(), Some("dependency_spec[0].name"), "{f}");
    assert_eq!(f.line, Some(12), "{f}");
}

#[test]
fn findings_serialise_with_stable_code_strings() {
    let text = with("modes:\n  \"/etc/me/a\": \"rwx\"\n");
    let f = one(&text, Code::ModeInvalid);
    let v = serde_json::to_value(&f).expect("serialises");
    assert_eq!(v["code"], "MODE_INVALID");
    assert_eq!(v["severity"], "error");
    assert_eq!(v["field"], r#"modes."/etc/me/a""#);
    assert_eq!(v["file"], "manifest.yaml");
    assert_eq!(v["line"], 12);
    assert_eq!(v["column"], 16);
}
