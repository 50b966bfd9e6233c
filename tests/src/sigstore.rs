//! Keyless signing offline: a test certificate authority that plays Fulcio, an HTTP
//! stand-in for Fulcio's signing-certificate endpoint, a Certificate Transparency log
//! stand-in whose SCTs the CA embeds, and a Rekor stand-in that logs hashedrekord entries
//! and signs entry timestamps.

use crate::{
    http::{Request, Response, Server},
    now,
};
use ::sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};
use base64::Engine as _;
use powernode_module::trust::{
    bundle::BundlePayload,
    trusted_root::{LogKey, TrustedRoot},
};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
    SignatureAlgorithm,
};
use sha2::{Digest as _, Sha256};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicI64, Ordering},
};
use x509_cert::der::{
    Decode, Encode,
    asn1::{OctetString, Utf8StringRef},
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A raw EC public key (the SPKI's bit string) that rcgen can certify.
struct EcPublicKey(Vec<u8>);

impl PublicKeyData for EcPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

fn spki_point(spki_der: &[u8]) -> Vec<u8> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der).unwrap();
    spki.subject_public_key.raw_bytes().to_vec()
}

fn pem_body(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(b64).unwrap()
}

fn odt(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

/// A certificate authority for tests.
pub struct TestCa {
    pub root_der: Vec<u8>,
    pub root_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "powernode tests");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = odt(now() as i64 - 86_400);
        p.not_after = odt(now() as i64 + 86_400 * 365);
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            root_der: cert.der().to_vec(),
            root_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Issues a Fulcio-style leaf: SAN URI `identity`, issuer extensions (.1.1 raw and
    /// .1.8 UTF8String), code-signing EKU, valid `[not_before, not_after]`.
    pub fn issue(
        &self,
        spki_der: &[u8],
        identity: &str,
        oidc_issuer: &str,
        not_before: i64,
        not_after: i64,
    ) -> String {
        self.issue_leaf(
            spki_der,
            &Leaf {
                identity: identity.into(),
                oidc_issuer: oidc_issuer.into(),
                not_before,
                not_after,
                ..Leaf::default()
            },
        )
    }

    /// Issues the leaf `leaf` describes, for the key `spki_der`, as PEM (64-column lines).
    pub fn issue_leaf(&self, spki_der: &[u8], leaf: &Leaf) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::URI(leaf.identity.as_str().try_into().unwrap())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = odt(leaf.not_before);
        p.not_after = odt(leaf.not_after);
        let utf8 = |s: &str| Utf8StringRef::new(s).unwrap().to_der().unwrap();
        let oid = |last: u64| [1, 3, 6, 1, 4, 1, 57264, 1, last];
        p.custom_extensions = vec![
            CustomExtension::from_oid_content(&oid(1), leaf.oidc_issuer.as_bytes().to_vec()),
            CustomExtension::from_oid_content(&oid(8), utf8(&leaf.oidc_issuer)),
        ];
        if let Some(sha) = &leaf.workflow_sha {
            p.custom_extensions.push(CustomExtension::from_oid_content(
                &oid(3),
                sha.as_bytes().to_vec(),
            ));
        }
        if let Some(uri) = &leaf.source_repository {
            p.custom_extensions
                .push(CustomExtension::from_oid_content(&oid(12), utf8(uri)));
        }
        if let Some(digest) = &leaf.source_commit {
            p.custom_extensions
                .push(CustomExtension::from_oid_content(&oid(13), utf8(digest)));
        }
        let key = EcPublicKey(spki_point(spki_der));
        if let Some(sct) = &leaf.sct {
            // The precertificate: the same certificate without the SCT extension (rcgen
            // derives the serial from the key, so the TBS is the same but for it).
            let pre = p.signed_by(&key, &self.issuer).unwrap();
            let ext = sct.log.embedded_sct(
                &tbs_of(pre.der()),
                &self.spki_der(),
                leaf.not_before as u64 * 1000 + 500,
                sct.tamper,
            );
            p.custom_extensions.push(ext);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        cert.pem()
    }

    /// The CA's SubjectPublicKeyInfo, DER (its hash is in every SCT it gets).
    pub fn spki_der(&self) -> Vec<u8> {
        x509_cert::Certificate::from_der(&self.root_der)
            .unwrap()
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap()
    }

    /// A trusted root trusting this CA (and a Rekor key, if given), to adjust and write
    /// with [`TrustedRoot::to_json_pretty`].
    pub fn trust(&self, rekor_key_der: Option<&[u8]>) -> TrustedRoot {
        TrustedRoot::from_json(&self.trusted_root(rekor_key_der)).unwrap()
    }
    /// A Sigstore trusted_root.json trusting this CA (and a Rekor key, if given).
    pub fn trusted_root(&self, rekor_key_der: Option<&[u8]>) -> String {
        TrustedRoot::to_json(std::slice::from_ref(&self.root_der), rekor_key_der)
    }
}

/// What a leaf certificate says, for [`TestCa::issue_leaf`].
#[derive(Debug, Clone, Default)]
pub struct Leaf {
    /// The SAN URI.
    pub identity: String,
    /// The OIDC issuer (extensions .1.1 and .1.8).
    pub oidc_issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Source Repository Digest (.1.13, UTF8String): the commit the workflow ran for.
    pub source_commit: Option<String>,
    /// GitHub Workflow SHA (.1.3, deprecated, raw bytes).
    pub workflow_sha: Option<String>,
    /// Source Repository URI (.1.12, UTF8String).
    pub source_repository: Option<String>,
    /// An embedded SCT, timestamped just after `not_before`.
    pub sct: Option<SctFrom>,
}

/// Which CT log signs the SCT a leaf embeds.
#[derive(Debug, Clone)]
pub struct SctFrom {
    pub log: Arc<FakeCtLog>,
    /// Sign other bytes than the precertificate, so the SCT does not verify.
    pub tamper: bool,
}

/// The TBSCertificate of a DER certificate, as written.
fn tbs_of(cert_der: &[u8]) -> Vec<u8> {
    let fields = Vec::<x509_cert::der::Any>::from_der(cert_der).unwrap();
    fields[0].to_der().unwrap()
}

/// A Certificate Transparency log stand-in: a P-256 key that signs SCTs for
/// precertificates (RFC 6962).
pub struct FakeCtLog {
    signer: SigStoreSigner,
    pub public_key_der: Vec<u8>,
}

impl std::fmt::Debug for FakeCtLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCtLog")
            .field("log_id", &hex::encode(self.log_id()))
            .finish()
    }
}

