//! CNCF Distribution notification envelopes (`POST /hooks/distribution`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_inbound::{Repositories, hooks::distribution};
use std::sync::LazyLock;

static REPOS: LazyLock<Repositories> =
    LazyLock::new(|| Repositories::new(&["acct/modules/*".into()]).unwrap());

fuzz_target!(|body: &[u8]| {
    let _ = distribution::parse(body, &REPOS);
});
