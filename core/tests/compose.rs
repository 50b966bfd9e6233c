//! Composition of module layers: one table row per finding code, dependency order, properties
//! (order respects dependencies; input order does not matter), and a known-answer test that
//! the merged digest equals the digest of the same tree built as one module.

use composefs::fsverity::{FsVerityHashValue, FsVerityHasher, Sha256HashValue};
use powernode_module::{
    Version,
    artifact::{
        self, BuildOptions,
        hash::{Content, INLINE_MAX},
        plan,
        walk::Kind,
    },
    compose::{Composition, Entry, EntryKind, Layer, compose},
    diagnostics::{Code, Severity},
    manifest::{self, Manifest},
};
use proptest::prelude::*;
use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
};

// ---------------------------------------------------------------------------------------
// A small builder: a module's manifest fields and the paths it ships.

#[derive(Clone, Debug)]
struct Spec {
    name: String,
    category: &'static str,
    variety: &'static str,
    version: &'static str,
    deps: Vec<String>,
    protected: Vec<String>,
    mask: Vec<String>,
    /// Paths it ships (parents are added as directories).
    entries: BTreeMap<String, EntryKind>,
}

fn module(name: &str) -> Spec {
    Spec {
        name: name.into(),
        category: "userland",
        variety: "subscription",
        version: "1.0.0",
        deps: vec![],
        protected: vec![],
        mask: vec![],
        entries: BTreeMap::new(),
    }
}

fn inline(text: &str) -> EntryKind {
    EntryKind::File {
        size: text.len() as u64,
        content: Content::Inline(text.as_bytes().into()),
    }
}

impl Spec {
    fn category(mut self, c: &'static str) -> Self {
        self.category = c;
        self
    }
    fn config(mut self) -> Self {
        self.variety = "config";
        self
    }
    fn version(mut self, v: &'static str) -> Self {
        self.version = v;
        self
    }
    fn dep(mut self, d: &str) -> Self {
        self.deps.push(d.into());
        self
    }
    fn protect(mut self, p: &str) -> Self {
        self.protected.push(p.into());
        self
    }
    fn mask(mut self, p: &str) -> Self {
        self.mask.push(p.into());
        self
    }
    /// Ships `kind` at `path`, and every ancestor as a directory.
    fn at(mut self, path: &str, kind: EntryKind) -> Self {
        let mut i = 0;
        while let Some(j) = path[i + 1..].find('/') {
            i += j + 1;
            self.entries.insert(path[..i].into(), EntryKind::Dir);
        }
        self.entries.insert(path.into(), kind);
        self
    }
    fn file(self, path: &str) -> Self {
        let text = format!("{} from {}\n", path, self.name);
        self.at(path, inline(&text))
    }
    fn dir(self, path: &str) -> Self {
        self.at(path, EntryKind::Dir)
    }

    fn manifest(&self) -> Manifest {
        let list = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|p| format!("{p:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let deps: Vec<String> = self.deps.iter().map(|d| format!("{{name: {d}}}")).collect();
        let text = format!(
            "schema_version: 1\nidentity:\n  name: {}\n  category: {}\n  variety: {}\n\
             file_spec:\n  include: [\"/\"]\nprotected_spec: {}\ndependency_spec: [{}]\nmask: {}\n",
            self.name,
            self.category,
            self.variety,
            list(&self.protected),
            deps.join(", "),
            list(&self.mask),
        );
        let out = manifest::parse(&text);
        out.manifest
            .unwrap_or_else(|| panic!("test manifest invalid: {:?}\n{text}", out.findings))
    }

    fn layer(&self) -> Layer {
        Layer {
            manifest: self.manifest(),
            version: Version::parse(self.version).unwrap(),
            entries: self
                .entries
                .iter()
                .map(|(path, kind)| Entry {
                    path: path.clone(),
                    mode: if matches!(kind, EntryKind::Dir) {
                        0o755
                    } else {
                        0o644
                    },
                    kind: kind.clone(),
                })
                .collect(),
        }
    }
}

fn run(specs: &[Spec]) -> Composition {
    let layers: Vec<Layer> = specs.iter().map(Spec::layer).collect();
    compose(&layers)
}

fn codes(c: &Composition) -> Vec<Code> {
    let mut v: Vec<Code> = c.findings().iter().map(|f| f.code).collect();
    v.sort();
    v
}

fn names(c: &Composition) -> Vec<&str> {
    c.order().iter().map(|n| n.as_str()).collect()
}

/// Checks the invariants every composition keeps, whatever the input.
fn check_invariants(c: &Composition) {
    for f in c.findings() {
        assert_eq!(f.severity, f.code.severity(), "{f}");
    }
    let blocked = c
        .findings()
        .iter()
        .any(|f| f.severity == Severity::Conflict);
    assert_eq!(c.is_blocked(), blocked);
    assert_eq!(c.merged_digest().is_some(), !blocked, "{:?}", c.findings());
}

// ---------------------------------------------------------------------------------------
// One row per code.

struct Row {
    name: &'static str,
    modules: Vec<Spec>,
    codes: Vec<Code>,
    /// The path the row is about and the module expected to own it (None: not in the tree).
    owner: (&'static str, Option<&'static str>),
    /// A piece of the message of the row's first finding (names the modules involved).
    message: &'static [&'static str],
}

