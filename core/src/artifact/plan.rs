//! What a build would pack: the manifest's selection applied to the scanned rootfs.

use super::walk::{self, Kind, Node, WalkError};
use crate::diagnostics::{Code, Finding, Report};
use crate::manifest::{self, Category, Manifest, ShippedKind};
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

/// A node chosen for the artifact, with its normalised mode.
#[derive(Debug, Clone)]
pub struct Entry {
    pub node: Node,
    pub mode: u32,
}

/// A validated module, ready to be built.
#[derive(Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub manifest: Manifest,
    /// `manifest.yaml` exactly as written: it is packed byte for byte.
    pub manifest_text: String,
    /// Selected entries, depth-first in byte order, parents before children.
    pub entries: Vec<Entry>,
    /// The validation report (valid, possibly with warnings).
    pub report: Report,
}

impl Plan {
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.node.kind, Kind::Dir))
            .count()
    }

    pub fn total_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.node.kind {
                Kind::File { size } => size,
                _ => 0,
            })
            .sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the module is not valid:\n{}", render(.0))]
    Invalid(Report),
}

fn render(r: &Report) -> String {
    r.all()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything validation learned about a module directory.
#[derive(Debug)]
pub struct Analysis {
    pub plan: Option<Plan>,
    pub report: Report,
}

/// Normalised mode: directories 0755; files 0755 if any execute bit is set, else 0644;
/// symlinks 0777. The manifest's `modes` overrides this.
pub fn normalised_mode(kind: &Kind, disk_mode: u32) -> u32 {
    match kind {
        Kind::Dir => 0o755,
        Kind::File { .. } if disk_mode & 0o111 != 0 => 0o755,
        Kind::File { .. } => 0o644,
        Kind::Symlink { .. } => 0o777,
    }
}

/// Validates `dir` (manifest + rootfs) and, when valid, returns what a build would pack.
pub fn analyse(dir: &Path, category: Option<Category>) -> Analysis {
    let manifest_path = dir.join(manifest::FILE_NAME);
    let fail = |f: Finding| Analysis {
        plan: None,
        report: Report::from_findings([f]),
    };
    let text = match std::fs::read(&manifest_path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return fail(Finding::new(
                    Code::YamlInvalid,
                    manifest::FILE_NAME,
                    "manifest.yaml is not valid UTF-8",
                ));
            }
        },
        Err(e) => {
            return fail(Finding::new(
                Code::ManifestMissing,
                manifest::FILE_NAME,
                format!(
                    "cannot read {}: {e}; a module directory needs a manifest.yaml (see templates/module-repo)",
                    manifest_path.display()
                ),
            ));
        }
    };
    let parsed = manifest::parse(&text);
    let mut findings = parsed.findings;
    if let (Some(want), Some(m)) = (category, &parsed.manifest)
        && m.identity.category != want
    {
        {
            findings.push(
                Finding::new(
                    Code::CategoryMismatch,
                    manifest::FILE_NAME,
                    format!(
                        "the module's category is {}, but it is being validated for category {want}",
                        m.identity.category
                    ),
                )
                .field("identity.category")
                .at(m.identity.category_pos),
            );
        }
    }
    let rootfs = dir.join(super::ROOTFS);
    let nodes = match walk::walk(&rootfs) {
        Ok(n) => n,
        Err(e) => {
            findings.push(walk_finding(dir, &e));
            return Analysis {
                plan: None,
                report: Report::from_findings(findings),
            };
        }
    };
    let Some(m) = parsed.manifest else {
        return Analysis {
            plan: None,
            report: Report::from_findings(findings),
        };
    };
    let entries = select(&m, nodes);
    let shipped: Vec<(String, ShippedKind)> = entries
        .iter()
        .map(|e| {
            let k = match e.node.kind {
                Kind::Dir => ShippedKind::Dir,
                Kind::File { .. } => ShippedKind::File,
                Kind::Symlink { .. } => ShippedKind::Symlink,
            };
            (e.node.target(), k)
        })
        .collect();
    findings.extend(manifest::lint(
        &m,
        shipped.iter().map(|(p, k)| (p.as_str(), *k)),
    ));
    let report = Report::from_findings(findings);
    let plan = report.valid.then(|| Plan {
        dir: dir.to_owned(),
        rootfs,
        manifest: m,
        manifest_text: text,
        entries,
        report: report.clone(),
    });
    Analysis { plan, report }
}

/// Validates and plans a build; an invalid module is an error listing every finding.
pub fn plan(dir: &Path) -> Result<Plan, PlanError> {
    let a = analyse(dir, None);
    a.plan.ok_or(PlanError::Invalid(a.report))
}

fn walk_finding(dir: &Path, e: &WalkError) -> Finding {
    let msg = e.to_string();
    // Show paths relative to the module directory: that is what the author sees in git.
    let prefix = format!("{}/", dir.display());
    let msg = msg.strip_prefix(&prefix).unwrap_or(&msg).to_string();
    let file = msg.split(": ").next().unwrap_or(super::ROOTFS).to_string();
    Finding::new(e.code(), file, msg)
}

fn select(m: &Manifest, nodes: Vec<Node>) -> Vec<Entry> {
    let sel = &m.selector;
    // A directory ships for its own sake when it matches; ancestors of shipped paths are
    // added below either way.
    let keep: Vec<bool> = nodes.iter().map(|n| sel.ships(&n.target())).collect();
    let mut ancestors = HashSet::new();
    for (n, k) in nodes.iter().zip(&keep) {
        if *k {
            let mut rel = n.rel.as_str();
            while let Some(i) = rel.rfind('/') {
                rel = &rel[..i];
                if !ancestors.insert(rel.to_owned()) {
                    break;
                }
            }
        }
    }
    nodes
        .into_iter()
        .zip(keep)
        .filter(|(n, k)| *k || ancestors.contains(&n.rel))
        .map(|(node, _)| {
            let mode = m
                .modes
                .get(&node.target())
                .map(|a| a.value.0)
                .unwrap_or_else(|| normalised_mode(&node.kind, node.disk_mode));
            Entry { node, mode }
        })
        .collect()
}
