//! Manifest parsing: every error names the field, line and column.

use powernode_module::diagnostics::{Code, Finding};
use powernode_module::manifest::{Category, Variety, parse};

const SEED: &str = include_str!("../../examples/modules/my-redis/manifest.yaml");

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

#[test]
fn zz_explore() {
    let base = "schema_version: 1\nidentity:\n  name: me\n  category: userland\n  variety: config\n  cosign_identity_regexp: '^a$'\nfile_spec:\n  include: [\"/etc/**\"]\n";
    let cases: Vec<String> = vec![
        base.replace("schema_version: 1", "schema_version: 2"),
        base.replace("'^a$'", "'^(a$'"),
        base.replace("'^a$'", "'a'"),
        base.replace("  cosign_identity_regexp: '^a$'\n", ""),
        format!("{base}modes:\n  \"/etc/x\": 999\n  \"/etc/y\": \"rwx\"\n  \"/etc/z\": 0640\n  \"/etc/w\": 640\n  \"/etc/v\": \"+64\"\n  \"/etc/u\": 0o644\n  \"/etc/*\": \"0644\"\n  \"etc/r\": \"0644\"\n  \"/etc/../q\": \"0644\"\n  \"/etc/d/\": \"0644\"\n  \"/etc/t\": 1.5\n  \"/etc/s\": true\n"),
        format!("{base}package_spec: [redis, Redis, redis, a]\n"),
        format!("{base}dependency_spec:\n  - name: other\n  - name: other\n  - name: me\n  - name: Bad_Dep\n"),
        format!("{base}dependency_spec:\n  - name: other\n    nmae: x\n"),
        base.replace("  include: [\"/etc/**\"]\n", "  include: [\"/etc/**\"]\n  exlude: []\n"),
        base.replace("  include: [\"/etc/**\"]\n", "  include: [\"/etc/**\", \"etc/x\", \"/etc/../x\", \"/etc/[x\"]\n"),
        format!("{base}protected_spec: [\"/etc/x/secret\"]\n").replace("  include: [\"/etc/**\"]\n", "  include: [\"/etc/**\"]\n  exclude: [\"/etc/x\"]\n"),
        format!("{base}mask: [\"/usr/x\"]\n").replace("variety: config", "variety: subscription"),
        base.replace("  name: me\n", ""),
        base.replace("file_spec:\n  include: [\"/etc/**\"]\n", "file_spec: {}\n"),
        base.replace("file_spec:\n  include: [\"/etc/**\"]\n", ""),
        format!("{base}dependency_spec:\n  - {{}}\n"),
    ];
    for c in cases {
        let out = parse(&c);
        println!("---\n{c}manifest: {}", out.manifest.is_some());
        for f in &out.findings { println!("  {f}   field={:?}", f.field); }
    }
}
