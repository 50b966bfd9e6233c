//! Module versions are SemVer 2.0 (`semver` crate), everywhere a version enters: a release
//! tag, `--version`, the OCI annotation, `module-release` and comment commands. A release tag
//! may carry a leading `v` (`v0.1.0`); the version itself never does.
//!
//! Why strict: the receiver names versions `v-{module}-{version}`. Module names have no `.`
//! and a SemVer version starts with `MAJOR.`, so the `-` right before the first `.`'s digit
//! run is where the module ends: the id is unambiguous, and no tag of one module (`redis-3.0.0`
//! of module `my`) can take the id of another's version (`3.0.0` of `my-redis`).

use std::fmt;

/// A validated SemVer 2.0 version, kept in its canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(semver::Version);

/// Why a string is not a module version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a SemVer 2.0 version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 0.1.0 or 1.2.0-rc.1): {why}"
)]
pub struct VersionError {
    pub text: String,
    pub why: String,
}

impl Version {
    /// Parses a version exactly (no `v` prefix, no surrounding space).
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        semver::Version::parse(s)
            .map(Version)
            .map_err(|e| VersionError {
                text: s.to_owned(),
                why: e.to_string(),
            })
    }

    /// The version a release tag names: `v0.1.0` or `0.1.0` → `0.1.0`. Any other tag
    /// (`latest`, `redis-3.0.0`, `v1`) is not a release.
    pub fn from_tag(tag: &str) -> Result<Version, VersionError> {
        let text = tag
            .strip_prefix('v')
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or(tag);
        Version::parse(text).map_err(|mut e| {
            e.text = tag.to_owned();
            e
        })
    }

    pub fn as_semver(&self) -> &semver::Version {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

/// On the wire a version is its canonical text (`0.1.0`).
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for Version {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_versions() {
        assert_eq!(Version::from_tag("v0.1.0").unwrap().to_string(), "0.1.0");
        assert_eq!(Version::from_tag("0.1.0").unwrap().to_string(), "0.1.0");
        assert_eq!(
            Version::from_tag("v1.2.3-rc.1+build.5")
                .unwrap()
                .to_string(),
            "1.2.3-rc.1+build.5"
        );
        for bad in [
            "latest",
            "redis-3.0.0",
            "v1",
            "1.0",
            "01.0.0",
            "1.0.0-",
            " 1.0.0",
            "vv1.0.0",
            "1.0.0;rm",
            "",
        ] {
            let e = Version::from_tag(bad).unwrap_err();
            assert!(e.to_string().contains("SemVer"), "{bad}: {e}");
        }
        assert!(Version::parse("v1.0.0").is_err(), "a version has no v");
    }
}
