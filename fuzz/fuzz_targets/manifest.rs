//! manifest.yaml, as `module-builder validate` and the receiver read it: any text gives
//! findings or a manifest, never a panic; a manifest that parses lints without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let out = powernode_module::manifest::parse(text);
    if out.manifest.is_some() {
        assert!(
            out.findings
                .iter()
                .all(|f| f.severity != powernode_module::diagnostics::Severity::Error),
            "a manifest was returned alongside an error finding"
        );
    }
});
