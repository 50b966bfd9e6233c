//! Packages (`GET /api/v1/packages/{name}`, MCP's `system_list_package_instances`): which instances run a Debian package,
//! at which versions, per module, as their last reports observed it. A package no report
//! names is an empty answer, not a 404: the receiver knows packages only through reports.

use super::Fleet;
use crate::{error::ServiceError, store::PackageSighting};
use powernode_module::package::{self, PackageSpecError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct PackageQuery {
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One module of one instance whose last report names the package.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PackageInstance {
    pub instance_id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub module: String,
    /// The installed version; `null` when the instance reported it not installed.
    pub version: Option<String>,
}

impl From<PackageSighting> for PackageInstance {
    fn from(p: PackageSighting) -> Self {
        PackageInstance {
            instance_id: p.instance_id,
            template_id: p.template_id,
            module: p.module,
            version: p.version,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PackageInstances {
    pub package: String,
    /// A page of the instances and modules that name it, ordered by instance id, then module.
    pub instances: Vec<PackageInstance>,
    /// Installed version → how many instances run it, over every instance (not only this
    /// page); instances that reported it not installed are not counted.
    pub versions: BTreeMap<String, u64>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /packages/{name}?limit=&cursor=`.
impl Fleet {
    /// Which instances run package `name`, per module, and how many at each version.
    pub async fn package_instances(
        &self,
        name: String,
        q: PackageQuery,
    ) -> Result<PackageInstances, ServiceError> {
        if !package::valid_name(&name) {
            return Err(ServiceError::invalid(format!(
                "name: {}",
                PackageSpecError::Name(name)
            )));
        }
        let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
        // The cursor is `instance/module` of the last entry given (ids and module names hold no
        // `/`); any text is a position, so a made-up one pages from there.
        let after = q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| c.split_once('/').unwrap_or((c, "")));
        let all = self.store.package_sightings(&name).await?;
        let mut per_version: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for p in &all {
            if let Some(v) = &p.version {
                per_version.entry(v).or_default().insert(&p.instance_id);
            }
        }
        let versions = per_version
            .into_iter()
            .map(|(v, i)| (v.to_owned(), i.len() as u64))
            .collect();
        let mut page: Vec<PackageSighting> = all
            .iter()
            .filter(|p| after.is_none_or(|a| (p.instance_id.as_str(), p.module.as_str()) > a))
            .take(limit + 1)
            .cloned()
            .collect();
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|p| format!("{}/{}", p.instance_id, p.module))
        } else {
            None
        };
        Ok(PackageInstances {
            package: name,
            instances: page.into_iter().map(PackageInstance::from).collect(),
            versions,
            next_cursor,
        })
    }
}
