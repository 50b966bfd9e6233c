//! `module-release`: os-release style `KEY="value"` lines describing the build.

use std::collections::BTreeMap;

/// The keys written, in order.
pub const KEYS: [&str; 8] = [
    "NAME",
    "VERSION_ID",
    "CATEGORY",
    "VARIETY",
    "SOURCE_DATE_EPOCH",
    "GIT_COMMIT",
    "BUILDER_VERSION",
    "ARCHITECTURE",
];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub name: String,
    pub version_id: String,
    pub category: String,
    pub variety: String,
    pub source_date_epoch: u64,
    pub git_commit: String,
    pub builder_version: String,
    pub architecture: String,
}

fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn unquote(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl Release {
    pub fn to_bytes(&self) -> Vec<u8> {
        let sde = self.source_date_epoch.to_string();
        let values = [
            &self.name,
            &self.version_id,
            &self.category,
            &self.variety,
            &sde,
            &self.git_commit,
            &self.builder_version,
            &self.architecture,
        ];
        let mut s = String::new();
        for (k, v) in KEYS.iter().zip(values) {
            s.push_str(k);
            s.push('=');
            s.push_str(&quote(v));
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Parses what [`Release::to_bytes`] writes; unknown keys are kept out, missing ones fail.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("module-release line {}: expected KEY=\"value\"", i + 1))?;
            let v = unquote(v).ok_or_else(|| {
                format!("module-release line {}: value of {k} is not quoted", i + 1)
            })?;
            map.insert(k.to_owned(), v);
        }
        let mut get = |k: &str| {
            map.remove(k)
                .ok_or_else(|| format!("module-release: missing {k}"))
        };
        Ok(Release {
            name: get("NAME")?,
            version_id: get("VERSION_ID")?,
            category: get("CATEGORY")?,
            variety: get("VARIETY")?,
            source_date_epoch: get("SOURCE_DATE_EPOCH")?
                .parse()
                .map_err(|_| "module-release: SOURCE_DATE_EPOCH is not a number".to_string())?,
            git_commit: get("GIT_COMMIT")?,
            builder_version: get("BUILDER_VERSION")?,
            architecture: get("ARCHITECTURE")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_awkward_values() {
        let r = Release {
            name: "my-redis".into(),
            version_id: "0.1.0".into(),
            category: "userland".into(),
            variety: "subscription".into(),
            source_date_epoch: 1700000000,
            git_commit: "".into(),
            builder_version: "module-builder 0.1.0 \"$x\" \\".into(),
            architecture: "all".into(),
        };
        let bytes = r.to_bytes();
        assert!(
            String::from_utf8_lossy(&bytes)
                .starts_with("NAME=\"my-redis\"\nVERSION_ID=\"0.1.0\"\n")
        );
        assert_eq!(
            Release::parse(std::str::from_utf8(&bytes).unwrap()).unwrap(),
            r
        );
    }
}