fn rows() -> Vec<Row> {
    let conf = "/etc/redis/redis.conf";
    vec![
        Row {
            name: "disjoint modules compose cleanly",
            modules: vec![module("a").file("/etc/a"), module("b").file("/etc/b")],
            codes: vec![],
            owner: ("/etc/b", Some("b")),
            message: &[],
        },
        Row {
            name: "directories merge, metadata from the highest",
            modules: vec![
                module("a").file("/etc/x/a"),
                module("b").category("firmware").file("/etc/x/b"),
            ],
            codes: vec![],
            owner: ("/etc/x", Some("a")),
            message: &[],
        },
        Row {
            name: "a later module shadows a file",
            modules: vec![
                module("a").file("/etc/x.conf"),
                module("b").file("/etc/x.conf"),
            ],
            codes: vec![Code::FileShadowed],
            owner: ("/etc/x.conf", Some("b")),
            message: &["a's /etc/x.conf is replaced by b's"],
        },
        Row {
            name: "a higher protector drops the lower module's file",
            modules: vec![
                module("base").category("system-base").file(conf),
                module("redis").dep("base").protect(conf).file(conf),
            ],
            codes: vec![Code::ProtectedDropped],
            owner: (conf, Some("redis")),
            message: &["base's /etc/redis/redis.conf is dropped", "redis"],
        },
        Row {
            name: "a higher subscription module may not override a protected path",
            modules: vec![
                module("base")
                    .category("system-base")
                    .protect(conf)
                    .file(conf),
                module("redis").file(conf),
            ],
            codes: vec![Code::ProtectedOverridden],
            owner: (conf, Some("base")),
            message: &["redis ships /etc/redis/redis.conf, which base protects"],
        },
        Row {
            name: "a config module may override a protected path",
            modules: vec![
                module("base")
                    .category("system-base")
                    .protect(conf)
                    .file(conf),
                module("site").config().file(conf),
            ],
            codes: vec![Code::FileShadowed],
            owner: (conf, Some("site")),
            message: &["replaced by site's", "overriding base's protection"],
        },
        Row {
            name: "two protectors of one path conflict",
            modules: vec![
                module("a").protect(conf).file(conf),
                module("b").protect(conf).file(conf),
            ],
            codes: vec![Code::ProtectedDuplicate],
            owner: (conf, Some("b")),
            message: &["protected by a and b"],
        },
        Row {
            name: "a directory in one layer and a file in another",
            modules: vec![module("a").dir("/opt/x"), module("b").file("/opt/x")],
            codes: vec![Code::TypeConflict],
            owner: ("/opt/x", Some("b")),
            message: &["/opt/x is a directory in a but a file in b"],
        },
        Row {
            name: "a dependency that is not composed",
            modules: vec![module("a").dep("ghost").file("/etc/a")],
            codes: vec![Code::DepMissing],
            owner: ("/etc/a", Some("a")),
            message: &["a depends on ghost"],
        },
        Row {
            name: "a dependency cycle is named",
            modules: vec![
                module("a").dep("b").file("/etc/a"),
                module("b").dep("c").file("/etc/b"),
                module("c").dep("a").file("/etc/c"),
            ],
            codes: vec![Code::DepCycle],
            owner: ("/etc/a", Some("a")),
            message: &["a → b → c → a"],
        },
        Row {
            name: "mask outside a config module is a conflict and ignored",
            modules: vec![
                module("a").category("system-base").file("/etc/motd"),
                module("b").mask("/etc/motd").file("/etc/b"),
            ],
            codes: vec![Code::MaskForbidden],
            owner: ("/etc/motd", Some("a")),
            message: &["b is a subscription module but masks \"/etc/motd\""],
        },
        Row {
            name: "a mask that removes nothing",
            modules: vec![
                module("a").file("/etc/a"),
                module("site")
                    .config()
                    .mask("/etc/nothing")
                    .file("/etc/site"),
            ],
            codes: vec![Code::MaskUnused],
            owner: ("/etc/a", Some("a")),
            message: &["site masks \"/etc/nothing\""],
        },
        Row {
            name: "a config module masks a lower module's path",
            modules: vec![
                module("site").config().mask("/etc/b").file("/etc/site"),
                module("b").file("/etc/b"),
            ],
            // site is config, so it composes after b, whose path it masks.
            codes: vec![],
            owner: ("/etc/b", None),
            message: &[],
        },
        Row {
            name: "a masked directory takes its subtree, the mask's own files stay",
            modules: vec![
                module("docs")
                    .file("/usr/share/doc/x/README")
                    .file("/usr/share/doc/y")
                    .file("/etc/motd"),
                module("site")
                    .config()
                    .mask("/usr/share/doc")
                    .mask("/etc/motd")
                    .file("/etc/motd"),
            ],
            codes: vec![],
            owner: ("/usr/share/doc/x/README", None),
            message: &[],
        },
        Row {
            name: "a module given twice",
            modules: vec![
                module("a").version("1.0.0").file("/etc/old"),
                module("a").version("1.1.0").file("/etc/new"),
            ],
            codes: vec![Code::ModuleDuplicate],
            owner: ("/etc/new", Some("a")),
            message: &["a is given 2 times (versions 1.0.0, 1.1.0)"],
        },
        Row {
            name: "an entry whose parent is not shipped",
            modules: vec![{
                let mut m = module("a").file("/etc/a");
                m.entries.insert("/var/lib/x".into(), inline("x"));
                m
            }],
            codes: vec![Code::EntryInvalid],
            owner: ("/var/lib/x", None),
            message: &["a ships \"/var/lib/x\", which lies under /var/lib"],
        },
        Row {
            name: "an entry that is not a normal absolute path",
            modules: vec![{
                let mut m = module("a").file("/etc/a");
                m.entries.insert("/etc/../x".into(), inline("x"));
                m
            }],
            codes: vec![Code::EntryInvalid],
            owner: ("/etc/a", Some("a")),
            message: &["is not an absolute, normal target path"],
        },
    ]
}

