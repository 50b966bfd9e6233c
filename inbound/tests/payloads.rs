//! The hook parsers on the real payloads the receiver's tests replay (`webhook/tests/data`:
//! Distribution captures, Gitea and Harbor payloads built from their sources): what each
//! delivery is recorded as and what work it asks for, without a server in the way.

use powernode_inbound::{
    Repositories,
    hooks::{HookError, Parsed, PrComment, Work, body_sha256, distribution, gitea, harbor},
};
use std::{fs, path::PathBuf};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../webhook/tests/data")
        .join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn repos() -> Repositories {
    Repositories::new(&["acme/*".into()]).unwrap()
}

fn none() -> Repositories {
    Repositories::new(&["someone-else/*".into()]).unwrap()
}

fn tag(t: &str) -> Work {
    Work::Tag {
        repository: "acme/hello-module".into(),
        tag: t.into(),
    }
}

/// The single delivery of a request, and its work.
fn only(p: Parsed) -> (powernode_inbound::hooks::Delivery, Vec<Work>) {
    assert!(!p.ignored);
    assert_eq!(p.deliveries.len(), 1, "{p:?}");
    p.deliveries.into_iter().next().unwrap()
}

#[test]
fn distribution_tagged_pushes_ask_for_their_tag_and_nothing_else_does() {
    for (file, id, work) in [
        (
            "push-manifest-tagged.envelope.json",
            "c2dac940-3e1e-4baf-9a7e-4310a5f1dd5f",
            vec![tag("0.1.0")],
        ),
        (
            "push-index-tagged.envelope.json",
            "323a70b3-6b71-4686-8ed2-1969ca9646ac",
            vec![tag("0.3.0")],
        ),
        (
            "push-blob.envelope.json",
            "170165b8-bd72-4faf-b6aa-5f4a0cfbbcc7",
            vec![],
        ),
        (
            "push-manifest-untagged-child.envelope.json",
            "509f86c6-bf13-42bd-8b09-a846f58864d9",
            vec![],
        ),
        (
            "pull-manifest.envelope.json",
            "4fdfdd29-bb11-4839-b319-44db2b6c56e1",
            vec![],
        ),
    ] {
        let body = fixture(file);
        let (d, w) = only(distribution::parse(&body, &repos()).unwrap());
        assert_eq!(d.id, format!("distribution:{id}"), "{file}");
        assert_eq!(d.source, "distribution");
        assert_eq!(d.body_sha256, body_sha256(&body));
        assert_eq!(w, work, "{file}");
        // A repository outside `registry.repositories` is recorded and asks for nothing.
        let (_, w) = only(distribution::parse(&body, &none()).unwrap());
        assert!(w.is_empty(), "{file}");
    }
}

#[test]
fn gitea_package_comment_review_and_status_events() {
    let body = fixture("package-created-container.json");
    let (d, w) = only(gitea::parse("package", "a7", &body, &repos()).unwrap());
    assert_eq!(
        (d.id.as_str(), d.event_type.as_str()),
        ("gitea:a7", "package:created")
    );
    assert_eq!(w, vec![tag("0.1.0")]);

    let body = fixture("issue-comment-created-on-pull-request.json");
    let (d, w) = only(gitea::parse("pull_request_comment", "c1", &body, &repos()).unwrap());
    assert_eq!(d.event_type, "pull_request_comment");
    assert_eq!(
        w,
        vec![Work::Comment(PrComment {
            repository: "acme/hello-module".into(),
            pr: 7,
            comment_id: 1042,
            user: "bob".into(),
            body: "/promote 0.1.0 staging".into(),
        })]
    );

    for (event, file) in [
        (
            "pull_request_review_approved",
            "pull-request-review-approved.json",
        ),
        (
            "pull_request_review_rejected",
            "pull-request-review-rejected.json",
        ),
        ("status", "status-success.json"),
    ] {
        let (_, w) = only(gitea::parse(event, "r1", &fixture(file), &repos()).unwrap());
        assert_eq!(
            w,
            vec![Work::Reevaluate {
                repository: "acme/hello-module".into()
            }],
            "{event}"
        );
    }

    // Other event types are valid requests that ask for nothing (204).
    let p = gitea::parse("push", "p1", b"{}", &repos()).unwrap();
    assert!(p.ignored && p.deliveries.is_empty());
    // A delivery without an id cannot be deduplicated: refused.
    assert_eq!(
        gitea::parse(
            "package",
            "",
            &fixture("package-created-container.json"),
            &repos()
        ),
        Err(HookError::BadRequest("missing X-Gitea-Delivery".into()))
    );
}

#[test]
fn harbor_default_and_cloudevents_formats() {
    let body = fixture("push-artifact.default.json");
    let (d, w) = only(harbor::parse("application/json", &body, &repos()).unwrap());
    // No delivery id in the Default format: Harbor retries the same body, so its hash is it.
    assert_eq!(d.id, format!("harbor:sha256:{}", body_sha256(&body)));
    assert_eq!(w, vec![tag("0.1.0")]);

    let (_, w) = only(
        harbor::parse(
            "application/json",
            &fixture("push-artifact-by-digest.default.json"),
            &repos(),
        )
        .unwrap(),
    );
    assert!(w.is_empty(), "a push by digest names no tag");

    let (d, w) = only(
        harbor::parse(
            "application/cloudevents+json",
            &fixture("push-artifact.cloudevents.json"),
            &repos(),
        )
        .unwrap(),
    );
    assert_eq!(d.id, "harbor:66e18103-09c1-41f6-982f-37df223f3eeb");
    assert_eq!(w, vec![tag("0.1.0")]);
}

#[test]
fn malformed_bodies_are_refused_with_a_reason() {
    for (what, r) in [
        (
            "Distribution",
            distribution::parse(b"{\"events\": 3}", &repos()),
        ),
        (
            "Gitea package",
            gitea::parse("package", "x", b"[]", &repos()),
        ),
        (
            "Gitea pull_request_comment",
            gitea::parse("pull_request_comment", "x", b"{", &repos()),
        ),
        (
            "Harbor CloudEvent",
            harbor::parse("application/cloudevents+json", b"null", &repos()),
        ),
        (
            "Harbor webhook",
            harbor::parse("application/json", b"", &repos()),
        ),
    ] {
        match r {
            Err(HookError::BadRequest(m)) => assert!(m.contains(what), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        distribution::parse(br#"{"events":[{"id":"","action":"push"}]}"#, &repos()),
        Err(HookError::BadRequest("an event has an empty id".into()))
    );
}