impl Default for FakeCtLog {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCtLog {
    pub fn new() -> Self {
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap();
        let public_key_der = signer
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        FakeCtLog {
            signer,
            public_key_der,
        }
    }

    /// SHA-256 of the key's DER, as RFC 6962 names logs.
    pub fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.public_key_der).into()
    }

    /// This log as a trusted root lists it (trusted from the epoch on).
    pub fn log_key(&self) -> LogKey {
        LogKey::new(&self.public_key_der)
    }

    /// The SCT list extension (1.3.6.1.4.1.11129.2.4.2) with one SCT for the
    /// precertificate `tbs` issued by the CA whose key is `issuer_spki_der`.
    pub fn embedded_sct(
        &self,
        tbs: &[u8],
        issuer_spki_der: &[u8],
        timestamp_ms: u64,
        tamper: bool,
    ) -> CustomExtension {
        let u16be = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
        // digitally-signed struct (RFC 6962 3.2): v1, certificate_timestamp, timestamp,
        // precert_entry, issuer_key_hash, TBSCertificate<1..2^24-1>, no extensions.
        let mut signed = vec![0u8, 0];
        signed.extend_from_slice(&timestamp_ms.to_be_bytes());
        signed.extend_from_slice(&[0, 1]);
        signed.extend_from_slice(&Sha256::digest(issuer_spki_der));
        signed.extend_from_slice(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend_from_slice(tbs);
        signed.extend_from_slice(&[0, 0]);
        if tamper {
            signed.push(0);
        }
        let sig = self.signer.sign(&signed).unwrap();
        // SignedCertificateTimestamp: v1, log id, timestamp, no extensions,
        // sha256/ecdsa, signature<0..2^16-1>.
        let mut sct = vec![0u8];
        sct.extend_from_slice(&self.log_id());
        sct.extend_from_slice(&timestamp_ms.to_be_bytes());
        sct.extend_from_slice(&[0, 0, 4, 3]);
        sct.extend_from_slice(&u16be(sig.len()));
        sct.extend_from_slice(&sig);
        // SignedCertificateTimestampList: list<1..2^16-1> of SerializedSCT<1..2^16-1>.
        let mut list = u16be(sct.len() + 2).to_vec();
        list.extend_from_slice(&u16be(sct.len()));
        list.extend_from_slice(&sct);
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
            OctetString::new(list).unwrap().to_der().unwrap(),
        )
    }
}

