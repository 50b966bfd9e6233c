//! Ids as types: a version id is not a request id, a template id is not an instance id,
//! and none of them is any string.

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

        // Hashes and compares as its text, so a map keyed by ids is looked up by a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
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

        // The store binds and reads the id as what it is (a text column), so a query takes
        // `&VersionId` and a row gives one back: typed through the store.
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }
            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok($name(<String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?))
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

id_type!(
    /// A template's id, chosen by the operator who creates it (a name: `edge`, `tpl-web`),
    /// checked once where it comes in (`fleet::templates::parse_id`).
    TemplateId
);

id_type!(
    /// An instance's id, chosen when it is registered (a name: `node-1`).
    InstanceId
);

id_type!(
    /// A queued job's id (a UUID given when it is queued).
    JobId
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
