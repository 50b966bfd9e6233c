//! Which version of which module a template gets: each assigned module at its newest `live`
//! version matching the assignment's requirement (SemVer order, never `yanked`), plus the
//! `dependency_spec` closure of those versions, each dependency at its newest `live`
//! version. Pure: the caller loads the live versions.

use crate::store::VersionRow;
use powernode_module::{Version, manifest::Manifest};
use semver::VersionReq;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A `live` version that can be chosen.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub version: Version,
    pub manifest: Manifest,
    /// Whatever the caller needs back (the stored row).
    pub data: T,
}

/// An assignment that chose nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub module: String,
    pub why: String,
}

#[derive(Debug)]
pub struct Resolution<'a, T> {
    /// The chosen versions, by module name.
    pub chosen: BTreeMap<String, &'a Candidate<T>>,
    /// Assigned modules with no matching live version (left out of the state).
    pub unresolved: Vec<Unresolved>,
}

/// Resolves `assignments` (module → optional requirement) against `live` (module → its live
/// versions, any order). A dependency with no live version is not chosen: composition then
/// reports it as `DEP_MISSING`, which blocks the state.
pub fn resolve<'a, T>(
    assignments: &[(String, Option<VersionReq>)],
    live: &'a BTreeMap<String, Vec<Candidate<T>>>,
) -> Resolution<'a, T> {
    let newest = |module: &str, req: Option<&VersionReq>| {
        live.get(module)?
            .iter()
            .filter(|c| req.is_none_or(|r| r.matches(c.version.as_semver())))
            .max_by(|a, b| a.version.as_semver().cmp(b.version.as_semver()))
    };
    let mut chosen = BTreeMap::new();
    let mut unresolved = Vec::new();
    let mut queue = VecDeque::new();
    let assigned: BTreeSet<&str> = assignments.iter().map(|(m, _)| m.as_str()).collect();
    for (module, req) in assignments {
        match newest(module, req.as_ref()) {
            Some(c) => {
                chosen.insert(module.clone(), c);
                queue.push_back(c);
            }
            None => unresolved.push(Unresolved {
                module: module.clone(),
                why: match (live.get(module.as_str()), req) {
                    (None, _) => format!("{module} has no live version"),
                    (Some(_), Some(r)) => format!("no live version of {module} matches {r}"),
                    (Some(_), None) => format!("{module} has no live version"),
                },
            }),
        }
    }
    while let Some(c) = queue.pop_front() {
        for dep in &c.manifest.dependency_spec {
            let name = dep.name.as_str();
            // An assigned dependency is chosen by its own requirement (or left out, and
            // reported, when nothing matches it).
            if chosen.contains_key(name) || assigned.contains(name) {
                continue;
            }
            if let Some(d) = newest(name, None) {
                chosen.insert(name.to_owned(), d);
                queue.push_back(d);
            }
        }
    }
    Resolution { chosen, unresolved }
}

/// Live versions as resolution candidates, by module. A version whose manifest no longer
/// parses (it did at ingest) is left out with an error in the log rather than failing
/// every template. (The version itself was parsed when the row was read.)
pub fn candidates(rows: Vec<VersionRow>) -> BTreeMap<String, Vec<Candidate<VersionRow>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for row in rows {
        let version = row.version.clone();
        let Some(manifest) = row
            .manifest
            .as_deref()
            .and_then(|t| powernode_module::manifest::parse(t).manifest)
        else {
            tracing::error!(version = %row.id, "live version has no valid manifest; left out");
            continue;
        };
        out.entry(row.module.to_string())
            .or_default()
            .push(Candidate {
                version,
                manifest,
                data: row,
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, deps: &[&str]) -> Manifest {
        let deps: String = deps.iter().map(|d| format!("  - name: {d}\n")).collect();
        let text = format!(
            "schema_version: 1\nidentity:\n  name: {name}\n  category: userland\n  variety: subscription\n  description: x\nfile_spec:\n  include: [\"/etc/**\"]\ndependency_spec:\n{}",
            if deps.is_empty() {
                "  []\n".to_owned()
            } else {
                deps
            }
        );
        powernode_module::manifest::parse(&text)
            .manifest
            .unwrap_or_else(|| panic!("test manifest for {name} parses"))
    }

    fn live(rows: &[(&str, &str, &[&str])]) -> BTreeMap<String, Vec<Candidate<()>>> {
        let mut m: BTreeMap<String, Vec<Candidate<()>>> = BTreeMap::new();
        for (name, v, deps) in rows {
            m.entry(name.to_string()).or_default().push(Candidate {
                version: Version::parse(v).unwrap(),
                manifest: manifest(name, deps),
                data: (),
            });
        }
        m
    }

    fn picked<T>(r: &Resolution<'_, T>) -> Vec<(String, String)> {
        r.chosen
            .iter()
            .map(|(k, c)| (k.clone(), c.version.to_string()))
            .collect()
    }

    #[test]
    fn newest_matching_live_version_and_its_dependency_closure() {
        let l = live(&[
            ("base", "1.0.0", &[]),
            ("base", "1.10.0", &[]),
            ("base", "1.9.0", &[]),
            ("sec", "2.0.0", &["base"]),
            ("redis", "0.1.0", &["sec"]),
            ("redis", "1.0.0", &["sec"]),
            ("other", "1.0.0", &[]),
        ]);
        let r = resolve(&[("redis".into(), Some("^0.1".parse().unwrap()))], &l);
        assert_eq!(
            picked(&r),
            [
                ("base".into(), "1.10.0".into()),
                ("redis".into(), "0.1.0".into()),
                ("sec".into(), "2.0.0".into())
            ]
        );
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn unmatched_assignments_are_reported_and_missing_deps_left_to_compose() {
        let l = live(&[("redis", "1.0.0", &["nowhere"])]);
        let r = resolve(
            &[
                ("redis".into(), None),
                ("ghost".into(), None),
                ("redis2".into(), Some("^2".parse().unwrap())),
            ],
            &l,
        );
        assert_eq!(picked(&r), [("redis".into(), "1.0.0".into())]);
        assert_eq!(r.unresolved.len(), 2);
        assert!(r.unresolved[0].why.contains("ghost has no live version"));
    }
}