/// Puts a PEM certificate's base64 body on a single line, as Go's `encoding/pem` accepts
/// and Sigstore's own test Fulcio answers.
pub fn single_line_pem(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}

/// An unsigned JWT with these claims (Fulcio stand-ins do not check signatures).
pub fn jwt(claims: &serde_json::Value) -> String {
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        e(br#"{"alg":"RS256","typ":"JWT"}"#),
        e(serde_json::to_string(claims).unwrap().as_bytes()),
        e(b"not-a-signature")
    )
}

/// How the Fulcio stand-in dates the certificates it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid from a minute ago for ten minutes (as Fulcio).
    Current,
    /// Expired half an hour ago.
    Expired,
}

/// How the Fulcio stand-in lays out the PEM it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PemLayout {
    /// 64-column lines (as Fulcio).
    #[default]
    Wrapped,
    /// The whole base64 body on one line (valid to Go's `encoding/pem`).
    SingleLine,
}

/// A Fulcio stand-in: `POST /api/v2/signingCert`. It checks the proof of possession and
/// certifies the request's public key for the token's `san` claim (URI) and `iss`. As
/// Fulcio does for GitHub tokens, a `sha` claim becomes the Source Repository Digest (.1.13)
/// and the deprecated Workflow SHA (.1.3), and a `repository` claim the Source Repository
/// URI (.1.12), as `<iss>/<repository>` (the stand-in's version of Fulcio's per-issuer URL).
pub struct FakeFulcio {
    pub server: Server,
    pub validity: Arc<Mutex<Validity>>,
    pub pem_layout: Arc<Mutex<PemLayout>>,
    /// The SCT issued certificates embed (none by default).
    pub sct: Arc<Mutex<Option<SctFrom>>>,
}

