//! `trusted_root.json` (Sigstore's trust root format), as a module policy names it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_module::trust::trusted_root::TrustedRoot;

fuzz_target!(|text: &str| {
    let _ = TrustedRoot::from_json(text);
});
