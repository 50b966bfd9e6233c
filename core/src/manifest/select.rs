//! Which target paths a module ships: gitignore-style globs over absolute paths.
//!
//! `*` and `?` never cross `/`; `**` spans any depth. A path is included when it or one of
//! its ancestors matches an include pattern, and excluded when it or an ancestor matches an
//! exclude pattern; exclusion wins. Directories that hold a shipped path are shipped too.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// Why a path pattern was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("must be an absolute target path starting with '/', like /etc/redis/redis.conf")]
    NotAbsolute,
    #[error("must not contain '..', '.' or empty path components")]
    NotNormal,
    #[error("invalid glob: {0}")]
    Glob(String),
}

/// Checks that `pattern` is an absolute, normal path (globs allowed) and compiles it.
pub fn compile(pattern: &str) -> Result<GlobMatcher, SelectError> {
    let p = normalise(pattern)?;
    Ok(glob(p)?.compile_matcher())
}

fn normalise(pattern: &str) -> Result<&str, SelectError> {
    let rest = pattern.strip_prefix('/').ok_or(SelectError::NotAbsolute)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        // "/" alone would ship the whole rootfs: allowed, means everything.
        return Ok("/");
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(SelectError::NotNormal);
    }
    Ok(&pattern[..rest.len() + 1])
}

fn glob(p: &str) -> Result<Glob, SelectError> {
    let p = if p == "/" { "/**" } else { p };
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|e| SelectError::Glob(e.kind().to_string()))
}

fn set(patterns: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        // Patterns were checked by `compile` during parsing; skip any that were refused.
        if let Ok(g) = normalise(p).and_then(glob) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// The compiled `file_spec`, `protected_spec` and `mask` patterns of one manifest.
#[derive(Debug, Clone, Default)]
pub struct PathSelector {
    include_set: GlobSet,
    exclude_set: GlobSet,
    protected: Vec<GlobMatcher>,
    mask: Vec<GlobMatcher>,
}

/// Calls `f` with `path` and each of its ancestors ("/a", "/a/b", "/a/b/c").
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .skip(1)
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

impl PathSelector {
    /// Compiles the patterns. Callers validate each with [`compile`] first to report errors
    /// with positions; anything that fails here is silently left out.
    pub fn new(
        include: &[String],
        exclude: &[String],
        protected: &[String],
        mask: &[String],
    ) -> Self {
        let matchers = |ps: &[String]| ps.iter().filter_map(|p| compile(p).ok()).collect();
        PathSelector {
            include_set: set(include),
            exclude_set: set(exclude),
            protected: matchers(protected),
            mask: matchers(mask),
        }
    }

    /// Whether a non-directory at `path` is shipped.
    pub fn ships(&self, path: &str) -> bool {
        let mut included = false;
        for p in self_and_ancestors(path) {
            if self.exclude_set.is_match(p) {
                return false;
            }
            included |= self.include_set.is_match(p);
        }
        included
    }

    /// Indices of the include patterns that match `path` or one of its ancestors.
    pub fn include_hits(&self, path: &str) -> Vec<usize> {
        let mut hits = Vec::new();
        for p in self_and_ancestors(path) {
            hits.extend(self.include_set.matches(p));
        }
        hits
    }

    /// Indices of the protected patterns that match `path` exactly.
    pub fn protected_hits(&self, path: &str) -> Vec<usize> {
        hits(&self.protected, path)
    }

    /// Indices of the mask patterns that match `path` exactly.
    pub fn mask_hits(&self, path: &str) -> Vec<usize> {
        hits(&self.mask, path)
    }

    /// Whether `path` or an ancestor matches an exclude pattern.
    pub fn excluded(&self, path: &str) -> bool {
        self_and_ancestors(path).any(|p| self.exclude_set.is_match(p))
    }
}

fn hits(ms: &[GlobMatcher], path: &str) -> Vec<usize> {
    ms.iter()
        .enumerate()
        .filter(|(_, m)| m.is_match(path))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(inc: &[&str], exc: &[&str]) -> PathSelector {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PathSelector::new(&s(inc), &s(exc), &[], &[])
    }

    #[test]
    fn star_does_not_cross_slash_but_double_star_does() {
        let s = sel(&["/etc/*.conf"], &[]);
        assert!(s.ships("/etc/a.conf"));
        assert!(!s.ships("/etc/x/a.conf"));
        let s = sel(&["/etc/**"], &[]);
        assert!(s.ships("/etc/x/y/a.conf"));
        assert!(!s.ships("/usr/a"));
    }

    #[test]
    fn including_a_directory_includes_its_contents_and_exclude_wins() {
        let s = sel(
            &["/etc/redis"],
            &["/etc/redis/sentinel.conf", "/etc/redis/private"],
        );
        assert!(s.ships("/etc/redis/redis.conf"));
        assert!(!s.ships("/etc/redis/sentinel.conf"));
        assert!(!s.ships("/etc/redis/private/key.pem"));
        assert!(!s.ships("/etc/redisx"));
    }

    #[test]
    fn patterns_must_be_absolute_and_normal() {
        assert_eq!(compile("etc/x").unwrap_err(), SelectError::NotAbsolute);
        assert_eq!(compile("/etc/../x").unwrap_err(), SelectError::NotNormal);
        assert_eq!(compile("/etc//x").unwrap_err(), SelectError::NotNormal);
        assert!(matches!(
            compile("/etc/[x").unwrap_err(),
            SelectError::Glob(_)
        ));
        assert!(compile("/etc/redis/").is_ok());
        let everything = sel(&["/"], &[]);
        assert!(everything.ships("/a/b"));
    }
}
