//! Keyless verification of one signature layer (`verify_layer`) against trusted roots with
//! time windows and CT logs, with certificates from the test kit's CA.

use base64::Engine as _;
use powernode_module::{
    digest::Digest,
    trust::{
        bundle::{Bundle, BundlePayload, HashedRekord},
        layout::{ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_SIGNATURE, SIMPLESIGNING},
        payload::Payload,
        trusted_root::{TrustedRoot, ValidFor},
        verify::{LayerInput, Policy, Reason, TrustedKey, Verified, verify_layer},
    },
};
use powernode_testkit::sigstore::{FakeCtLog, Leaf, SctFrom, TestCa};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::{SigStoreSigner, SigningScheme};
use std::{collections::BTreeMap, sync::Arc};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const IDENTITY: &str = "https://git.example.org/acct/modules/kat-module@refs/tags/v1.0.0";
const ISSUER: &str = "https://gitea.example.org";
/// When the tests' certificates are issued and logged: 2025-01-01T00:00:00Z.
const T: i64 = 1_735_689_600;

fn signer() -> SigStoreSigner {
    SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap()
}

fn public_der(s: &SigStoreSigner) -> Vec<u8> {
    s.to_sigstore_keypair()
        .unwrap()
        .public_key_to_der()
        .unwrap()
}

fn leaf() -> Leaf {
    Leaf {
        identity: IDENTITY.into(),
        oidc_issuer: ISSUER.into(),
        not_before: T - 60,
        not_after: T + 600,
        ..Leaf::default()
    }
}

/// A keyless world: the CA, a Rekor key, the artifact digest.
struct World {
    ca: TestCa,
    rekor: SigStoreSigner,
    digest: Digest,
}

impl World {
    fn new() -> Self {
        World {
            ca: TestCa::new("test fulcio"),
            rekor: signer(),
            digest: Digest::of(b"the module manifest"),
        }
    }

    /// A trusted root for the CA and Rekor (windows open), to adjust.
    fn root(&self) -> TrustedRoot {
        self.ca.trust(Some(&public_der(&self.rekor)))
    }

    fn policy(&self, root: TrustedRoot) -> Policy {
        Policy {
            identity: Some(
                regex::Regex::new(r"^https://git\.example\.org/acct/modules/kat-module@.*$")
                    .unwrap(),
            ),
            issuer: Some(regex::Regex::new(r"^https://gitea\.example\.org$").unwrap()),
            trusted_root: root,
            require_tlog: true,
            ..Policy::default()
        }
    }

    /// A layer signed by an ephemeral key certified as `leaf`, logged at `logged` (if any).
    fn layer(&self, leaf: &Leaf, logged: Option<i64>) -> LayerInput {
        let key = signer();
        let cert = self.ca.issue_leaf(&public_der(&key), leaf);
        let payload =
            Payload::new("127.0.0.1:5000/acct/modules/kat-module", &self.digest).to_bytes();
        let sig = key.sign(&payload).unwrap();
        let mut annotations = BTreeMap::from([
            (ANN_SIGNATURE.to_owned(), B64.encode(&sig)),
            (ANN_CERTIFICATE.to_owned(), cert.clone()),
            (ANN_CHAIN.to_owned(), self.ca.root_pem.clone()),
        ]);
        if let Some(at) = logged {
            annotations.insert(
                ANN_BUNDLE.to_owned(),
                self.bundle(&payload, &sig, &cert, at),
            );
        }
        LayerInput {
            layer_digest: Digest::of(&payload).to_string(),
            media_type: SIMPLESIGNING.to_owned(),
            payload,
            annotations,
        }
    }

    fn bundle(&self, payload: &[u8], sig: &[u8], cert: &str, at: i64) -> String {
        let entry = HashedRekord::new(payload, sig, cert);
        let p = BundlePayload {
            body: B64.encode(serde_json::to_vec(&entry).unwrap()),
            integrated_time: at,
            log_index: 7,
            log_id: hex::encode(Sha256::digest(public_der(&self.rekor))),
        };
        let set = self.rekor.sign(&p.canonical()).unwrap();
        serde_json::to_string(&Bundle {
            signed_entry_timestamp: B64.encode(set),
            payload: p,
        })
        .unwrap()
    }

