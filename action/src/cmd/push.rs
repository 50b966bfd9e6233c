//! `module-builder push`.

use crate::{
    cli::{PushArgs, RegistryArgs},
    git,
};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::Reference;
use powernode_module::{
    artifact::ModuleJson,
    registry::{self, artifact::Pushed},
};
use std::{io::IsTerminal, path::Path, process::ExitCode};

/// Reads `dir/module.json`.
pub fn load_module_json(dir: &Path) -> anyhow::Result<ModuleJson> {
    let p = dir.join("module.json");
    let text = std::fs::read(&p)
        .with_context(|| format!("reading {} (run `module-builder build` first)", p.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not a module.json", p.display()))
}

/// The target reference: the given one, tagged `v<version>` when it has no tag.
pub fn target(reference: &str, version: &str) -> anyhow::Result<Reference> {
    let r = registry::parse_reference(reference)?;
    if r.digest().is_some() {
        anyhow::bail!("--ref {reference}: push to a tag, not a digest");
    }
    let explicit_tag = reference
        .rsplit_once('/')
        .map(|(_, last)| last.contains(':'))
        .unwrap_or(false);
    Ok(if explicit_tag {
        // The receiver takes the version from the tag too and refuses a mismatch: catch it
        // here, before anything is pushed.
        let tag = r.tag().unwrap_or_default();
        match powernode_module::Version::from_tag(tag) {
            Ok(v) if v.to_string() == version => r,
            Ok(v) => anyhow::bail!(
                "--ref {reference}: the tag names version {v}, but the artifact is version {version}"
            ),
            Err(e) => anyhow::bail!(
                "--ref {reference}: {e}; release tags name the version (v{version} or {version})"
            ),
        }
    } else {
        registry::with_tag(&r, &format!("v{version}"))
    })
}

/// org.opencontainers.image.source: the flag, the Actions repository, or git's origin.
pub fn source_url(flag: Option<&str>, dir: &Path) -> Option<String> {
    if let Some(s) = flag {
        return Some(s.to_owned());
    }
    if let (Ok(server), Ok(repo)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        return Some(format!("{}/{repo}", server.trim_end_matches('/')));
    }
    git::origin_url(dir)
}

/// Pushes with a progress bar on a terminal and plain log lines otherwise.
pub fn push(
    rt: &tokio::runtime::Runtime,
    artifact_dir: &Path,
    m: &ModuleJson,
    target: &Reference,
    source: Option<&str>,
    reg: &RegistryArgs,
) -> anyhow::Result<Pushed> {
    let client = super::registry(target, reg)?;
    let tar = artifact_dir.join("module.tar");
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(Some(m.tar.size), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message(format!("pushing {}", target.whole()));
        Some(b)
    } else {
        None
    };
    let b = bar.clone();
    let progress = move |n: u64| {
        if let Some(b) = &b {
            b.set_position(n);
        }
    };
    let started = std::time::Instant::now();
    let pushed = rt
        .block_on(registry::artifact::push_module(
            &client, target, &tar, m, source, progress,
        ))
        .with_context(|| format!("pushing {} to {}", tar.display(), target.whole()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(
        reference = %pushed.reference,
        uploaded_blob = pushed.uploaded_blob,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pushed"
    );
    Ok(pushed)
}

pub fn run(a: PushArgs) -> anyhow::Result<ExitCode> {
    let dir = a.artifact_dir.clone().unwrap_or_else(|| a.dir.join("dist"));
    let m = load_module_json(&dir)?;
    let target = target(&a.reference, &m.version)?;
    let source = source_url(a.source.as_deref(), &a.dir);
    let rt = super::runtime()?;
    let pushed = push(&rt, &dir, &m, &target, source.as_deref(), &a.registry)?;
    if !pushed.uploaded_blob {
        eprintln!(
            "blob {} already in the registry; not uploaded again",
            m.tar.sha256
        );
    }
    println!("{}", pushed.reference);
    Ok(ExitCode::SUCCESS)
}
