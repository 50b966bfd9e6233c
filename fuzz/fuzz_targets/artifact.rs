//! module.tar as the receiver and the agent read it: index.json first, then every entry
//! checked against it. Any bytes are refused with a reason or read, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_module::artifact::reader::{ReadLimits, read_and_verify_with};

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits::default().with_max_index_entries(4096);
    let _ = read_and_verify_with(data, &limits);
});
