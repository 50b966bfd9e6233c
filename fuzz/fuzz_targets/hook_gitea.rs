//! Gitea webhooks (`POST /hooks/gitea`): package, issue_comment, pull_request_review and
//! status events. The first byte picks the `X-Gitea-Event` header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use powernode_inbound::{Repositories, hooks::gitea};
use std::sync::LazyLock;

static REPOS: LazyLock<Repositories> =
    LazyLock::new(|| Repositories::new(&["acct/modules/*".into()]).unwrap());

const EVENTS: [&str; 9] = [
    "pull_request_comment",
    "pull_request_review_comment",
    "package",
    "issue_comment",
    "pull_request_review_approved",
    "pull_request_review_rejected",
    "pull_request_review",
    "status",
    "push",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[pick as usize % EVENTS.len()];
    let _ = gitea::parse(event, "d8f0c3a2-fuzz", body, &REPOS);
});
