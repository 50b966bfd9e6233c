//! The pure checks of an ingest: each compares what the artifact says with what the
//! receiver already trusts and returns a typed [`Rejection`]. No I/O, so every case is a
//! unit test.

use super::rejection::Rejection;
use powernode_module::{Version, artifact::release::Release};

/// The tag, the signed `org.opencontainers.image.version` annotation and `module-release`
/// `VERSION_ID` must all name the same version. The tag was validated as SemVer already.
pub fn version(
    tag: &Version,
    annotation: Option<&str>,
    release: Option<&Release>,
) -> Result<(), Rejection> {
    let Some(a) = annotation else {
        return Err(Rejection::VersionMismatch(format!(
            "the artifact has no version annotation; the tag names {tag}"
        )));
    };
    match Version::parse(a) {
        Ok(v) if v == *tag => {}
        Ok(v) => {
            return Err(Rejection::VersionMismatch(format!(
                "the tag names version {tag}, the signed annotation {v}"
            )));
        }
        Err(e) => return Err(Rejection::VersionMismatch(e.to_string())),
    }
    if let Some(r) = release
        && r.version_id != tag.to_string()
    {
        return Err(Rejection::VersionMismatch(format!(
            "the tag names version {tag}, module-release VERSION_ID {:?}",
            r.version_id
        )));
    }
    Ok(())
}

/// The version's source commit: the one the Fulcio certificate asserts (keyless), which the
/// signed annotation must then agree with; else the signed annotation; else module-release's
/// `GIT_COMMIT`. Where two of them name a commit, they must name the same one.
pub fn source_commit(
    annotation: Option<&str>,
    certificate: Option<&str>,
    release: Option<&str>,
) -> Result<Option<String>, Rejection> {
    let named: Vec<(&str, &str)> = [
        ("the Fulcio certificate", certificate),
        ("the signed annotation", annotation),
        ("module-release GIT_COMMIT", release),
    ]
    .into_iter()
    .filter_map(|(what, c)| c.filter(|c| !c.is_empty()).map(|c| (what, c)))
    .collect();
    if let Some((first_what, first)) = named.first() {
        for (what, c) in &named[1..] {
            if !c.eq_ignore_ascii_case(first) {
                return Err(Rejection::SourceCommitMismatch(format!(
                    "{first_what} names commit {first}, {what} names {c}"
                )));
            }
        }
    }
    Ok(named.first().map(|(_, c)| c.to_ascii_lowercase()))
}

/// A category pinned in configuration must be the one the manifest declares.
pub fn category(declared: &str, pinned: Option<&str>) -> Result<(), Rejection> {
    match pinned {
        Some(p) if p != declared => Err(Rejection::CategoryMismatch {
            declared: declared.to_owned(),
            pinned: p.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_must_agree() {
        let r = Release {
            version_id: "1.0.0".into(),
            ..Default::default()
        };
        assert_eq!(version(&v("1.0.0"), Some("1.0.0"), Some(&r)), Ok(()));
        for (ann, rel) in [
            (None, "1.0.0"),
            (Some("1.0.1"), "1.0.0"),
            (Some("v1.0.0"), "1.0.0"),
            (Some("1.0.0"), "1.0.1"),
        ] {
            let r = Release {
                version_id: rel.into(),
                ..Default::default()
            };
            let e = version(&v("1.0.0"), ann, Some(&r)).unwrap_err();
            assert_eq!(e.code(), "version_mismatch", "{ann:?} {rel}: {e}");
        }
    }

    #[test]
    fn commits_must_agree_and_the_certificate_wins() {
        assert_eq!(source_commit(None, None, None), Ok(None));
        assert_eq!(source_commit(None, None, Some("")), Ok(None));
        assert_eq!(
            source_commit(Some("abc"), None, Some("ABC")),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            source_commit(None, Some("def"), Some("def")),
            Ok(Some("def".into()))
        );
        let e = source_commit(Some("abc"), Some("def"), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("Fulcio certificate names commit def"),
            "{e}"
        );
        assert_eq!(
            source_commit(Some("abc"), None, Some("123"))
                .unwrap_err()
                .code(),
            "source_commit_mismatch"
        );
    }

    #[test]
    fn pinned_category() {
        assert_eq!(category("database", None), Ok(()));
        assert_eq!(category("database", Some("database")), Ok(()));
        assert_eq!(
            category("security", Some("database")).unwrap_err().code(),
            "category_mismatch"
        );
    }
}
