//! The signed desired-state document, as module-agent reads it from the receiver. Two
//! layers: the DSSE envelope (any JSON, checked against the pinned receiver key), and the
//! document inside, which is only read once a signature holds; so the input is signed here
//! with the pinned key, to reach the document parser as a trusted (but buggy or
//! compromised) receiver could, and on to the node's admission check (template, sequence,
//! expiry). The first byte picks which layer the rest is.
#![no_main]
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use powernode_module::desired_state::{
    Envelope, EnvelopeSignature, PAYLOAD_TYPE, key_id, pae, verify,
};
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, SigningScheme};
use std::sync::LazyLock;

struct Keys {
    signer: SigStoreSigner,
    pem: String,
    key: CosignVerificationKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap();
    let pem = signer
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    let key = CosignVerificationKey::try_from_pem(pem.as_bytes()).unwrap();
    Keys { signer, pem, key }
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let k = &*KEYS;
    if pick % 2 == 0 {
        // The envelope as it comes off the wire.
        if let Ok(env) = serde_json::from_slice::<Envelope>(rest) {
            let _ = verify(&env, &k.key);
        }
    } else {
        // A document the pinned key signed.
        let sig = k.signer.sign(&pae(PAYLOAD_TYPE, rest)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let env = Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: b64.encode(rest),
            signatures: vec![EnvelopeSignature {
                keyid: key_id(&k.pem),
                sig: b64.encode(sig),
            }],
        };
        // What the agent does with a verified document next: its admission check.
        if let Ok((doc, id)) = verify(&env, &k.key) {
            let _ = doc.admit(&id.to_string(), Some("edge"), Some((3, "")), 1_700_000_000);
            let _ = doc.content_id();
        }
    }
});
