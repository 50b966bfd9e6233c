//! `module-builder release`: validate → build → push → sign, the CI entry point.

use crate::{
    ci::{self, Group},
    cli::{BuildArgs, Format, ReleaseArgs},
    git,
};
use anyhow::{Context, bail};
use powernode_module::{
    Version,
    artifact::{self, plan},
    registry,
};
use std::process::ExitCode;

/// The version to release: --version, else the Actions tag, else the exact git tag at HEAD,
/// always SemVer 2.0. Anything else is refused: releases come from tags.
fn version(a: &ReleaseArgs) -> anyhow::Result<Version> {
    if let Some(v) = &a.version {
        return Ok(v.clone());
    }
    if ci::in_actions() {
        let tag = ci::tag_from_ref().context(
            "this run is not for a tag (GITHUB_REF_TYPE/GITHUB_REF); release from a tag push, or pass --version",
        )?;
        return Version::from_tag(&tag).with_context(|| format!("release tag {tag}"));
    }
    match git::exact_tag(&a.dir) {
        Some(t) => Version::from_tag(&t).with_context(|| format!("git tag {t} at HEAD")),
        None => bail!(
            "HEAD of {} is not tagged; tag it (git tag v0.1.0) or pass --version",
            a.dir.display()
        ),
    }
}

pub fn run(a: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let version = version(&a)?;
    let out = a.output.clone().unwrap_or_else(|| a.dir.join("dist"));

    let plan = {
        let _g = Group::start("validate");
        match plan::plan(&a.dir) {
            Ok(p) => {
                super::print_report(&p.report);
                p
            }
            Err(plan::PlanError::Invalid(report)) => {
                super::print_report(&report);
                return Ok(ExitCode::from(1));
            }
        }
    };

    let built = {
        let _g = Group::start("build");
        let b = BuildArgs {
            dir: a.dir.clone(),
            output: Some(out.clone()),
            source_date_epoch: a.source_date_epoch,
            version: Some(version.clone()),
            architecture: "all".into(),
            dry_run: false,
            format: Format::Human,
        };
        let opts = super::build::options(&b)?;
        let r = artifact::build(&plan, &opts, &out)
            .with_context(|| format!("building {}", a.dir.display()))?;
        println!(
            "built {} ({} bytes), composefs {}",
            r.tar_path.display(),
            r.module.tar.size,
            r.module.composefs.digest
        );
        r.module
    };

    let rt = super::runtime()?;
    let target = super::push::target(&a.reference, &version.to_string())?;
    let pushed = {
        let _g = Group::start("push");
        let source = super::push::source_url(a.source.as_deref(), &a.dir);
        let p = super::push::push(&rt, &out, &built, &target, source.as_deref(), &a.registry)?;
        println!("pushed {}", p.reference);
        p
    };

    let signed = {
        let _g = Group::start("sign");
        let client = super::registry(&target, &a.registry)?;
        let s = super::sign::sign_digest(&rt, &client, &target, &pushed.digest, &a.signing)?;
        println!("signed: {}", s.signature_ref);
        s
    };

    let repo = registry::repository_name(&target);
    ci::set_outputs(&[
        ("digest", pushed.digest.to_string()),
        ("reference", pushed.reference.clone()),
        ("composefs-digest", built.composefs.digest.to_string()),
        ("version", version.to_string()),
    ])
    .context("writing $GITHUB_OUTPUT")?;
    let tag = format!("{repo}:{}", target.tag().unwrap_or_default());
    let mode = if a.signing.key.is_some() {
        "key"
    } else {
        "keyless"
    };
    ci::summary(&format!(
        "### Module {name} {version} released\n\n\
         | | |\n|---|---|\n\
         | Reference | `{reference}` |\n\
         | Tag | `{tag}` |\n\
         | Digest | `{digest}` |\n\
         | composefs digest | `{cfs}` (format {fmt}) |\n\
         | Artifact | {size} bytes, {files} files, sha256 `{tar}` |\n\
         | Signature | {mode}, `{sig}` |\n",
        name = built.name,
        reference = pushed.reference,
        tag = tag,
        digest = pushed.digest,
        cfs = built.composefs.digest,
        fmt = built.composefs.format,
        size = built.tar.size,
        files = built.files,
        tar = built.tar.sha256,
        sig = signed.signature_ref,
    ))
    .context("writing $GITHUB_STEP_SUMMARY")?;
    println!("{}", pushed.reference);
    Ok(ExitCode::SUCCESS)
}
