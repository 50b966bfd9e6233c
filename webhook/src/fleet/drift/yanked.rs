//! Drift's `yanked_running`: an instance running the digest of a yanked version, whatever
//! the served state says (yank is the emergency switch; the state may not have reached the
//! instance yet, or the instance may refuse it).

use super::Desired;
use serde::Serialize;
use std::collections::BTreeMap;

/// A module the instance runs at the digest of a yanked version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct YankedRunning {
    pub module: String,
    pub digest: String,
    /// The yanked version (`module version`).
    pub version: String,
}

/// The running modules (module → composefs digest) at a yanked version's digest.
pub(super) fn running(
    desired: Option<&Desired>,
    running: &BTreeMap<String, String>,
) -> Vec<YankedRunning> {
    let Some(d) = desired else {
        return Vec::new();
    };
    running
        .iter()
        .filter_map(|(m, digest)| {
            Some(YankedRunning {
                module: m.clone(),
                digest: digest.clone(),
                version: d.yanked.get(digest)?.clone(),
            })
        })
        .collect()
}

pub(super) fn sentence(y: &YankedRunning) -> String {
    format!(
        "{} runs {}, which is yanked ({}): it must not run anywhere",
        y.module, y.digest, y.version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yanked_digest_is_named_even_when_desired() {
        let modules: BTreeMap<String, String> = [
            ("base".to_string(), "sha256:a".to_string()),
            ("redis".to_string(), "sha256:b".to_string()),
        ]
        .into();
        let d = Desired {
            state_id: "sha256:x".into(),
            running_text: serde_json::to_string(&modules).unwrap(),
            modules: modules.clone(),
            composefs_digest: "sha256:f".into(),
            packages: BTreeMap::new(),
            yanked: [("sha256:b".to_string(), "redis 1.0.0".to_string())].into(),
        };
        let found = running(Some(&d), &modules);
        assert_eq!(
            found,
            [YankedRunning {
                module: "redis".into(),
                digest: "sha256:b".into(),
                version: "redis 1.0.0".into()
            }]
        );
        assert_eq!(
            sentence(&found[0]),
            "redis runs sha256:b, which is yanked (redis 1.0.0): it must not run anywhere"
        );
        assert!(running(None, &modules).is_empty());
    }
}
