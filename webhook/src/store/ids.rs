//! Ids as types: a version id is not a request id, and neither is any string.

use powernode_module::Version;
use serde::{Deserialize, Serialize};
use std::{fmt, ops::Deref};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// An id read back (from the database, a URL, a job's payload): it was made by the
        /// constructor once. Deserialising is the same reading, so an edge can extract the
        /// typed id (`Path<VersionId>`) instead of a string to convert later.
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// A version's id: `v-{module}-{version}`, the walkthrough's readable form. Unique by
    /// construction: module names have no `.` and a SemVer version starts with `MAJOR.`, so
    /// the module ends at the last `-` before the first `.`; no (module, version) pair shares
    /// an id with another (`my` + `redis-3.0.0` is no version at all).
    VersionId
);

id_type!(
    /// A promotion request's id, derived from its origin (`comment:{repo}:{comment}:{index}`),
    /// so a re-run of the same command finds the same request.
    RequestId
);

impl VersionId {
    pub fn new(module: &str, version: &Version) -> VersionId {
        VersionId(format!("v-{module}-{version}"))
    }
}

impl RequestId {
    /// The `index`-th command of comment `comment_id` in `repository`.
    pub fn for_comment(repository: &str, comment_id: i64, index: usize) -> RequestId {
        RequestId(format!("comment:{repository}:{comment_id}:{index}"))
    }

    /// A request made through the API or MCP (`api:…`, `mcp:…`): no origin to derive it
    /// from, so a fresh `unique` part.
    pub fn for_api(via: super::Via, unique: &str) -> RequestId {
        RequestId(format!("{}:{unique}", via.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_unique_by_construction() {
        let v = |s| Version::parse(s).unwrap();
        let pairs = [
            ("my", "3.0.0"),
            ("my-redis", "3.0.0"),
            ("my-redis-3", "0.0.0"),
            ("a", "1.0.0-2.0.0"),
            ("a-1", "0.0.0-2"),
        ];
        let ids: std::collections::HashSet<_> = pairs
            .iter()
            .map(|(m, x)| VersionId::new(m, &v(x)))
            .collect();
        assert_eq!(ids.len(), pairs.len());
        assert_eq!(VersionId::new("my-redis", &v("0.1.0")), "v-my-redis-0.1.0");
    }
}
