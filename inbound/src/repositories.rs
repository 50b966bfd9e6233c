//! The repositories the receiver accepts (`registry.repositories` globs).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// `registry.repositories`: globs over `namespace/name` in which `*` stays within one path
/// segment (`acct/modules/*` accepts `acct/modules/chrony`, not `acct/modules/a/b`).
#[derive(Debug, Clone)]
pub struct Repositories(GlobSet);

/// A glob of `registry.repositories` that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("registry.repositories {glob:?}: {source}")]
pub struct RepositoryGlobError {
    pub glob: String,
    #[source]
    pub source: globset::Error,
}

impl Repositories {
    pub fn new(globs: &[String]) -> Result<Self, RepositoryGlobError> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(
                GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|source| RepositoryGlobError {
                        glob: g.clone(),
                        source,
                    })?,
            );
        }
        b.build()
            .map(Repositories)
            .map_err(|source| RepositoryGlobError {
                glob: globs.join(", "),
                source,
            })
    }

    pub fn accepts(&self, repo: &str) -> bool {
        self.0.is_match(repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_stays_within_one_segment() {
        let r = Repositories::new(&["acct/modules/*".into()]).unwrap();
        assert!(r.accepts("acct/modules/chrony"));
        assert!(!r.accepts("acct/modules/a/b"));
        assert!(!r.accepts("other/modules/chrony"));
        let e = Repositories::new(&["acct/[".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("registry.repositories \"acct/[\""),
            "{e}"
        );
    }
}