#[test]
fn each_code_with_its_severity_and_owner() {
    let mut seen = std::collections::BTreeSet::new();
    for row in rows() {
        let c = run(&row.modules);
        check_invariants(&c);
        assert_eq!(codes(&c), row.codes, "{}: {:#?}", row.name, c.findings());
        let (path, owner) = row.owner;
        assert_eq!(
            c.owner(path).map(|n| n.as_str()),
            owner,
            "{}: owner of {path}",
            row.name
        );
        if let Some(f) = c.findings().first() {
            for part in row.message {
                assert!(
                    f.message.contains(part),
                    "{}: {:?} lacks {part:?}",
                    row.name,
                    f.message
                );
            }
            assert!(f.field.is_some(), "{}: {f}", row.name);
        }
        seen.extend(row.codes.iter().copied());
    }
    for code in [
        Code::ModuleDuplicate,
        Code::EntryInvalid,
        Code::DepMissing,
        Code::DepCycle,
        Code::MaskForbidden,
        Code::TypeConflict,
        Code::ProtectedDuplicate,
        Code::ProtectedOverridden,
        Code::ProtectedDropped,
        Code::FileShadowed,
        Code::MaskUnused,
    ] {
        assert!(seen.contains(&code), "no row covers {code}");
    }
}

#[test]
fn composition_codes_have_stable_names_and_severities() {
    let expect = [
        (
            Code::ProtectedDuplicate,
            "PROTECTED_DUPLICATE",
            Severity::Conflict,
        ),
        (
            Code::ProtectedOverridden,
            "PROTECTED_OVERRIDDEN",
            Severity::Conflict,
        ),
        (Code::TypeConflict, "TYPE_CONFLICT", Severity::Conflict),
        (Code::DepMissing, "DEP_MISSING", Severity::Conflict),
        (Code::DepCycle, "DEP_CYCLE", Severity::Conflict),
        (Code::MaskForbidden, "MASK_FORBIDDEN", Severity::Conflict),
        (
            Code::ModuleDuplicate,
            "MODULE_DUPLICATE",
            Severity::Conflict,
        ),
        (Code::EntryInvalid, "ENTRY_INVALID", Severity::Conflict),
        (
            Code::ProtectedDropped,
            "PROTECTED_DROPPED",
            Severity::Warning,
        ),
        (Code::FileShadowed, "FILE_SHADOWED", Severity::Warning),
        (Code::MaskUnused, "MASK_UNUSED", Severity::Warning),
    ];
    for (code, name, severity) in expect {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.severity(), severity, "{name}");
    }
}

