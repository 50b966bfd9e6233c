//! Composition at fleet scale: 50 layers × 2,000 files, composed and digested 15 times.
//!
//! `cargo run --release --example compose_bench -p powernode-module` prints
//! `compose 50x2000: median N ms (min M, max X)`; `bench/fleet.sh` reads that line. The next
//! line is the CPU time per composition (both threads), which a shared machine does not
//! inflate the way it inflates wall time.
//!
//! `-- --phases` times the merged digest phase by phase instead (wall and CPU: composefs'
//! tree, the image writer with its fs-verity hash, the hash alone); `-- --phases --dump FILE`
//! also writes the merged tree as a composefs dumpfile, to compare with C `mkcomposefs
//! --from-file FILE --min-version=1 --print-digest-only` (patches/README.md).
//!
//! The layers look like real ones: each module ships its own tree plus a few paths every
//! module ships (so shadowing and protection are exercised), a third of the files small enough
//! to be inlined, and two config modules on top that mask part of a lower module.

use composefs::fsverity::{FsVerityHashValue, Sha256HashValue};
use powernode_module::{
    Version,
    artifact::hash::Content,
    compose::{Entry, EntryKind, Layer, compose, compose_tree},
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

fn median(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}

/// `--phases`: the merged tree's digest, phase by phase, single-threaded (what the digest
/// thread of `compose` does); `--dump FILE`: the merged tree as a composefs dumpfile, for
/// `mkcomposefs --from-file FILE --min-version=1 --print-digest-only`.
fn phases(layers: &[Layer], dump: Option<&str>) {
    use powernode_module::artifact::composefs::TreeBuilder;
    let c = compose_tree(layers);
    let entries = c.entries();
    let build = || {
        let mut t = TreeBuilder::new(0);
        for e in entries {
            let rel = &e.path[1..];
            match &e.kind {
                EntryKind::Dir => t.add_dir(rel, e.mode),
                EntryKind::File { size, content } => {
                    t.add_file(rel, e.mode, *size, content.clone())
                }
                EntryKind::Symlink { target } => t.add_symlink(rel, target),
            }
            .expect("merged entries form a tree");
        }
        t.finish()
    };
    if let Some(path) = dump {
        std::fs::write(path, build().dumpfile()).expect("dumpfile written");
        println!("  dumpfile written to {path}");
    }
    // Wall time and this thread's CPU time (load-independent) per phase.
    let mut rows: Vec<(&str, Vec<Duration>, Vec<Duration>)> =
        ["tree build", "image+verity", "verity alone", "digest total"]
            .into_iter()
            .map(|n| (n, vec![], vec![]))
            .collect();
    for run in 0..RUNS {
        let (w0, c0) = (Instant::now(), thread_cpu());
        let tree = build();
        let (w1, c1) = (Instant::now(), thread_cpu());
        let (bytes, d) = tree.image();
        let (w2, c2) = (Instant::now(), thread_cpu());
        let v: Sha256HashValue = composefs::fsverity::compute_verity(&bytes);
        let (w3, c3) = (Instant::now(), thread_cpu());
        assert_eq!(v.to_hex(), d.hex());
        for (i, (a, b, ca, cb)) in [
            (w0, w1, c0, c1),
            (w1, w2, c1, c2),
            (w2, w3, c2, c3),
            (w0, w2, c0, c2),
        ]
        .into_iter()
        .enumerate()
        {
            rows[i].1.push(b - a);
            rows[i].2.push(cb - ca);
        }
        if run == 0 {
            println!("  image {} bytes, {} entries", bytes.len(), entries.len());
        }
    }
    for (name, wall, cpu) in rows {
        let (m, lo, hi) = median(wall);
        let (cm, clo, chi) = median(cpu);
        println!(
            "  {name}: wall median {m:.1} ms (min {lo:.1}, max {hi:.1}); cpu median {cm:.1} (min {clo:.1}, max {chi:.1})"
        );
    }
}

/// This process's CPU time, every thread's, finished ones included (`/proc/self/stat`
/// utime + stime, in clock ticks of 10 ms: meaningful as a mean over many runs).
fn process_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at its closing parenthesis.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc_pid_stat(5); `rest` starts at field 3.
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(14) + field(15);
    Duration::from_millis(ticks * 10)
}

/// This thread's CPU time (`/proc/thread-self/schedstat`, nanoseconds on a CPU).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn main() {
    let layers: Vec<Layer> = (0..MODULES).map(layer).collect();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--phases") {
        let dump = args
            .iter()
            .position(|a| a == "--dump")
            .and_then(|i| args.get(i + 1));
        phases(&layers, dump.map(String::as_str));
        return;
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    let cpu0 = process_cpu();
    for _ in 0..RUNS {
        let t = Instant::now();
        let c = compose(&layers);
        times.push(t.elapsed());
        last = Some(c);
    }
    let cpu = (process_cpu() - cpu0) / RUNS as u32;
    let c = last.expect("at least one run");
    assert!(!c.is_blocked(), "the bench composition must not be blocked");
    times.sort();
    println!(
        "compose {MODULES}x{FILES}: median {:.1} ms (min {:.1}, max {:.1})",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1]),
    );
    // On a shared machine the wall times above include waiting for a core; this does not.
    println!(
        "  cpu {:.1} ms per composition (both threads, mean of {RUNS})",
        ms(cpu)
    );
    println!(
        "  {} paths, {} findings, merged {}",
        c.owners().len(),
        c.findings().len(),
        c.merged_digest().map(|d| d.to_string()).unwrap_or_default(),
    );
}
