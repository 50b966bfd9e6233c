//! `module-builder validate [--against URL]`.

use crate::cli::{Format, ValidateArgs};
use anyhow::Context as _;
use powernode_module::{artifact::plan::analyse, diagnostics::Report, manifest::Category};
use std::process::ExitCode;

pub fn run(a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let analysis = analyse(&a.dir, a.category);
    let mut report = analysis.report;
    if let Some(url) = &a.against
        && let Some(plan) = &analysis.plan
    {
        let category = a.category.unwrap_or(plan.manifest.identity.category);
        let remote = against(url, &a, &plan.manifest_text, category)?;
        report = Report::from_findings(report.all().chain(remote.all()).cloned());
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => super::print_report(&report),
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `POST {url}/api/v1/validate`: the receiver composes the manifest with its live modules.
fn against(
    url: &str,
    a: &ValidateArgs,
    manifest_text: &str,
    category: Category,
) -> anyhow::Result<Report> {
    let endpoint = format!("{}/api/v1/validate", url.trim_end_matches('/'));
    let body = serde_json::json!({
        "manifest_yaml": manifest_text,
        "category_slug": category.slug(),
        "template_id": a.template,
    });
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(&endpoint).json(&body);
        if let Some(t) = &a.token {
            req = req.bearer_auth(t);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("--against: POST {endpoint}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("--against: {endpoint} answered {status}: {text}");
        }
        serde_json::from_str::<Report>(&text).with_context(|| {
            format!("--against: {endpoint} answered something other than a validation report")
        })
    })
}