#[test]
fn order_is_dependencies_then_variety_then_category_then_name() {
    let c = run(&[
        module("app").dep("cfg").file("/a"),
        module("cfg").config().category("firmware").file("/c"),
        module("zeta").category("firmware").file("/z"),
        module("sec").category("security").file("/s"),
        module("base").category("system-base").file("/b"),
        module("alpha").category("firmware").file("/f"),
    ]);
    check_invariants(&c);
    // Subscription before config, by category then name; app waits for its dependency cfg.
    assert_eq!(names(&c), ["alpha", "zeta", "base", "sec", "cfg", "app"]);
    assert_eq!(c.versions().len(), 6);
}

#[test]
fn a_dependency_always_comes_first_even_against_the_tie_breaks() {
    let c = run(&[
        module("fw").category("firmware").dep("zz").file("/f"),
        module("zz").category("userland").file("/z"),
    ]);
    assert_eq!(names(&c), ["zz", "fw"]);
}

#[test]
fn a_cycle_blocks_but_every_module_is_still_ordered() {
    let c = run(&[
        module("a").dep("b").file("/a"),
        module("b").dep("a").file("/b"),
        module("c").dep("a").file("/c"),
    ]);
    check_invariants(&c);
    assert!(c.is_blocked());
    assert_eq!(names(&c), ["a", "b", "c"]);
    let cycle: Vec<_> = c.conflicts().collect();
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    assert!(
        cycle[0].message.contains("a → b → a"),
        "{}",
        cycle[0].message
    );
}

#[test]
fn a_protector_overridden_by_config_still_drops_lower_files() {
    let conf = "/etc/x.conf";
    let c = run(&[
        module("base").category("system-base").file(conf),
        module("redis").protect(conf).file(conf),
        module("site").config().file(conf),
    ]);
    check_invariants(&c);
    assert_eq!(codes(&c), [Code::ProtectedDropped, Code::FileShadowed]);
    assert_eq!(c.owner(conf).unwrap().as_str(), "site");
}

