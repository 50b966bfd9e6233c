//! Pushing a built module as an OCI artifact (ARCHITECTURE.md §7): `artifactType`
//! `application/vnd.powernode.module.v1`, the empty config, one layer (the tar).

use super::{EMPTY_BLOB, EMPTY_MEDIA_TYPE, OCI_MANIFEST, Registry, RegistryError, with_digest};
use crate::{
    artifact::{ARTIFACT_TYPE, LAYER_MEDIA_TYPE, ModuleJson},
    digest::Digest,
};
use oci_client::Reference;
use serde_json::json;
use std::{collections::BTreeMap, path::Path};

/// Annotation keys.
pub const ANN_VERSION: &str = "org.opencontainers.image.version";
pub const ANN_REVISION: &str = "org.opencontainers.image.revision";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_NAME: &str = "org.powernode.module.name";
pub const ANN_COMPOSEFS_DIGEST: &str = "org.powernode.module.composefs-digest";
pub const ANN_COMPOSEFS_FORMAT: &str = "org.powernode.module.composefs-format";

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The manifest for a built module: deterministic for the same build and source, so pushing
/// twice yields the same digest.
pub fn manifest_bytes(m: &ModuleJson, source: Option<&str>) -> Vec<u8> {
    let mut ann = BTreeMap::new();
    ann.insert(ANN_VERSION, m.version.clone());
    if !m.git_commit.is_empty() {
        ann.insert(ANN_REVISION, m.git_commit.clone());
    }
    if let Some(s) = source.filter(|s| !s.is_empty()) {
        ann.insert(ANN_SOURCE, s.to_owned());
    }
    ann.insert(ANN_CREATED, rfc3339(m.source_date_epoch));
    ann.insert(ANN_TITLE, format!("{}-{}.tar", m.name, m.version));
    ann.insert(ANN_NAME, m.name.clone());
    ann.insert(ANN_COMPOSEFS_DIGEST, m.composefs.digest.to_string());
    ann.insert(ANN_COMPOSEFS_FORMAT, m.composefs.format.to_string());
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY_BLOB).to_string(),
            "size": EMPTY_BLOB.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": m.tar.sha256.to_string(),
            "size": m.tar.size,
            "annotations": {ANN_TITLE: "module.tar"},
        }],
        "annotations": ann,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The outcome of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    /// `HOST/REPO@sha256:…`
    pub reference: String,
    /// Whether the tar had to be uploaded (false: the registry already had it).
    pub uploaded_blob: bool,
}

/// Pushes `tar` (described by `m`) to `target` (`HOST/REPO:TAG`).
pub async fn push_module(
    registry: &Registry,
    target: &Reference,
    tar: &Path,
    m: &ModuleJson,
    source: Option<&str>,
    progress: impl Fn(u64) + Send + Sync + Clone + 'static,
) -> Result<Pushed, RegistryError> {
    let size = std::fs::metadata(tar)?.len();
    if size != m.tar.size {
        return Err(RegistryError::Invalid {
            what: tar.display().to_string(),
            message: format!(
                "is {size} bytes but module.json says {}; rebuild before pushing",
                m.tar.size
            ),
        });
    }
    registry.push_small_blob(target, EMPTY_BLOB).await?;
    let uploaded_blob = registry
        .push_file_blob(target, tar, &m.tar.sha256, size, progress)
        .await?;
    let bytes = manifest_bytes(m, source);
    let digest = registry.push_manifest(target, &bytes, OCI_MANIFEST).await?;
    Ok(Pushed {
        digest,
        reference: with_digest(target, &digest).whole(),
        uploaded_blob,
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_979_289), "2024-05-06T07:08:09Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
