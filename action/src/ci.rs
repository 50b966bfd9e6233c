//! Running inside Gitea/Forgejo/GitHub Actions: step outputs, the step summary, log groups.

use std::{fs::OpenOptions, io::Write};

/// Whether we run as an Actions step.
pub fn in_actions() -> bool {
    ["GITHUB_ACTIONS", "GITEA_ACTIONS", "FORGEJO_ACTIONS"]
        .iter()
        .any(|k| std::env::var(k).map(|v| v == "true").unwrap_or(false))
}

/// Appends `key=value` lines to `$GITHUB_OUTPUT`.
pub fn set_outputs(pairs: &[(&str, String)]) -> std::io::Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    for (k, v) in pairs {
        // Values are single-line (digests, references, versions).
        writeln!(f, "{k}={}", v.replace('\n', " "))?;
    }
    Ok(())
}

/// Appends Markdown to `$GITHUB_STEP_SUMMARY`.
pub fn summary(markdown: &str) -> std::io::Result<()> {
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(markdown.as_bytes())
}

/// A collapsible log group in Actions; a plain heading elsewhere.
pub struct Group;

impl Group {
    pub fn start(title: &str) -> Group {
        if in_actions() {
            println!("::group::{title}");
        } else {
            eprintln!("== {title}");
        }
        Group
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if in_actions() {
            println!("::endgroup::");
        }
    }
}

/// The tag this Actions run is for (`refs/tags/v0.1.0` → `v0.1.0`); `None` when the run is
/// not for a tag.
pub fn tag_from_ref() -> Option<String> {
    let is_tag = std::env::var("GITHUB_REF_TYPE")
        .map(|t| t == "tag")
        .unwrap_or(false)
        || std::env::var("GITHUB_REF")
            .map(|r| r.starts_with("refs/tags/"))
            .unwrap_or(false);
    if !is_tag {
        return None;
    }
    let name = std::env::var("GITHUB_REF_NAME").ok().or_else(|| {
        std::env::var("GITHUB_REF")
            .ok()
            .map(|r| r.trim_start_matches("refs/tags/").to_owned())
    })?;
    Some(name)
}
