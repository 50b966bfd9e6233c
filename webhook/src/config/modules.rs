//! `[[modules]]`: the pinned trust policy of each module, its Gitea repository and category.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The pinned trust policy of one module. Never taken from the artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulePolicy {
    pub name: String,
    pub repository: String,
    /// Public key files (cosign.pub).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    #[serde(default)]
    pub identity_regexp: Option<String>,
    #[serde(default)]
    pub issuer_regexp: Option<String>,
    /// Sigstore trusted_root.json for keyless signatures.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Require a transparency-log entry for keyless signatures.
    #[serde(default = "yes")]
    pub require_tlog: bool,
    /// Pin the identity of the first verified version (when no identity is configured):
    /// `false` (default), `true` (pinned at once) or `"confirm"` (proposed; an operator
    /// confirms it through `POST /api/v1/pins/{module}/confirm`).
    #[serde(default)]
    pub trust_on_first_use: TrustOnFirstUse,
    /// The Gitea repository (`owner/name`) whose PR comments drive this module's promotion
    /// [default: `repository`].
    #[serde(default)]
    pub gitea_repository: Option<String>,
    /// The module's category, pinned: category policy overrides apply by this value, and an
    /// artifact whose manifest declares another category is rejected.
    #[serde(default)]
    pub category: Option<String>,
}

fn yes() -> bool {
    true
}

/// `trust_on_first_use`: off, automatic, or proposed for an operator's confirmation. Read
/// from `false`/`true` (the original boolean, unchanged in meaning) or `"off"`, `"auto"`,
/// `"confirm"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrustOnFirstUse {
    #[default]
    Off,
    /// The first identity becomes the pin at once (`true`).
    Auto,
    /// The first identity is proposed; its versions wait until an operator confirms it.
    Confirm,
}

impl TrustOnFirstUse {
    pub fn is_on(self) -> bool {
        self != TrustOnFirstUse::Off
    }
}

/// The original boolean: `true` pins at once.
impl From<bool> for TrustOnFirstUse {
    fn from(on: bool) -> Self {
        if on {
            TrustOnFirstUse::Auto
        } else {
            TrustOnFirstUse::Off
        }
    }
}

impl Serialize for TrustOnFirstUse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TrustOnFirstUse::Off => s.serialize_bool(false),
            TrustOnFirstUse::Auto => s.serialize_bool(true),
            TrustOnFirstUse::Confirm => s.serialize_str("confirm"),
        }
    }
}

impl<'de> Deserialize<'de> for TrustOnFirstUse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(false) => Ok(TrustOnFirstUse::Off),
            Raw::Bool(true) => Ok(TrustOnFirstUse::Auto),
            Raw::Text(t) => match t.as_str() {
                "off" => Ok(TrustOnFirstUse::Off),
                "auto" => Ok(TrustOnFirstUse::Auto),
                "confirm" => Ok(TrustOnFirstUse::Confirm),
                other => Err(serde::de::Error::custom(format!(
                    "trust_on_first_use {other:?}: expected false, true, \"auto\" or \"confirm\""
                ))),
            },
        }
    }
}

impl ModulePolicy {
    /// Checks entry `i`: a module name, and a signer pinned one way or another.
    pub fn validate(&self, i: usize) -> anyhow::Result<()> {
        let m = self;
        powernode_module::manifest::ModuleName::parse(&m.name).ok_or_else(|| {
            anyhow::anyhow!(
                "configuration: modules[{i}].name {:?} is not a module name",
                m.name
            )
        })?;
        let keyless = m.identity_regexp.is_some() || m.issuer_regexp.is_some();
        if keyless && (m.identity_regexp.is_none() || m.issuer_regexp.is_none()) {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) needs both identity_regexp and issuer_regexp",
                m.name
            );
        }
        if (keyless || m.trust_on_first_use.is_on()) && m.trusted_root.is_none() {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) is keyless but has no trusted_root",
                m.name
            );
        }
        if m.keys.is_empty() && !keyless && !m.trust_on_first_use.is_on() {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) pins no signer: give keys, identity_regexp + issuer_regexp, or trust_on_first_use",
                m.name
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TrustOnFirstUse;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Entry {
        #[serde(default)]
        trust_on_first_use: TrustOnFirstUse,
    }

    #[test]
    fn trust_on_first_use_reads_the_boolean_and_confirm() {
        let read = |s: &str| toml::from_str::<Entry>(s).map(|e| e.trust_on_first_use);
        assert_eq!(read("").unwrap(), TrustOnFirstUse::Off);
        assert_eq!(
            read("trust_on_first_use = false").unwrap(),
            TrustOnFirstUse::Off
        );
        assert_eq!(
            read("trust_on_first_use = true").unwrap(),
            TrustOnFirstUse::Auto
        );
        assert_eq!(
            read("trust_on_first_use = \"auto\"").unwrap(),
            TrustOnFirstUse::Auto
        );
        assert_eq!(
            read("trust_on_first_use = \"confirm\"").unwrap(),
            TrustOnFirstUse::Confirm
        );
        let e = read("trust_on_first_use = \"maybe\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"confirm\""), "{e}");
        for t in [
            TrustOnFirstUse::Off,
            TrustOnFirstUse::Auto,
            TrustOnFirstUse::Confirm,
        ] {
            let text = toml::to_string(&Entry {
                trust_on_first_use: t,
            })
            .unwrap();
            assert_eq!(read(&text).unwrap(), t, "{text}");
        }
    }
}