    fn verify(&self, l: &LayerInput, root: TrustedRoot) -> Result<Verified, Reason> {
        verify_layer(l, &self.digest, &self.policy(root), T as u64)
    }
}

fn until(end: i64) -> ValidFor {
    ValidFor {
        start: Some(0),
        end: Some(end),
    }
}

// --- validFor of certificate authorities and transparency logs ---

#[test]
fn a_certificate_authority_retired_before_the_signing_time_is_not_a_trust_anchor() {
    let w = World::new();
    let l = w.layer(&leaf(), Some(T));
    assert!(w.verify(&l, w.root()).is_ok());

    let mut root = w.root();
    root.certificate_authorities[0].valid_for = until(T - 1);
    let err = w.verify(&l, root).unwrap_err();
    assert_eq!(err.code(), "certificate_untrusted");
    assert!(
        err.to_string().contains(
            "trusted for certificates issued 1970-01-01T00:00:00Z to 2024-12-31T23:59:59Z, but this one was issued at 2025-01-01T00:00:00Z"
        ),
        "{err}"
    );

    // One that starts after the signing time is no anchor either.
    let mut root = w.root();
    root.certificate_authorities[0].valid_for = ValidFor {
        start: Some(T + 1),
        end: None,
    };
    assert_eq!(
        w.verify(&l, root).unwrap_err().code(),
        "certificate_untrusted"
    );

    // Ending exactly at the signing time still covers it.
    let mut root = w.root();
    root.certificate_authorities[0].valid_for = until(T);
    assert!(w.verify(&l, root).is_ok());
}

#[test]
fn without_a_tlog_entry_the_certificate_not_before_dates_the_authority_window() {
    let w = World::new();
    let l = w.layer(&leaf(), None);
    let mut policy = w.policy(w.root());
    policy.require_tlog = false;
    assert!(verify_layer(&l, &w.digest, &policy, T as u64).is_ok());
    // notBefore is T - 60.
    policy.trusted_root.certificate_authorities[0].valid_for = until(T - 61);
    let err = verify_layer(&l, &w.digest, &policy, T as u64).unwrap_err();
    assert!(
        err.to_string().contains("issued at 2024-12-31T23:59:00Z"),
        "{err}"
    );
}

#[test]
fn a_transparency_log_key_retired_before_the_entry_was_integrated_is_refused() {
    let w = World::new();
    let l = w.layer(&leaf(), Some(T));
    let mut root = w.root();
    root.tlogs[0].valid_for = until(T - 1);
    let err = w.verify(&l, root).unwrap_err();
    assert_eq!(err.code(), "bundle_invalid");
    assert!(
        err.to_string().contains(
            "is trusted for entries integrated 1970-01-01T00:00:00Z to 2024-12-31T23:59:59Z, but this one was integrated at 2025-01-01T00:00:00Z"
        ),
        "{err}"
    );
}

#[test]
fn a_key_signature_bundle_from_a_retired_log_is_refused_too() {
    let w = World::new();
    let key = signer();
    let pem = key
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    let payload = Payload::new("127.0.0.1:5000/acct/modules/kat-module", &w.digest).to_bytes();
    let sig = key.sign(&payload).unwrap();
    let l = LayerInput {
        layer_digest: Digest::of(&payload).to_string(),
        media_type: SIMPLESIGNING.to_owned(),
        annotations: BTreeMap::from([
            (ANN_SIGNATURE.to_owned(), B64.encode(&sig)),
            (ANN_BUNDLE.to_owned(), w.bundle(&payload, &sig, &pem, T)),
        ]),
        payload,
    };
    let mut policy = Policy {
        keys: vec![TrustedKey::from_pem(&pem).unwrap()],
        trusted_root: w.root(),
        ..Policy::default()
    };
    let v = verify_layer(&l, &w.digest, &policy, T as u64).unwrap();
    assert_eq!((v.key_index, v.source_commit), (Some(0), None));
    policy.trusted_root.tlogs[0].valid_for = until(T - 1);
    let err = verify_layer(&l, &w.digest, &policy, T as u64).unwrap_err();
    assert_eq!(err.code(), "bundle_invalid", "{err}");
}

