//! Composition at fleet scale: 50 layers × 2,000 files, composed and digested 15 times.
//!
//! `cargo run --release --example compose_bench -p powernode-module` prints
//! `compose 50x2000: median N ms (min M, max X)`; `bench/fleet.sh` reads that line.
//!
//! The layers look like real ones: each module ships its own tree plus a few paths every
//! module ships (so shadowing and protection are exercised), a third of the files small enough
//! to be inlined, and two config modules on top that mask part of a lower module.

use composefs::fsverity::{FsVerityHashValue, Sha256HashValue};
use powernode_module::{
    Version,
    artifact::hash::Content,
    compose::{Entry, EntryKind, Layer, compose},
    manifest,
};
use std::time::{Duration, Instant};

/// The allocator the receiver and the agent run with (see ARCHITECTURE.md, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MODULES: usize = 50;
const FILES: usize = 2_000;
const SHARED: usize = 20;
const RUNS: usize = 15;
const CATEGORIES: [&str; 6] = [
    "firmware",
    "system-base",
    "security",
    "networking",
    "observability",
    "userland",
];

fn dir(path: String) -> Entry {
    Entry {
        path,
        mode: 0o755,
        kind: EntryKind::Dir,
    }
}

fn file(path: String, seed: usize) -> Entry {
    let kind = if seed.is_multiple_of(3) {
        let text = format!("value = {seed}\n");
        EntryKind::File {
            size: text.len() as u64,
            content: Content::Inline(text.into_bytes().into()),
        }
    } else {
        let hex = format!("{seed:064x}");
        EntryKind::File {
            size: 4096 + seed as u64,
            content: Content::External(
                Sha256HashValue::from_hex(hex).expect("64 hex digits are a digest"),
            ),
        }
    };
    Entry {
        path,
        mode: if seed.is_multiple_of(7) { 0o755 } else { 0o644 },
        kind,
    }
}

fn layer(i: usize) -> Layer {
    let name = format!("mod-{i:02}");
    let config = i >= MODULES - 2;
    // The highest subscription module protects the first shared file: lower copies drop.
    let protected = if i == MODULES - 3 {
        "[\"/etc/shared/s0\"]"
    } else {
        "[]"
    };
    let mask = if config {
        format!("[\"/usr/lib/mod-{:02}/d3\"]", i - 40)
    } else {
        "[]".into()
    };
    let deps = if i > 0 && !i.is_multiple_of(5) {
        format!("[{{name: mod-{:02}}}]", i - 1)
    } else {
        "[]".into()
    };
    let text = format!(
        "schema_version: 1\nidentity:\n  name: {name}\n  category: {}\n  variety: {}\n\
         file_spec:\n  include: [\"/\"]\nprotected_spec: {protected}\ndependency_spec: {deps}\n\
         mask: {mask}\n",
        CATEGORIES[i % CATEGORIES.len()],
        if config { "config" } else { "subscription" },
    );
    let out = manifest::parse(&text);
    let manifest = out
        .manifest
        .unwrap_or_else(|| panic!("bench manifest invalid: {:?}", out.findings));

    let mut entries = vec![
        dir("/etc".into()),
        dir("/etc/shared".into()),
        dir("/usr".into()),
        dir("/usr/lib".into()),
        dir(format!("/usr/lib/{name}")),
    ];
    for s in 0..SHARED {
        entries.push(file(format!("/etc/shared/s{s}"), i * 31 + s));
    }
    let own = FILES - SHARED;
    let per_dir = 100;
    for d in 0..own.div_ceil(per_dir) {
        entries.push(dir(format!("/usr/lib/{name}/d{d}")));
        for f in (d * per_dir)..own.min((d + 1) * per_dir) {
            entries.push(file(
                format!("/usr/lib/{name}/d{d}/file-{f:04}.conf"),
                i * FILES + f,
            ));
        }
    }
    Layer {
        manifest,
        version: Version::parse("1.0.0").expect("valid version"),
        entries,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let layers: Vec<Layer> = (0..MODULES).map(layer).collect();
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        let c = compose(&layers);
        times.push(t.elapsed());
        last = Some(c);
    }
    let c = last.expect("at least one run");
    assert!(!c.is_blocked(), "the bench composition must not be blocked");
    times.sort();
    println!(
        "compose {MODULES}x{FILES}: median {:.1} ms (min {:.1}, max {:.1})",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1]),
    );
    println!(
        "  {} paths, {} findings, merged {}",
        c.owners().len(),
        c.findings().len(),
        c.merged_digest().map(|d| d.to_string()).unwrap_or_default(),
    );
}