#[test]
fn serialises_for_the_receiver() {
    let c = run(&[module("a").file("/etc/a"), module("b").file("/etc/a")]);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["order"], serde_json::json!(["a", "b"]));
    assert_eq!(v["versions"]["a"], "1.0.0");
    assert_eq!(v["owners"]["/etc/a"], "b");
    assert_eq!(v["findings"][0]["code"], "FILE_SHADOWED");
    assert_eq!(v["findings"][0]["field"], "/etc/a");
    assert!(v["merged_digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn nothing_to_compose_is_the_empty_tree() {
    let c = compose(&[]);
    assert!(c.order().is_empty());
    assert_eq!(
        c.merged_digest().unwrap().hex(),
        "14a26c957c84f6eb774b91205476adc13196c7c33b9dd97d08d43725ecb90b63"
    );
}

// ---------------------------------------------------------------------------------------
// Properties.

const CATEGORIES: [&str; 6] = [
    "firmware",
    "system-base",
    "security",
    "networking",
    "observability",
    "userland",
];
const PATHS: [&str; 6] = [
    "/etc/a",
    "/etc/b",
    "/etc/sub/c",
    "/opt/x",
    "/opt/x/y",
    "/usr/z",
];

fn kind(k: u8) -> EntryKind {
    match k % 4 {
        0 => inline("small"),
        1 => EntryKind::File {
            size: 100_000,
            content: Content::External(Sha256HashValue::from_hex([b'a'; 64]).unwrap()),
        },
        2 => EntryKind::Symlink {
            target: "../a".into(),
        },
        _ => EntryKind::Dir,
    }
}

/// A random DAG: module i may depend on any earlier one; random category, variety, files,
/// protection and masks. Names are random so name order differs from generation order.
fn dag() -> impl Strategy<Value = Vec<Spec>> {
    let one = (
        0usize..6,
        any::<bool>(),
        any::<u64>(),
        proptest::collection::vec((0usize..PATHS.len(), any::<u8>()), 0..4),
        any::<u8>(),
    );
    proptest::collection::vec(one, 1..9).prop_map(|mods| {
        let mut specs: Vec<Spec> = Vec::new();
        for (i, (cat, config, bits, files, flags)) in mods.into_iter().enumerate() {
            let mut s = module(&format!("m{}-{i}", (bits >> 40) % 97));
            s.category = CATEGORIES[cat];
            if config {
                s = s.config();
            }
            for (j, earlier) in specs.iter().enumerate() {
                if bits >> j & 1 == 1 {
                    s = s.dep(&earlier.name);
                }
            }
            for (p, k) in files {
                s = s.at(PATHS[p], kind(k));
            }
            if flags & 1 == 1 {
                s = s.protect("/etc/a");
            }
            if config && flags & 2 == 2 {
                s = s.mask("/opt/x");
            }
            specs.push(s);
        }
        specs
    })
}

fn fingerprint(c: &Composition) -> serde_json::Value {
    serde_json::to_value(c).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn order_respects_every_dependency(specs in dag()) {
        let c = run(&specs);
        check_invariants(&c);
        prop_assert!(!c.findings().iter().any(|f| f.code == Code::DepCycle || f.code == Code::DepMissing));
        let pos: BTreeMap<&str, usize> =
            names(&c).into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        prop_assert_eq!(pos.len(), specs.len());
        for s in &specs {
            for d in &s.deps {
                prop_assert!(pos[d.as_str()] < pos[s.name.as_str()], "{} before {}", d, s.name);
            }
        }
    }

    #[test]
    fn input_order_does_not_matter(
        (specs, shuffled) in dag().prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle()))
    ) {
        let a = run(&specs);
        let b = run(&shuffled);
        prop_assert_eq!(fingerprint(&a), fingerprint(&b));
        prop_assert_eq!(a.merged_digest(), b.merged_digest());
    }
}

// ---------------------------------------------------------------------------------------
// Known answer: the merged digest equals the digest of the merged tree built as one module.

fn opts() -> BuildOptions {
    BuildOptions {
        source_date_epoch: 0,
        version: "1.0.0".into(),
        git_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        architecture: "all".into(),
        builder_version: "module-builder test".into(),
    }
}

/// Writes a module directory: `manifest.yaml` and `rootfs/` with `files` (path, content;
/// content `-> t` is a symlink to t; a path ending in `*` is executable).
fn write_module(dir: &Path, manifest: &str, files: &[(&str, &str)]) {
    fs::create_dir_all(dir.join("rootfs")).unwrap();
    fs::write(dir.join("manifest.yaml"), manifest).unwrap();
    for (path, content) in files {
        put(&dir.join("rootfs"), path, content);
    }
}

