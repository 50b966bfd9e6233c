//! `runbooks/module-authoring.md` is the reference authors keep open: every finding code the
//! code can emit must be in its §6 tables, under the heading of the code's severity, and the
//! glob rules of its §4 must be what `PathSelector` does.

use powernode_module::diagnostics::{Code, Severity};
use powernode_module::manifest::PathSelector;
use std::collections::BTreeSet;

const RUNBOOK: &str = include_str!("../../runbooks/module-authoring.md");
const DIAGNOSTICS: &str = include_str!("../src/diagnostics.rs");

/// The variants of `enum Code`, read from the source so a new code cannot be forgotten here.
fn codes_in_source() -> Vec<Code> {
    let body = DIAGNOSTICS
        .split_once("pub enum Code {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("diagnostics.rs declares `pub enum Code { … }`");
    let codes: Vec<Code> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.is_empty())
        .map(|l| {
            let variant = l.trim_end_matches(',');
            assert!(
                variant.chars().all(|c| c.is_ascii_alphanumeric()),
                "unexpected line in enum Code: {l:?}"
            );
            serde_json::from_value(serde_json::Value::String(screaming_snake(variant)))
                .unwrap_or_else(|e| panic!("{variant} does not serialise as expected: {e}"))
        })
        .collect();
    assert!(codes.len() >= 40, "parsed only {} codes", codes.len());
    codes
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The codes in the first column of the tables under `### <heading>` in §6.
fn table_codes(heading: &str) -> BTreeSet<String> {
    let section = RUNBOOK
        .split_once("## 6. Finding codes")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("the runbook has a `## 6. Finding codes` section");
    let part = section
        .split("\n### ")
        .find(|p| p.starts_with(heading))
        .unwrap_or_else(|| panic!("§6 has no `### {heading}` table"));
    part.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(code, _)| code.to_string()))
        .collect()
}

#[test]
fn every_finding_code_is_documented_under_its_severity() {
    let tables = [
        (Severity::Error, table_codes("Errors")),
        (Severity::Conflict, table_codes("Conflicts")),
        (Severity::Warning, table_codes("Warnings")),
    ];
    let codes = codes_in_source();
    let mut missing = Vec::new();
    for code in &codes {
        let name = code.as_str();
        let found: Vec<Severity> = tables
            .iter()
            .filter(|(_, t)| t.contains(&name))
            .map(|(s, _)| *s)
            .collect();
        if found != [code.severity()] {
            missing.push(format!(
                "{name} ({:?}) is documented under {found:?}",
                code.severity()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "runbooks/module-authoring.md §6 must list each code once, in the table of its \
         severity:\n  {}",
        missing.join("\n  ")
    );
    // And nothing stale: every code in the tables exists.
    let known: BTreeSet<String> = codes.iter().map(|c| c.as_str()).collect();
    for (_, t) in &tables {
        for c in t {
            assert!(
                known.contains(c),
                "§6 documents {c}, which the code does not have"
            );
        }
    }
}

fn sel(include: &[&str], exclude: &[&str]) -> PathSelector {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PathSelector::new(&v(include), &v(exclude), &[], &[])
}

/// Whether `pattern` matches `path` exactly (how protected_spec and mask match).
fn matches(pattern: &str, path: &str) -> bool {
    let p = PathSelector::new(&[], &[], &[pattern.to_string()], &[]);
    !p.protected_hits(path).is_empty()
}

#[test]
fn the_runbook_glob_rules_hold() {
    // Anchored, case-sensitive, whole paths.
    assert!(!matches("/etc/redis", "/etc/redisx"));
    assert!(!matches("/etc/redis/redis.conf", "/etc/Redis/redis.conf"));
    assert!(!matches("redis.conf", "/etc/redis/redis.conf"));
    // `*` and `?` stay within one component; so do classes.
    assert!(matches("/etc/me/*.conf", "/etc/me/a.conf"));
    assert!(!matches("/etc/me/*.conf", "/etc/me/sub/deep.conf"));
    assert!(!matches("/etc/a?b", "/etc/a/b"));
    assert!(!matches("/etc/a[/]b", "/etc/a/b"));
    // `**` as a whole component.
    assert!(matches("/etc/redis/**", "/etc/redis/a/b"));
    assert!(!matches("/etc/redis/**", "/etc/redis"));
    assert!(matches("/etc/**/a.conf", "/etc/a.conf"));
    assert!(matches("/etc/**/a.conf", "/etc/x/y/a.conf"));
    assert!(matches("/etc/foo**", "/etc/foobar"));
    assert!(!matches("/etc/foo**", "/etc/foo/bar"));
    // Alternates (empty ones too) and escapes.
    assert!(matches("/etc/foo{,.d}", "/etc/foo"));
    assert!(matches("/etc/foo{,.d}", "/etc/foo.d"));
    assert!(matches(r"/etc/\*", "/etc/*"));
    assert!(!matches(r"/etc/\*", "/etc/x"));
    // Shape: absolute, normal; a trailing `/` is dropped; `/` is everything.
    let compile = |p: &str| {
        powernode_module::manifest::parse(&format!(
            "schema_version: 1\nidentity: {{name: m, category: userland, variety: subscription}}\n\
             file_spec: {{include: [{p:?}]}}\n"
        ))
        .findings
        .into_iter()
        .map(|f| f.code)
        .filter(|c| matches!(c, Code::PathInvalid | Code::GlobInvalid))
        .collect::<Vec<_>>()
    };
    assert_eq!(compile("etc/x"), [Code::PathInvalid]);
    assert_eq!(compile("/etc//x"), [Code::PathInvalid]);
    assert_eq!(compile("/etc/./x"), [Code::PathInvalid]);
    assert_eq!(compile("/etc/../x"), [Code::PathInvalid]);
    assert_eq!(compile("/etc/[x"), [Code::GlobInvalid]);
    assert_eq!(compile("/etc/{x"), [Code::GlobInvalid]);
    assert_eq!(compile("/etc/x}"), [Code::GlobInvalid]);
    assert_eq!(compile("/etc/[z-a]"), [Code::GlobInvalid]);
    assert_eq!(compile("/etc/x\\"), [Code::GlobInvalid]);
    assert!(compile("/etc/redis/").is_empty());
    assert!(matches("/etc/redis/", "/etc/redis"));
    assert!(sel(&["/"], &[]).ships("/a/b/c"));

    // Selection: a path ships when it or an ancestor is included and none is excluded.
    let s = sel(&["/etc/redis"], &[]);
    assert!(s.ships("/etc/redis/sub/x.conf"));
    let s = sel(&["/etc/sudoers.d/*"], &[]);
    assert!(s.ships("/etc/sudoers.d/sub/x"));
    let s = sel(&["/etc/me/keys/public.pem"], &["/etc/me/keys"]);
    assert!(!s.ships("/etc/me/keys/public.pem"), "exclusion always wins");
    let s = sel(&["/etc/me/**"], &["/etc/me/*.bak"]);
    assert!(s.ships("/etc/me/sub/old.bak"));
    assert!(!s.ships("/etc/me/old.bak"));
    let s = sel(&["/etc/me/**"], &["/etc/me/**/*.bak"]);
    assert!(!s.ships("/etc/me/sub/old.bak"));
}
