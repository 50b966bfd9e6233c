//! The Rekor bundle annotation of a cosign signature (`dev.sigstore.cosign/bundle`), as the
//! receiver checks it: on a layer whose signature verifies with a pinned key, under a trust
//! root holding Sigstore's public-good Rekor, so every bundle reaches the bundle checks
//! (parse, log lookup, signed entry timestamp, body against the signature).
#![no_main]
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use powernode_module::{
    digest::Digest,
    trust::{
        layout::{ANN_BUNDLE, ANN_SIGNATURE, SIMPLESIGNING},
        payload::Payload,
        trusted_root::TrustedRoot,
        verify::{LayerInput, Policy, TrustedKey, verify_layer},
    },
};
use sigstore::crypto::{SigningScheme, signing_key::SigStoreSigner};
use std::{collections::BTreeMap, sync::LazyLock};

struct Fixture {
    digest: Digest,
    layer: LayerInput,
    policy: Policy,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let signer: SigStoreSigner = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap();
    let pem = signer
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    let digest = Digest::of(b"module.tar");
    let payload =
        serde_json::to_vec(&Payload::new("registry.example/acct/modules/m", &digest)).unwrap();
    let sig = signer.sign(&payload).unwrap();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANN_SIGNATURE.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(sig),
    );
    let layer = LayerInput {
        layer_digest: Digest::of(&payload).to_string(),
        media_type: SIMPLESIGNING.to_owned(),
        payload,
        annotations,
    };
    let root = TrustedRoot::from_json(include_str!("../seeds/trusted_root/prod.json")).unwrap();
    let policy = Policy {
        keys: vec![TrustedKey::from_pem(&pem).unwrap()],
        trusted_root: root,
        require_tlog: true,
        ..Default::default()
    };
    Fixture {
        digest,
        layer,
        policy,
    }
});

fuzz_target!(|bundle: &str| {
    let f = &*FIXTURE;
    let mut layer = LayerInput {
        layer_digest: f.layer.layer_digest.clone(),
        media_type: f.layer.media_type.clone(),
        payload: f.layer.payload.clone(),
        annotations: f.layer.annotations.clone(),
    };
    layer
        .annotations
        .insert(ANN_BUNDLE.to_owned(), bundle.to_owned());
    // No bundle of ours is signed by the real Rekor: acceptance would be a forgery.
    assert!(
        verify_layer(&layer, &f.digest, &f.policy, 1_800_000_000).is_err(),
        "a bundle no Rekor signed was accepted"
    );
});
