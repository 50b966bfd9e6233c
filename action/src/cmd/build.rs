//! `module-builder build`.

use crate::{
    cli::{BuildArgs, Format},
    git,
};
use anyhow::Context;
/// The version of a build that names none (no --version, no release tag at HEAD).
const DEV_VERSION: &str = "0.0.0-dev";

use powernode_module::Version;
use powernode_module::artifact::{
    self, BuildOptions,
    plan::{self, Plan},
    walk::Kind,
};
use serde_json::json;
use std::{path::Path, process::ExitCode};

/// The BUILDER_VERSION recorded in every artifact.
pub fn builder_version() -> String {
    format!("module-builder {}", env!("CARGO_PKG_VERSION"))
}

/// SOURCE_DATE_EPOCH: the flag, then the environment, then HEAD's commit time, then 0.
pub fn source_date_epoch(flag: Option<u64>, dir: &Path) -> anyhow::Result<u64> {
    if let Some(n) = flag {
        return Ok(n);
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH")
        && !v.is_empty()
    {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds"));
    }
    Ok(git::head_commit_time(dir).unwrap_or(0))
}

pub fn options(a: &BuildArgs) -> anyhow::Result<BuildOptions> {
    Ok(BuildOptions {
        source_date_epoch: source_date_epoch(a.source_date_epoch, &a.dir)?,
        version: match (&a.version, git::exact_tag(&a.dir)) {
            (Some(v), _) => v.to_string(),
            // A tag at HEAD that is not a version is some other tag: build as a dev version.
            (None, Some(t)) => Version::from_tag(&t)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| DEV_VERSION.into()),
            (None, None) => DEV_VERSION.into(),
        },
        git_commit: git::head_commit(&a.dir).unwrap_or_default(),
        architecture: a.architecture.clone(),
        builder_version: builder_version(),
    })
}

pub fn run(a: BuildArgs) -> anyhow::Result<ExitCode> {
    let plan = match plan::plan(&a.dir) {
        Ok(p) => p,
        Err(plan::PlanError::Invalid(report)) => {
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Human => super::print_report(&report),
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &plan.report.warnings {
        tracing::warn!(code = %w.code, "{w}");
    }
    if a.dry_run {
        print_dry_run(&plan, a.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = options(&a)?;
    let out = a.output.clone().unwrap_or_else(|| a.dir.join("dist"));
    let started = std::time::Instant::now();
    let report = artifact::build(&plan, &opts, &out)
        .with_context(|| format!("building {}", a.dir.display()))?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        tar = %report.tar_path.display(),
        "built"
    );
    let m = &report.module;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(m)?),
        Format::Human => {
            println!("built {} {}", m.name, m.version);
            println!(
                "  {} ({} bytes, {} files)",
                report.tar_path.display(),
                m.tar.size,
                m.files
            );
            println!("  tar sha256:       {}", m.tar.sha256);
            println!(
                "  composefs digest: {} (format {})",
                m.composefs.digest, m.composefs.format
            );
            println!("  source date:      {}", m.source_date_epoch);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_dry_run(plan: &Plan, format: Format) -> anyhow::Result<()> {
    let entries: Vec<_> = plan
        .entries
        .iter()
        .map(|e| {
            let (kind, size, target) = match &e.node.kind {
                Kind::Dir => ("dir", None, None),
                Kind::File { size } => ("file", Some(*size), None),
                Kind::Symlink { target } => ("symlink", None, Some(target.clone())),
            };
            json!({"path": e.node.target(), "type": kind, "mode": format!("{:04o}", e.mode), "size": size, "target": target})
        })
        .collect();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "module": plan.manifest.identity.name,
                "entries": entries,
                "files": plan.file_count(),
                "total_size": plan.total_size(),
            }))?
        ),
        Format::Human => {
            for e in &plan.entries {
                match &e.node.kind {
                    Kind::Dir => println!("d {:04o} {:>10}  {}/", e.mode, "", e.node.target()),
                    Kind::File { size } => {
                        println!("- {:04o} {:>10}  {}", e.mode, size, e.node.target())
                    }
                    Kind::Symlink { target } => {
                        println!(
                            "l {:04o} {:>10}  {} -> {target}",
                            e.mode,
                            "",
                            e.node.target()
                        )
                    }
                }
            }
            println!(
                "{}: {} files, {} ({} bytes) would be packed",
                plan.manifest.identity.name,
                plan.file_count(),
                super::human_size(plan.total_size()),
                plan.total_size()
            );
        }
    }
    Ok(())
}
