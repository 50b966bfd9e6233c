//! `module-builder validate`.

use crate::cli::{Format, ValidateArgs};
use powernode_module::artifact::plan::analyse;
use std::process::ExitCode;

pub fn run(a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let analysis = analyse(&a.dir, a.category);
    let r = &analysis.report;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(r)?),
        Format::Human => super::print_report(r),
    }
    Ok(if r.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
