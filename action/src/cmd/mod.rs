pub mod build;
pub mod inspect;
pub mod validate;

use powernode_module::diagnostics::Report;

/// Prints a validation report for humans: one line per finding, then a summary.
pub fn print_report(r: &Report) {
    for f in r.all() {
        println!("{f}");
    }
    let n = |v: &Vec<_>| v.len();
    println!(
        "{}: {} error(s), {} conflict(s), {} warning(s)",
        if r.valid { "valid" } else { "invalid" },
        n(&r.errors),
        n(&r.conflicts),
        n(&r.warnings)
    );
}

/// Bytes as a short human string (1.5 KiB).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
