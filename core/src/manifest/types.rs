//! The manifest as typed values. Every field here has already been validated.

use crate::diagnostics::Position;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, str::FromStr};

/// A module name: `^[a-z0-9][a-z0-9-]{0,62}$`. Only [`ModuleName::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ModuleName(String);

/// The rule a module name must follow, as shown to users.
pub const NAME_RULE: &str = "must match ^[a-z0-9][a-z0-9-]{0,62}$";

impl ModuleName {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        ok.then(|| ModuleName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A module name is read as the text it is (map keys, messages, SQL parameters).
impl std::ops::Deref for ModuleName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ModuleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModuleName::parse(s).ok_or_else(|| format!("module name {s:?} {NAME_RULE}"))
    }
}

/// On the wire a module name is its text; reading one checks the rule.
#[cfg(feature = "schemars")]
impl schemars::JsonSchema for ModuleName {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ModuleName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// What layer of the system a module belongs to. The order of the variants is the
/// composition order used to break ties (firmware first, userland last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Firmware,
    SystemBase,
    Security,
    Networking,
    Observability,
    Userland,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Firmware,
        Category::SystemBase,
        Category::Security,
        Category::Networking,
        Category::Observability,
        Category::Userland,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Category::Firmware => "firmware",
            Category::SystemBase => "system-base",
            Category::Security => "security",
            Category::Networking => "networking",
            Category::Observability => "observability",
            Category::Userland => "userland",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.slug() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Category::ALL.iter().map(|c| c.slug()).collect();
                format!("unknown category {s:?}; expected one of {}", all.join(", "))
            })
    }
}

/// `subscription` modules ship files; `config` modules override others and may `mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variety {
    Subscription,
    Config,
}

impl Variety {
    pub fn slug(self) -> &'static str {
        match self {
            Variety::Subscription => "subscription",
            Variety::Config => "config",
        }
    }
}

impl fmt::Display for Variety {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// A compiled regexp that remembers its source text (for display and serialisation).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

impl Pattern {
    /// Anchored means every alternative starts with `^` and ends with `$`, so it matches
    /// whole identities rather than any identity that merely contains it (see
    /// [`crate::trust::is_anchored`]).
    pub fn is_anchored(&self) -> bool {
        crate::trust::is_anchored(&self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A value with the position it was written at, kept for lint messages.
#[derive(Debug, Clone, Serialize)]
pub struct At<T> {
    pub value: T,
    #[serde(skip)]
    pub pos: Option<Position>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub name: ModuleName,
    pub category: Category,
    /// Where `identity.category` was written, for findings about it.
    #[serde(skip)]
    pub category_pos: Option<Position>,
    pub variety: Variety,
    pub description: String,
    pub cosign_identity_regexp: Option<Pattern>,
    pub cosign_issuer_regexp: Option<Pattern>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub name: ModuleName,
}

/// `file_spec`: which paths under `rootfs/` the module ships.
#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    pub include: Vec<At<String>>,
    pub exclude: Vec<At<String>>,
}

/// A file mode (permission bits only, at most `0o7777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// A validated manifest. Built only by [`super::parse`].
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub identity: Identity,
    /// apt's `name` or `name=version`, checked against Debian Policy's rules.
    pub package_spec: Vec<crate::package::PackageSpec>,
    pub file_spec: FileSpec,
    pub protected_spec: Vec<At<String>>,
    pub dependency_spec: Vec<Dependency>,
    pub modes: BTreeMap<String, At<Mode>>,
    pub mask: Vec<At<String>>,
    /// The compiled include/exclude/protected/mask globs.
    #[serde(skip)]
    pub selector: super::PathSelector,
}
