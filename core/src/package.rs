//! A Debian package a module asks for: apt's `name` or `name=version`, parsed once (in the
//! manifest and in the desired state) so the node agent never hands apt a string it has not
//! checked. The rules are Debian Policy's (§5.6.1 package names, §5.6.12 versions), a little
//! stricter where apt would accept more than a module should ask for: no architecture
//! qualifier (`libc6:amd64`), no release pin (`name/bookworm`), no globs.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `name` or `name=version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageSpec {
    pub name: String,
    /// An exact version (`1:7.0.15-1~deb12u1`); `None` takes the candidate apt chooses.
    pub version: Option<String>,
}

/// Why a `package_spec` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageSpecError {
    #[error(
        "{0:?} is not a Debian package name (lowercase letters, digits, + - . ; at least 2 characters, starting with a letter or digit)"
    )]
    Name(String),
    #[error(
        "{0:?} is not a Debian version (digits first; then letters, digits, . + ~ - and an optional epoch `N:`)"
    )]
    Version(String),
}

impl PackageSpec {
    pub fn parse(s: &str) -> Result<PackageSpec, PackageSpecError> {
        let (name, version) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        if !valid_name(name) {
            return Err(PackageSpecError::Name(name.to_owned()));
        }
        if let Some(v) = version
            && !valid_version(v)
        {
            return Err(PackageSpecError::Version(v.to_owned()));
        }
        Ok(PackageSpec {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

/// Debian Policy §5.6.1: `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_name(n: &str) -> bool {
    let first = n.bytes().next().unwrap_or(b'-');
    n.len() >= 2
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && n.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')
        })
}

/// Debian Policy §5.6.12: `[epoch:]upstream[-revision]`, the upstream part starting with a
/// digit; the characters apt accepts in a version, and nothing that a shell or apt's own
/// syntax would read as something else.
pub fn valid_version(v: &str) -> bool {
    let upstream = match v.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            rest
        }
        None => v,
    };
    upstream.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && upstream
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'~' | b'-' | b':'))
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}={v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl std::str::FromStr for PackageSpec {
    type Err = PackageSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PackageSpec::parse(s)
    }
}

impl PartialEq<&str> for PackageSpec {
    fn eq(&self, other: &&str) -> bool {
        match (&self.version, other.split_once('=')) {
            (None, None) => self.name == *other,
            (Some(v), Some((n, ov))) => self.name == n && v == ov,
            _ => false,
        }
    }
}

impl Serialize for PackageSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PackageSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PackageSpec::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exact_versions_parse() {
        let p = PackageSpec::parse("redis-server").unwrap();
        assert_eq!((p.name.as_str(), p.version), ("redis-server", None));
        let p = PackageSpec::parse("redis-server=5:7.0.15-1~deb12u1").unwrap();
        assert_eq!(p.version.as_deref(), Some("5:7.0.15-1~deb12u1"));
        assert_eq!(p.to_string(), "redis-server=5:7.0.15-1~deb12u1");
        assert!(PackageSpec::parse("g++").is_ok());
        assert!(PackageSpec::parse("libstdc++6=12.2.0-14").is_ok());
    }

    #[test]
    fn what_apt_would_read_otherwise_is_refused() {
        for bad in [
            "Redis",
            "a",
            "libc6:amd64",
            "redis/bookworm",
            "redis*",
            "-redis",
            "redis=",
            "redis=latest",
            "redis=1.0 ; rm",
            "redis=:1.0",
            "redis=x:1.0",
        ] {
            assert!(PackageSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
