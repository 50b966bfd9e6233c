//! Measures in-process signature verification of one artifact (fetch the `.sig` manifest and
//! payload, run every check), the work the receiver does per ingest. Used by bench/push.sh.
//!
//!   cargo run --release -p powernode-module --example verify_latency -- HOST/REPO@sha256:… cosign.pub [N]

use powernode_module::{
    registry::{Credentials, Registry, parse_reference},
    trust::verify::{Policy, TrustedKey, verify},
};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(reference), Some(key)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: verify_latency HOST/REPO@sha256:… cosign.pub [N]");
        std::process::exit(2);
    };
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let r = parse_reference(reference).expect("reference");
    let digest = r
        .digest()
        .expect("a digest reference")
        .parse()
        .expect("digest");
    let pem = std::fs::read_to_string(key).expect("public key");
    let policy = Policy {
        keys: vec![TrustedKey::from_pem(&pem).expect("key")],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new(&r, Credentials::Anonymous, false);
    // One warm-up: connection set-up and lazy statics are not part of a verification.
    rt.block_on(verify(&registry, &r, &digest, &policy))
        .expect("verifies");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        rt.block_on(verify(&registry, &r, &digest, &policy))
            .expect("verifies");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "verify x{n}: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, min {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        times[0]
    );
}
