pub mod build;
pub mod inspect;
pub mod keys;
pub mod push;
pub mod release;
pub mod sign;
pub mod validate;
pub mod verify;
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

/// A multi-threaded runtime for the network commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The HTTP client for Fulcio, Rekor and the Actions token endpoint.
pub fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("module-builder/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()?)
}

/// A registry client for `reference`'s host with resolved credentials.
pub fn registry(
    reference: &oci_client::Reference,
    a: &crate::cli::RegistryArgs,
) -> anyhow::Result<powernode_module::registry::Registry> {
    use powernode_module::registry::{Registry, is_loopback, resolve_credentials};
    let host = reference.resolve_registry();
    let creds = resolve_credentials(host, a.username.clone(), a.password.clone())
        .map_err(|e| anyhow::anyhow!("registry credentials for {host}: {e}"))?;
    tracing::info!(registry = host, credentials = ?creds, "registry");
    if !a.insecure && !is_loopback(host) {
        tracing::debug!(registry = host, "using HTTPS");
    }
    Ok(Registry::new(reference, creds, a.insecure))
}