/// Writes one file or symlink under `rootfs`, replacing what is there.
fn put(rootfs: &Path, path: &str, content: &str) {
    let (path, exec) = match path.strip_suffix('*') {
        Some(p) => (p, true),
        None => (path, false),
    };
    let p = rootfs.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = fs::remove_file(&p);
    if let Some(target) = content.strip_prefix("-> ") {
        symlink(target, &p).unwrap();
    } else {
        fs::write(&p, content).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The layer of a module directory, read from its files on disk (not from the artifact's
/// index): what composefs records for each planned entry.
fn layer_from_disk(dir: &Path) -> Layer {
    let p = plan::plan(dir).unwrap_or_else(|e| panic!("{e}"));
    let entries = p
        .entries
        .iter()
        .map(|e| {
            let kind = match &e.node.kind {
                Kind::Dir => EntryKind::Dir,
                Kind::Symlink { target } => EntryKind::Symlink {
                    target: target.clone(),
                },
                Kind::File { size } => {
                    let data = fs::read(p.rootfs.join(&e.node.rel)).unwrap();
                    let content = if *size <= INLINE_MAX {
                        Content::Inline(data.into())
                    } else {
                        let mut h = FsVerityHasher::<Sha256HashValue, 12>::new();
                        h.write_all(&data).unwrap();
                        Content::External(h.digest())
                    };
                    EntryKind::File {
                        size: *size,
                        content,
                    }
                }
            };
            Entry {
                path: e.node.target(),
                mode: e.mode,
                kind,
            }
        })
        .collect();
    Layer {
        manifest: p.manifest,
        version: Version::parse("1.0.0").unwrap(),
        entries,
    }
}

fn manifest_text(name: &str, rest: &str) -> String {
    format!("schema_version: 1\nidentity:\n  name: {name}\n{rest}file_spec:\n  include: [\"/\"]\n")
}

/// A module directory to write: name, manifest text, (path, content) pairs for `put`.
type ModuleDir<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

#[test]
fn merged_digest_equals_the_merged_tree_built_as_one_module() {
    let t = tempfile::tempdir().unwrap();
    let big = "a line longer than the inline limit, repeated\n".repeat(40);
    let modules: [ModuleDir; 3] = [
        (
            "base",
            manifest_text("base", "  category: system-base\n  variety: subscription\n"),
            vec![
                ("/etc/base.conf", "base = 1\n"),
                ("/etc/redis/redis.conf", "from base\n"),
                ("/usr/share/doc/base/README", &big),
                ("/usr/share/common", "kept\n"),
                ("/usr/bin/tool*", &big),
            ],
        ),
        (
            "redis",
            manifest_text("redis", "  category: userland\n  variety: subscription\n")
                + "protected_spec: [\"/etc/redis/redis.conf\"]\ndependency_spec: [{name: base}]\n",
            vec![
                ("/etc/redis/redis.conf", "bind 127.0.0.1\n"),
                ("/etc/redis/current.conf", "-> redis.conf"),
                ("/var/lib/redis/.gitkeep", ""),
            ],
        ),
        (
            "site",
            manifest_text("site", "  category: firmware\n  variety: config\n")
                + "mask: [\"/usr/share/doc\"]\n",
            vec![("/etc/base.conf", "base = 2\n"), ("/etc/motd", &big)],
        ),
    ];
    let mut layers = Vec::new();
    for (name, manifest, files) in &modules {
        let dir = t.path().join(name);
        write_module(&dir, manifest, files);
        let layer = layer_from_disk(&dir);
        // A layer without dependencies composes to exactly its own image (at
        // SOURCE_DATE_EPOCH 0); redis alone is blocked by DEP_MISSING.
        let built =
            artifact::build(&plan::plan(&dir).unwrap(), &opts(), &dir.join("dist")).unwrap();
        let alone = compose(std::slice::from_ref(&layer));
        let expect = (*name != "redis").then_some(built.module.composefs.digest);
        assert_eq!(alone.merged_digest(), expect, "{name}");
        layers.push(layer);
    }
    layers.reverse(); // input order must not matter
    let c = powernode_module::compose::compose_tree(&layers);
    check_invariants(&c);
    assert_eq!(names(&c), ["base", "redis", "site"]);
    assert_eq!(codes(&c), [Code::ProtectedDropped, Code::FileShadowed]);
    assert_eq!(c.owner("/etc/redis/redis.conf").unwrap().as_str(), "redis");
    assert_eq!(c.owner("/etc/base.conf").unwrap().as_str(), "site");
    assert_eq!(c.owner("/usr/share").unwrap().as_str(), "base");
    assert_eq!(c.owner("/usr/share/doc"), None);

    // By hand, in composition order: base without what site masks and what redis protects,
    // then redis, then site on top.
    let merged = t.path().join("merged");
    write_module(
        &merged,
        &manifest_text("merged", "  category: userland\n  variety: subscription\n"),
        &[],
    );
    for (name, _, files) in &modules {
        for (path, content) in files {
            let plain = path.trim_end_matches('*');
            let masked = *name == "base" && plain.starts_with("/usr/share/doc/");
            let dropped = *name == "base" && plain == "/etc/redis/redis.conf";
            if !(masked || dropped) {
                put(&merged.join("rootfs"), path, content);
            }
        }
    }
    let p = plan::plan(&merged).unwrap_or_else(|e| panic!("{e}"));
    let built = artifact::build(&p, &opts(), &merged.join("dist")).unwrap();
    assert_eq!(c.merged_digest(), Some(built.module.composefs.digest));
    // The image a node writes measures to the same digest.
    let (image, measured) = c.image().unwrap();
    assert_eq!(measured, built.module.composefs.digest);
    assert_eq!(
        powernode_module::artifact::hash::fsverity_of(&image),
        measured,
        "the image's own fs-verity digest"
    );
}
