//! Why an artifact does not become a version: one typed reason per check, each with a stable
//! code (recorded in `reject_reason` as `code: message`, counted in
//! `module_webhook_rejections_total{code}`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No signature by the identity pinned on first use (or none that may establish one).
    SignerNotPinned(String),
    /// Signed by an identity an operator rejected when it was proposed as the first-use pin.
    PinRejected(String),
    SignatureTimeout(String),
    ArtifactTooLarge {
        size: u64,
        max: u64,
    },
    ArtifactInvalid(String),
    ComposefsMismatch {
        artifact: String,
        signed: Option<String>,
    },
    ManifestInvalid(String),
    ModuleMismatch {
        artifact: String,
        repository: String,
        module: String,
    },
    IdentityChangeHeld {
        asked: String,
        pinned: String,
    },
    /// The tag, the signed annotation and `module-release` disagree on the version.
    VersionMismatch(String),
    /// The manifest declares another category than the one pinned in configuration.
    CategoryMismatch {
        declared: String,
        pinned: String,
    },
    /// The signed annotation, the certificate and `module-release` disagree on the commit.
    SourceCommitMismatch(String),
    /// A tag of a version already published now points at other content: the push is
    /// refused, the published version stays as it was.
    DigestChanged,
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::SignerNotPinned(_) => "signer_not_pinned",
            Rejection::PinRejected(_) => "pin_rejected",
            Rejection::SignatureTimeout(_) => "signature_timeout",
            Rejection::ArtifactTooLarge { .. } => "artifact_too_large",
            Rejection::ArtifactInvalid(_) => "artifact_invalid",
            Rejection::ComposefsMismatch { .. } => "composefs_mismatch",
            Rejection::ManifestInvalid(_) => "manifest_invalid",
            Rejection::ModuleMismatch { .. } => "module_mismatch",
            Rejection::IdentityChangeHeld { .. } => "identity_change_held",
            Rejection::VersionMismatch(_) => "version_mismatch",
            Rejection::CategoryMismatch { .. } => "category_mismatch",
            Rejection::SourceCommitMismatch(_) => "source_commit_mismatch",
            Rejection::DigestChanged => "refused_different_digest",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code())?;
        match self {
            Rejection::SignerNotPinned(why)
            | Rejection::PinRejected(why)
            | Rejection::ArtifactInvalid(why)
            | Rejection::ManifestInvalid(why)
            | Rejection::VersionMismatch(why)
            | Rejection::SourceCommitMismatch(why) => f.write_str(why),
            Rejection::SignatureTimeout(why) => {
                write!(f, "no acceptable signature in time: {why}")
            }
            Rejection::ArtifactTooLarge { size, max } => {
                write!(f, "{size} bytes is over the {max} allowed")
            }
            Rejection::ComposefsMismatch { artifact, signed } => write!(
                f,
                "the artifact's composefs digest is {artifact}, the signed annotation says {}",
                signed.as_deref().unwrap_or("nothing")
            ),
            Rejection::ModuleMismatch {
                artifact,
                repository,
                module,
            } => write!(
                f,
                "the artifact is module {artifact:?}, but {repository} belongs to {module:?}"
            ),
            Rejection::IdentityChangeHeld { asked, pinned } => write!(
                f,
                "the manifest asks for signer {asked:?}, the pinned policy says {pinned:?}; an operator must change the policy"
            ),
            Rejection::DigestChanged => f.write_str("version exists with another digest"),
            Rejection::CategoryMismatch { declared, pinned } => write!(
                f,
                "the manifest declares category {declared:?}, but the module's configuration pins {pinned:?}"
            ),
        }
    }
}
