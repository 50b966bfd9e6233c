//! Unit tests of the pieces; `core/tests/compose.rs` covers the rules end to end.

use super::{Entry, EntryKind, Layer, and_list, compose, layers::parent_of};
use crate::{Version, artifact::hash::Content, diagnostics::Code, manifest};

fn layer(name: &str, deps: &[&str], entries: &[&str]) -> Layer {
    let deps: Vec<String> = deps.iter().map(|d| format!("{{name: {d}}}")).collect();
    let text = format!(
        "schema_version: 1\nidentity:\n  name: {name}\n  category: userland\n  variety: subscription\n\
         file_spec:\n  include: [\"/\"]\ndependency_spec: [{}]\n",
        deps.join(", ")
    );
    Layer {
        manifest: manifest::parse(&text)
            .manifest
            .expect("valid test manifest"),
        version: Version::parse("1.0.0").unwrap(),
        entries: entries
            .iter()
            .map(|p| Entry {
                path: p.to_string(),
                mode: 0o644,
                kind: match p.strip_suffix('/') {
                    Some(_) => EntryKind::Dir,
                    None => EntryKind::File {
                        size: 1,
                        content: Content::Inline(Box::from(&b"x"[..])),
                    },
                },
            })
            .map(|mut e| {
                if e.path.len() > 1 {
                    e.path = e.path.trim_end_matches('/').to_owned();
                }
                e
            })
            .collect(),
    }
}

#[test]
fn parents_of_normal_paths_only() {
    assert_eq!(parent_of("/etc"), Some("/"));
    assert_eq!(parent_of("/etc/redis/redis.conf"), Some("/etc/redis"));
    for bad in [
        "",
        "etc",
        "/",
        "/etc/",
        "//etc",
        "/etc/./x",
        "/etc/../x",
        "/a\0b",
    ] {
        assert_eq!(parent_of(bad), None, "{bad:?}");
    }
}

#[test]
fn lists_read_as_prose() {
    assert_eq!(and_list::<&str>(&[]), "");
    assert_eq!(and_list(&["a"]), "a");
    assert_eq!(and_list(&["a", "b"]), "a and b");
    assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
}

#[test]
fn a_self_dependency_is_a_cycle_of_one() {
    let mut a = layer("a", &[], &["/a"]);
    // The parser refuses this (DEPENDENCY_SELF); a hand-made manifest need not.
    a.manifest.dependency_spec.push(manifest::Dependency {
        name: a.manifest.identity.name.clone(),
    });
    let c = compose(&[a]);
    let cycle: Vec<_> = c.conflicts().collect();
    assert_eq!(cycle.len(), 1);
    assert_eq!(cycle[0].code, Code::DepCycle);
    assert!(cycle[0].message.contains("a → a"), "{}", cycle[0].message);
    assert_eq!(c.order().len(), 1);
}

#[test]
fn the_shortest_cycle_is_named_and_the_rest_listed() {
    // a → b → a is the shortest cycle through a; c is in the same component via b → c → a.
    let c = compose(&[
        layer("a", &["b"], &[]),
        layer("b", &["a", "c"], &[]),
        layer("c", &["a"], &[]),
    ]);
    let f: Vec<_> = c.conflicts().collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].message.contains("a → b → a"), "{}", f[0].message);
    assert!(
        f[0].message.contains("involves a, b and c"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_long_dependency_chain_does_not_exhaust_the_stack() {
    let names: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
    let layers: Vec<Layer> = (0..names.len())
        .map(|i| {
            let dep = names[(i + 1) % names.len()].as_str();
            layer(&names[i], &[dep], &[])
        })
        .collect();
    let c = compose(&layers);
    assert_eq!(c.order().len(), 3000);
    assert_eq!(c.conflicts().count(), 1);
}

#[test]
fn duplicate_paths_and_files_as_parents_are_entry_invalid() {
    let c = compose(&[layer(
        "a",
        &[],
        &["/etc/", "/etc/x", "/etc/x", "/etc/x/y", "/"],
    )]);
    let codes: Vec<_> = c.findings().iter().map(|f| f.code).collect();
    assert_eq!(codes, [Code::EntryInvalid, Code::EntryInvalid]);
    assert_eq!(c.owner("/etc/x").unwrap().as_str(), "a");
    assert_eq!(c.owner("/etc/x/y"), None);
    assert_eq!(c.owner("/"), None);
}

#[test]
fn of_two_copies_the_higher_version_is_kept_whatever_the_input_order() {
    let mut old = layer("a", &[], &["/old"]);
    old.version = Version::parse("1.0.0").unwrap();
    let mut new = layer("a", &[], &["/new"]);
    new.version = Version::parse("2.0.0").unwrap();
    for input in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
        let c = compose(&input);
        assert!(c.owner("/new").is_some() && c.owner("/old").is_none());
        assert_eq!(c.versions().values().next().unwrap().to_string(), "2.0.0");
        assert!(c.is_blocked());
    }
}