impl FakeFulcio {
    pub fn start(ca: Arc<TestCa>) -> Self {
        let validity = Arc::new(Mutex::new(Validity::Current));
        let pem_layout = Arc::new(Mutex::new(PemLayout::Wrapped));
        let v = validity.clone();
        let layout = pem_layout.clone();
        let sct = Arc::new(Mutex::new(None::<SctFrom>));
        let sct_from = sct.clone();
        let server = Server::start(move |req: &Request| {
            if req.method != "POST" || req.path != "/api/v2/signingCert" {
                return Response::text(404, "not found");
            }
            let body: serde_json::Value = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => return Response::text(400, &e.to_string()),
            };
            let token = body["credentials"]["oidcIdentityToken"]
                .as_str()
                .unwrap_or_default();
            let claims: serde_json::Value = token
                .split('.')
                .nth(1)
                .and_then(|p| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(p)
                        .ok()
                })
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let pem = body["publicKeyRequest"]["publicKey"]["content"]
                .as_str()
                .unwrap_or_default();
            let proof = body["publicKeyRequest"]["proofOfPossession"]
                .as_str()
                .unwrap_or_default();
            let subject = claims["email"]
                .as_str()
                .or(claims["sub"].as_str())
                .unwrap_or_default();
            let key = match CosignVerificationKey::try_from_pem(pem.as_bytes()) {
                Ok(k) => k,
                Err(e) => return Response::text(400, &format!("public key: {e}")),
            };
            if key
                .verify_signature(
                    Signature::Base64Encoded(proof.as_bytes()),
                    subject.as_bytes(),
                )
                .is_err()
            {
                return Response::text(400, "proof of possession does not verify");
            }
            let (nb, na) = match *v.lock().unwrap() {
                Validity::Current => (now() as i64 - 60, now() as i64 + 600),
                Validity::Expired => (now() as i64 - 3600, now() as i64 - 1800),
            };
            let iss = claims["iss"].as_str().unwrap_or_default();
            let sha = claims["sha"].as_str().map(str::to_owned);
            let leaf = Leaf {
                identity: claims["san"]
                    .as_str()
                    .unwrap_or("https://unknown.example/identity")
                    .into(),
                oidc_issuer: iss.into(),
                not_before: nb,
                not_after: na,
                source_commit: sha.clone(),
                workflow_sha: sha,
                source_repository: claims["repository"]
                    .as_str()
                    .map(|r| format!("{}/{r}", iss.trim_end_matches('/'))),
                sct: sct_from.lock().unwrap().clone(),
            };
            let mut chain = [ca.issue_leaf(&pem_body(pem), &leaf), ca.root_pem.clone()];
            if *layout.lock().unwrap() == PemLayout::SingleLine {
                chain = chain.map(|c| single_line_pem(&c));
            }
            Response::json(
                201,
                &serde_json::json!({
                    "signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}
                }),
            )
        });
        FakeFulcio {
            server,
            validity,
            pem_layout,
            sct,
        }
    }
}

/// A Rekor stand-in: `POST /api/v1/log/entries` (hashedrekord), answering with the entry
/// and a signed entry timestamp under its own P-256 key.
pub struct FakeRekor {
    pub server: Server,
    pub public_key_der: Vec<u8>,
}

impl FakeRekor {
    pub fn start() -> Self {
        let signer: Arc<SigStoreSigner> = Arc::new(
            SigningScheme::ECDSA_P256_SHA256_ASN1
                .create_signer()
                .unwrap(),
        );
        let public_key_der = signer
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_der()
            .unwrap();
        let log_id = hex::encode(Sha256::digest(&public_key_der));
        let index = Arc::new(AtomicI64::new(0));
        let server = Server::start(move |req: &Request| {
            if req.method != "POST" || req.path != "/api/v1/log/entries" {
                return Response::text(404, "not found");
            }
            let entry: serde_json::Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return Response::text(400, &e.to_string()),
            };
            if entry["kind"] != "hashedrekord" {
                return Response::text(400, "only hashedrekord");
            }
            let payload = BundlePayload {
                body: B64.encode(serde_json::to_vec(&entry).unwrap()),
                integrated_time: now() as i64,
                log_index: index.fetch_add(1, Ordering::SeqCst),
                log_id: log_id.clone(),
            };
            let set = signer.sign(&payload.canonical()).unwrap();
            Response::json(
                201,
                &serde_json::json!({
                    format!("{:064x}", payload.log_index): {
                        "body": payload.body,
                        "integratedTime": payload.integrated_time,
                        "logID": payload.log_id,
                        "logIndex": payload.log_index,
                        "verification": {"signedEntryTimestamp": B64.encode(set)},
                    }
                }),
            )
        });
        FakeRekor {
            server,
            public_key_der,
        }
    }
}
