//! The receiver's own signing key: ECDSA P-256, created on first start in the data directory
//! (`receiver-key.pem`, mode 0600), used to sign every desired state. Nodes pin its public
//! key (served at `GET /api/v1/signing-key`) in their configuration.

use sigstore::crypto::{SigStoreSigner, SigningScheme, signing_key::SigStoreKeyPair};
use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// The file name of the key inside `data_dir`.
pub const KEY_FILE: &str = "receiver-key.pem";

pub struct ReceiverKey {
    pub signer: SigStoreSigner,
    /// The public key as PEM (what `/api/v1/signing-key` serves).
    pub public_pem: String,
}

impl std::fmt::Debug for ReceiverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl ReceiverKey {
    fn load(path: &Path, pem: &[u8]) -> anyhow::Result<SigStoreKeyPair> {
        let mode = std::fs::metadata(path)
            .map_err(|x| anyhow::anyhow!("receiver signing key {}: {x}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "receiver signing key {} is readable by others (mode {:04o}); chmod 600 it",
                path.display(),
                mode & 0o7777
            );
        }
        SigStoreKeyPair::from_pem(pem).map_err(|x| {
            anyhow::anyhow!(
                "receiver signing key {}: not a private key: {x}",
                path.display()
            )
        })
    }

    /// Loads `data_dir/receiver-key.pem`, creating it (exclusively, mode 0600) when absent.
    /// A key file readable by others is refused: anyone who can read it can sign states
    /// every node would accept.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<ReceiverKey> {
        let path = data_dir.join(KEY_FILE);
        let e = |what: &str, x: &dyn std::fmt::Display| {
            anyhow::anyhow!("receiver signing key {}: {what}: {x}", path.display())
        };
        let pair = match std::fs::read(&path) {
            Ok(pem) => Self::load(&path, &pem)?,
            Err(x) if x.kind() == std::io::ErrorKind::NotFound => {
                let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
                    .create_signer()
                    .map_err(|x| e("generating", &x))?;
                let pair = signer
                    .to_sigstore_keypair()
                    .map_err(|x| e("exporting", &x))?;
                let pem = pair.private_key_to_pem().map_err(|x| e("exporting", &x))?;
                std::fs::create_dir_all(data_dir).map_err(|x| e("creating its directory", &x))?;
                // Written whole under a unique name, then linked into place: a replica
                // starting at the same moment sees either no key or the complete one.
                let tmp = data_dir.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|x| e("creating", &x))?;
                f.write_all(pem.as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|x| e("writing", &x))?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created the receiver's signing key");
                        pair
                    }
                    Err(x) if x.kind() == std::io::ErrorKind::AlreadyExists => {
                        let pem = std::fs::read(&path).map_err(|x| e("reading", &x))?;
                        Self::load(&path, &pem)?
                    }
                    Err(x) => return Err(e("creating", &x)),
                }
            }
            Err(x) => return Err(e("reading", &x)),
        };
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|x| e("not a P-256 key", &x))?;
        let public_pem = pair.public_key_to_pem().map_err(|x| e("exporting", &x))?;
        Ok(ReceiverKey { signer, public_pem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_and_private() {
        let d = tempfile::tempdir().unwrap();
        let a = ReceiverKey::load_or_create(d.path()).unwrap();
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = ReceiverKey::load_or_create(d.path()).unwrap();
        assert_eq!(a.public_pem, b.public_pem, "the same key on the next start");
        std::fs::set_permissions(
            d.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = ReceiverKey::load_or_create(d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("readable by others"), "{err}");
    }
}
