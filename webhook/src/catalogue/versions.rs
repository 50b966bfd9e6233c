//! A module's versions as people list them: light summaries (no file index, no manifest
//! text), oldest first, paginated by an opaque cursor; and the full record.

use crate::{
    error::ServiceError,
    store::{Lifecycle, Store, VersionRow},
};
use powernode_module::{Version, manifest::ModuleName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    /// Only versions in this stage (`draft`, `staging`, `blessed`, `live`, `yanked`).
    #[schemars(with = "Option<Lifecycle>")]
    pub state: Option<String>,
    /// At most this many versions (default 50, at most 500).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A version as the list shows it: light (no file index, no manifest text), with the
/// walkthrough's field names (`version_string`, `lifecycle_state`) next to ours.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VersionSummary {
    pub id: String,
    pub module: ModuleName,
    pub version: Version,
    pub version_string: Version,
    pub lifecycle: Lifecycle,
    pub lifecycle_state: Lifecycle,
    pub manifest_digest: powernode_module::digest::Digest,
    pub composefs_digest: Option<powernode_module::digest::Digest>,
    pub source_commit: Option<String>,
    pub signer_identity: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&VersionRow> for VersionSummary {
    fn from(v: &VersionRow) -> Self {
        VersionSummary {
            id: v.id.to_string(),
            module: v.module.clone(),
            version: v.version.clone(),
            version_string: v.version.clone(),
            lifecycle: v.lifecycle,
            lifecycle_state: v.lifecycle,
            manifest_digest: v.manifest_digest,
            composefs_digest: v.composefs_digest,
            source_commit: v.source_commit.clone(),
            signer_identity: v.signer_identity.clone(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// The full record (`GET /versions/{id}`), with the walkthrough's names added.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VersionView {
    #[serde(flatten)]
    pub row: VersionRow,
    pub version_string: Version,
    pub lifecycle_state: Lifecycle,
}

impl From<VersionRow> for VersionView {
    fn from(row: VersionRow) -> Self {
        VersionView {
            version_string: row.version.clone(),
            lifecycle_state: row.lifecycle,
            row,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Versions {
    pub module: String,
    pub versions: Vec<VersionSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of module `name`'s versions (oldest first), optionally of one stage.
pub async fn versions_of(
    store: &Store,
    name: String,
    q: ListQuery,
) -> Result<Versions, ServiceError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<Lifecycle>)
        .transpose()
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    // An empty cursor is no cursor (a client that always sends the last next_cursor).
    let after = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let mut all = store.versions_of(&name, state).await?;
    all.sort_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
    let mut page: Vec<&VersionRow> = all
        .iter()
        .filter(|v| {
            after
                .as_ref()
                .is_none_or(|(at, id)| (v.created_at, v.id.as_str()) > (*at, id.as_str()))
        })
        .take(limit + 1)
        .collect();
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last()
            .map(|v| encode_cursor(v.created_at, v.id.as_str()))
    } else {
        None
    };
    Ok(Versions {
        module: name,
        versions: page.into_iter().map(VersionSummary::from).collect(),
        next_cursor,
    })
}

/// Cursors are opaque to clients: base64 of `<created_at>:<id>` (the list's sort key).
fn encode_cursor(created_at: i64, id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(c: &str) -> Result<(i64, String), ServiceError> {
    use base64::Engine as _;
    let bad = || ServiceError::invalid("cursor: not a cursor this API gave out");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.as_bytes())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}