// --- embedded SCTs, when the trusted root lists CT logs ---

fn with_ct(mut root: TrustedRoot, log: &FakeCtLog) -> TrustedRoot {
    root.ctlogs.push(log.log_key());
    root
}

fn sct_leaf(log: &Arc<FakeCtLog>, tamper: bool) -> Leaf {
    Leaf {
        sct: Some(SctFrom {
            log: log.clone(),
            tamper,
        }),
        ..leaf()
    }
}

#[test]
fn a_certificate_with_a_valid_sct_from_a_listed_ct_log_is_accepted() {
    let w = World::new();
    let ct = Arc::new(FakeCtLog::new());
    let l = w.layer(&sct_leaf(&ct, false), Some(T));
    assert!(w.verify(&l, with_ct(w.root(), &ct)).is_ok());
    // Without CT logs in the trusted root, the SCT is not needed, and not in the way.
    assert!(w.verify(&l, w.root()).is_ok());
}

#[test]
fn a_certificate_without_an_sct_is_refused_when_the_trusted_root_lists_ct_logs() {
    let w = World::new();
    let ct = FakeCtLog::new();
    let l = w.layer(&leaf(), Some(T));
    assert!(w.verify(&l, w.root()).is_ok());
    let err = w.verify(&l, with_ct(w.root(), &ct)).unwrap_err();
    assert_eq!(err.code(), "certificate_not_logged");
    assert!(err.to_string().contains("embeds no SCT"), "{err}");
}

#[test]
fn an_sct_from_a_ct_log_the_trusted_root_does_not_list_is_refused() {
    let w = World::new();
    let listed = FakeCtLog::new();
    let other = Arc::new(FakeCtLog::new());
    let l = w.layer(&sct_leaf(&other, false), Some(T));
    let err = w.verify(&l, with_ct(w.root(), &listed)).unwrap_err();
    assert_eq!(err.code(), "certificate_not_logged");
    assert!(
        err.to_string().contains(&format!(
            "from CT log {}, which the trusted root does not list",
            hex::encode(other.log_id())
        )),
        "{err}"
    );
}

#[test]
fn an_sct_that_does_not_sign_this_precertificate_is_refused() {
    let w = World::new();
    let ct = Arc::new(FakeCtLog::new());
    let l = w.layer(&sct_leaf(&ct, true), Some(T));
    let err = w.verify(&l, with_ct(w.root(), &ct)).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not verify over the precertificate"),
        "{err}"
    );
}

#[test]
fn an_sct_outside_its_ct_log_window_is_refused() {
    let w = World::new();
    let ct = Arc::new(FakeCtLog::new());
    let l = w.layer(&sct_leaf(&ct, false), Some(T));
    let mut root = with_ct(w.root(), &ct);
    root.ctlogs[0].valid_for = until(T - 3600);
    let err = w.verify(&l, root).unwrap_err();
    assert!(
        err.to_string()
            .contains("but the SCT is from 2024-12-31T23:59:00Z"),
        "{err}"
    );
}

// --- the source commit a Fulcio certificate asserts ---

#[test]
fn verified_carries_the_source_commit_and_repository_from_the_certificate() {
    let w = World::new();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let full = Leaf {
        source_commit: Some(commit.into()),
        workflow_sha: Some("ffffffffffffffffffffffffffffffffffffffff".into()),
        source_repository: Some("https://git.example.org/acct/modules/kat-module".into()),
        ..leaf()
    };
    let v = w.verify(&w.layer(&full, Some(T)), w.root()).unwrap();
    // .1.13 wins over the deprecated .1.3.
    assert_eq!(v.source_commit.as_deref(), Some(commit));
    assert_eq!(
        v.source_repository.as_deref(),
        Some("https://git.example.org/acct/modules/kat-module")
    );

    let old = Leaf {
        workflow_sha: Some(commit.into()),
        ..leaf()
    };
    let v = w.verify(&w.layer(&old, Some(T)), w.root()).unwrap();
    assert_eq!(v.source_commit.as_deref(), Some(commit));
    assert_eq!(v.source_repository, None);

    let v = w.verify(&w.layer(&leaf(), Some(T)), w.root()).unwrap();
    assert_eq!((v.source_commit, v.source_repository), (None, None));
}
