//! The receiver's signing keys: ECDSA P-256, used to sign every desired state. Nodes pin
//! the public keys (served at `GET /api/v1/signing-key` and `/signing-keys`).
//!
//! One configured key (`[fleet] signing_key`) shared by every replica; without one, a key
//! generated on first start in the data directory (`receiver-key.pem`, mode 0600), fine
//! for one host only. During a rotation `[fleet] next_signing_key` signs every state too.
//! The key ids the replicas sign with are recorded in the database, so a replica started
//! with keys that share none of them refuses to start instead of signing states half the
//! nodes refuse.

use crate::{config::FleetConfig, store::Store};
use powernode_module::desired_state::{SigningKey, key_id};
use sigstore::crypto::{SigStoreSigner, SigningScheme, signing_key::SigStoreKeyPair};
use std::{
    collections::BTreeSet,
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
    /// `sha256:…` of the public key: what signatures name.
    pub keyid: String,
}

impl std::fmt::Debug for ReceiverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverKey")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

/// The keys one replica signs with: the current one and, during a rotation, the next.
#[derive(Debug)]
pub struct Keys {
    pub current: ReceiverKey,
    pub next: Option<ReceiverKey>,
}

impl Keys {
    /// The keys `[fleet]` names (the data directory's own key when `signing_key` is unset).
    pub fn configured(fleet: &FleetConfig, data_dir: &Path) -> anyhow::Result<Keys> {
        let current = match &fleet.signing_key {
            Some(p) => ReceiverKey::from_file(p, "fleet.signing_key")?,
            None => {
                let k = ReceiverKey::load_or_create(data_dir)?;
                tracing::warn!(
                    keyid = %k.keyid,
                    path = %data_dir.join(KEY_FILE).display(),
                    "no [fleet] signing_key configured: signing with this data directory's own key; replicas on other hosts need one configured key"
                );
                k
            }
        };
        let next = match &fleet.next_signing_key {
            Some(p) => Some(ReceiverKey::from_file(p, "fleet.next_signing_key")?),
            None => None,
        };
        if next.as_ref().is_some_and(|n| n.keyid == current.keyid) {
            anyhow::bail!(
                "configuration: fleet.next_signing_key is the same key as the current one ({})",
                current.keyid
            );
        }
        Ok(Keys { current, next })
    }

    pub fn all(&self) -> impl Iterator<Item = &ReceiverKey> {
        std::iter::once(&self.current).chain(self.next.as_ref())
    }

    /// The key ids this replica signs with.
    pub fn keyids(&self) -> BTreeSet<String> {
        self.all().map(|k| k.keyid.clone()).collect()
    }

    /// What `desired_state::sign_all` signs with.
    pub fn signing(&self) -> Vec<SigningKey<'_>> {
        self.all()
            .map(|k| SigningKey {
                signer: &k.signer,
                public_pem: &k.public_pem,
            })
            .collect()
    }

    /// Records this replica's key ids as the ones the replicas sign with, unless they share
    /// none with those recorded (then the error names both). Keys that overlap are a
    /// rotation step (adding `next_signing_key`, or making it the only key) and replace the
    /// record. Returns whether the record changed from an earlier one (the served states
    /// are then re-signed).
    pub async fn register(&self, store: &Store) -> anyhow::Result<bool> {
        let mine = self.keyids();
        for _ in 0..5 {
            let recorded = store.signing_keyids().await?;
            match recorded {
                None => {
                    if store.record_signing_keyids(&mine, None).await? {
                        return Ok(false);
                    }
                }
                Some(r) if r == mine => return Ok(false),
                Some(r) if r.is_disjoint(&mine) => {
                    anyhow::bail!(
                        "fleet.signing_key: this replica signs desired states with {}, but the replicas sharing this database sign with {}; nodes would refuse one or the other. Give every replica the same [fleet] signing_key, or rotate through next_signing_key (runbooks/rotating-the-receiver-key.md)",
                        list(&mine),
                        list(&r)
                    );
                }
                Some(r) => {
                    if store.record_signing_keyids(&mine, Some(&r)).await? {
                        tracing::warn!(from = %list(&r), to = %list(&mine), "the receiver's signing keys changed; served desired states will be re-signed");
                        return Ok(true);
                    }
                }
            }
        }
        anyhow::bail!("the recorded signing keys kept changing while this replica started")
    }
}

fn list(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(" + ")
}

impl ReceiverKey {
    /// A configured key file (`what` names the configuration key in errors): it must exist,
    /// be readable by its owner only and hold a P-256 private key.
    pub fn from_file(path: &Path, what: &str) -> anyhow::Result<ReceiverKey> {
        let pem = std::fs::read(path)
            .map_err(|x| anyhow::anyhow!("configuration: {what} {}: {x}", path.display()))?;
        let pair = Self::load(path, &pem).map_err(|x| anyhow::anyhow!("{what}: {x}"))?;
        Self::of(path, pair)
    }

    fn of(path: &Path, pair: SigStoreKeyPair) -> anyhow::Result<ReceiverKey> {
        let e = |what: &str, x: &dyn std::fmt::Display| {
            anyhow::anyhow!("receiver signing key {}: {what}: {x}", path.display())
        };
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|x| e("not a P-256 key", &x))?;
        let public_pem = pair.public_key_to_pem().map_err(|x| e("exporting", &x))?;
        Ok(ReceiverKey {
            signer,
            keyid: key_id(&public_pem),
            public_pem,
        })
    }

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
        Self::of(&path, pair)
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
