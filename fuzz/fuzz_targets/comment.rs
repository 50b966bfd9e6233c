//! PR comment commands (`/promote 0.1.0 staging`, `/yank …`, `/cancel`): any comment body
//! parses to commands or none, deterministically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_inbound::commands::parse;

fuzz_target!(|body: &str| {
    let first = parse(body);
    assert_eq!(first, parse(body), "parsing is deterministic");
});
