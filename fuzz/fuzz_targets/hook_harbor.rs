//! Harbor webhooks (`POST /hooks/harbor`), in both payload formats: Harbor's default JSON
//! and CloudEvents. The first byte picks the content type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_inbound::{Repositories, hooks::harbor};
use std::sync::LazyLock;

static REPOS: LazyLock<Repositories> =
    LazyLock::new(|| Repositories::new(&["acct/modules/*".into()]).unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = match pick % 3 {
        0 => "application/json",
        1 => "application/cloudevents+json",
        _ => "text/plain",
    };
    let _ = harbor::parse(content_type, body, &REPOS);
});
