//! Validation against the live set: `POST /api/v1/validate` and MCP's
//! `system_validate_module_manifest` (`{valid, warnings, conflicts, errors}`). Besides the
//! manifest's own findings it composes the manifest with the live modules (those of the
//! template's desired state when `template_id` is given, else every module's newest live
//! version), so a protected-path collision shows before anything is pushed.
//!
//! A manifest alone has no files: the candidate ships, for this check, every path of the
//! live modules its `file_spec` selects — exactly the paths where it could collide.

use super::{Fleet, layers, resolve};
use crate::error::ServiceError;
use powernode_module::{
    Version,
    artifact::hash::Content,
    compose::{self, Entry, EntryKind, Layer},
    diagnostics::{Code, Finding, Report},
    manifest::{self, Category, FILE_NAME},
};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// The contents of `manifest.yaml`.
    pub manifest_yaml: String,
    /// The category the module is published under (its repository's pinned category:
    /// `base`, `security`, `userland`, …).
    #[schemars(with = "powernode_module::manifest::Category")]
    pub category_slug: String,
    /// Compose with this template's live modules rather than all live modules.
    #[serde(default)]
    pub template_id: Option<crate::store::TemplateId>,
}

impl Fleet {
    /// A manifest's own findings, and those of composing it with the live modules (the
    /// template's when `template_id` is given, else every module's newest live version).
    pub async fn validate(&self, b: ValidateBody) -> Result<Report, ServiceError> {
        let category = b
            .category_slug
            .parse::<Category>()
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let parsed = manifest::parse(&b.manifest_yaml);
        let mut findings = parsed.findings;
        let Some(m) = parsed.manifest else {
            return Ok(Report::from_findings(findings));
        };
        if m.identity.category != category {
            findings.push(
                Finding::new(
                    Code::CategoryMismatch,
                    FILE_NAME,
                    format!(
                        "declares category {}, but it is being validated as {category}",
                        m.identity.category
                    ),
                )
                .field("identity.category")
                .at(m.identity.category_pos),
            );
        }
        let live = super::candidates(self.store.live_versions().await?);
        let others: Vec<&resolve::Candidate<_>> = match &b.template_id {
            Some(t) => {
                self.template(t).await?;
                let assignments = self
                    .store
                    .assignments(t)
                    .await?
                    .into_iter()
                    .map(|a| (a.module_name, a.requirement.and_then(|r| r.parse().ok())))
                    .collect::<Vec<_>>();
                resolve::resolve(&assignments, &live)
                    .chosen
                    .into_values()
                    .collect()
            }
            None => live
                .values()
                .filter_map(|vs| {
                    vs.iter()
                        .max_by(|a, b| a.version.as_semver().cmp(b.version.as_semver()))
                })
                .collect(),
        };
        let name = m.identity.name.to_string();
        let mut layers_in = Vec::new();
        for c in others
            .into_iter()
            .filter(|c| c.data.module.as_str() != name)
        {
            layers_in.push(layers::layer_of(c).map_err(|e| anyhow::anyhow!("{}: {e}", c.data.id))?);
        }
        layers_in.push(candidate_layer(m, &layers_in));
        let composition = compose::compose(&layers_in);
        findings.extend(
            composition
                .findings()
                .iter()
                .filter(|f| f.file == name || f.message.contains(&name))
                .cloned(),
        );
        Ok(Report::from_findings(findings))
    }
}

/// The candidate as a layer: the paths of `others` its selection ships (files where they
/// have files, with their parent directories).
fn candidate_layer(m: manifest::Manifest, others: &[Layer]) -> Layer {
    let mut files = BTreeSet::new();
    for l in others {
        for e in &l.entries {
            if !matches!(e.kind, EntryKind::Dir) && m.selector.ships(&e.path) {
                files.insert(e.path.clone());
            }
        }
    }
    let mut dirs = BTreeSet::new();
    for f in &files {
        let mut p = f.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            dirs.insert(parent.to_owned());
            p = parent;
        }
    }
    let mut entries: Vec<Entry> = dirs
        .into_iter()
        .map(|path| Entry {
            path,
            mode: 0o755,
            kind: EntryKind::Dir,
        })
        .collect();
    entries.extend(files.into_iter().map(|path| Entry {
        path,
        mode: 0o644,
        kind: EntryKind::File {
            size: 0,
            content: Content::Inline(Box::default()),
        },
    }));
    Layer {
        manifest: m,
        version: Version::parse("0.0.0").unwrap_or_else(|_| unreachable!("0.0.0 is SemVer")),
        entries,
    }
}
