//! The hook endpoints with the real fixture payloads: authentication, parsing, recording,
//! deduplication, and that every rejection is a 4xx with a reason and changes nothing.

mod common;
use common::*;
use rstest::rstest;

async fn deliveries(r: &Running) -> i64 {
    r.deliveries().await
}

async fn jobs(r: &Running) -> usize {
    r.app
        .state
        .store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| *n as usize)
        .sum()
}

/// 300 deliveries at once, 100 ids each sent three times: group commit puts many requests in
/// one transaction, yet each id is recorded once, each answer comes after its commit, and
/// exactly one of the three copies is accepted.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_share_commits_and_each_counts_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let mut sends = tokio::task::JoinSet::new();
    for copy in 0..3 {
        for i in 0..100 {
            let (http, url) = (r.http.clone(), r.url.clone());
            sends.spawn(async move {
                let body = dist_envelope(
                    &format!("burst-{i}"),
                    "acme/burst",
                    &format!("v1.0.{i}"),
                    &format!("sha256:{:064x}", i),
                );
                let mut req = http.post(format!("{url}/hooks/distribution")).body(body);
                for (k, v) in dist_headers() {
                    req = req.header(k, v);
                }
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let v: serde_json::Value = res.json().await.unwrap();
                (copy, i, status, v)
            });
        }
    }
    let mut accepted = vec![0; 100];
    while let Some(res) = sends.join_next().await {
        let (_, i, status, v) = res.unwrap();
        match status {
            202 => {
                assert_eq!(v["accepted"], 1, "{v}");
                accepted[i] += 1;
            }
            200 => assert_eq!(v["duplicates"], 1, "{v}"),
            s => panic!("{}: delivery burst-{i} answered {s}: {v}", db.name),
        }
    }
    assert!(
        accepted.iter().all(|n| *n == 1),
        "{}: {accepted:?}",
        db.name
    );
    assert_eq!(deliveries(&r).await, 100, "{}", db.name);
    assert_eq!(jobs(&r).await, 100, "{}: one job per tag", db.name);
    let commits = r.counter("module_webhook_delivery_commits_total").await;
    assert!(
        commits < 300.0,
        "{}: 300 requests, {commits} transactions: requests shared commits",
        db.name
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn distribution_push_is_recorded_once_and_bad_requests_change_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let body = data("push-manifest-tagged.envelope.json");

    // Wrong or missing token.
    let mut bad = dist_headers();
    bad[0].1 = "Bearer nope".into();
    let (s, text) = r.post("/hooks/distribution", body.clone(), &bad).await;
    assert_eq!(s, 401, "{}: {text}", db.name);
    assert!(text.contains("\"error\":\"unauthorized\""), "{text}");
    let (s, _) = r
        .post("/hooks/distribution", body.clone(), &dist_headers()[1..])
        .await;
    assert_eq!(s, 401);
    // Wrong content type, malformed JSON, oversized body.
    let mut ct = dist_headers();
    ct[1].1 = "text/plain".into();
    assert_eq!(
        r.post("/hooks/distribution", body.clone(), &ct).await.0,
        415
    );
    let (s, text) = r
        .post(
            "/hooks/distribution",
            b"{\"events\": [".to_vec(),
            &dist_headers(),
        )
        .await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("bad_request"), "{text}");
    let (s, text) = r
        .post("/hooks/distribution", vec![b' '; 70 << 10], &dist_headers())
        .await;
    assert_eq!(s, 413, "{text}");
    assert_eq!(
        deliveries(&r).await,
        0,
        "{}: rejected requests stored something",
        db.name
    );
    assert_eq!(jobs(&r).await, 0);

    // The real capture: accepted, one delivery, one ingest job for acme/hello-module:0.1.0.
    let (s, text) = r
        .post("/hooks/distribution", body.clone(), &dist_headers())
        .await;
    assert_eq!(s, 202, "{}: {text}", db.name);
    assert!(
        text.contains("\"accepted\":1") && text.contains("\"jobs\":1"),
        "{text}"
    );
    // The same delivery again: acknowledged, nothing changes.
    let (s, text) = r.post("/hooks/distribution", body, &dist_headers()).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("\"duplicates\":1"), "{text}");
    assert_eq!(deliveries(&r).await, 1);
    assert_eq!(jobs(&r).await, 1);

    // Blob, untagged child, pull: recorded as deliveries, but start nothing.
    for f in [
        "push-blob.envelope.json",
        "push-manifest-untagged-child.envelope.json",
        "pull-manifest.envelope.json",
    ] {
        let (s, text) = r
            .post("/hooks/distribution", data(f), &dist_headers())
            .await;
        assert_eq!(s, 202, "{f}: {text}");
        assert!(text.contains("\"jobs\":0"), "{f}: {text}");
    }
    assert_eq!(jobs(&r).await, 1);
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn gitea_hmac_with_rotation_and_event_routing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let body = data("package-created-container.json");
    let h = headers("package-created-container.headers.json");
    let (s, text) = r.post("/hooks/gitea", body.clone(), &h).await;
    assert_eq!(s, 202, "{}: {text}", db.name);
    assert!(text.contains("\"jobs\":1"), "{text}");
    let (s, _) = r.post("/hooks/gitea", body.clone(), &h).await;
    assert_eq!(s, 200, "duplicate X-Gitea-Delivery");

    // A tampered body or signature: 401, nothing stored.
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'0').unwrap();
    tampered[at] = b'9';
    let (s, text) = r.post("/hooks/gitea", tampered, &h).await;
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("X-Gitea-Signature"), "{text}");
    let mut h2 = h.clone();
    for (k, v) in h2.iter_mut() {
        if k == "X-Gitea-Signature" {
            *v = "00".repeat(32);
        }
    }
    assert_eq!(r.post("/hooks/gitea", body.clone(), &h2).await.0, 401);
    assert_eq!(deliveries(&r).await, 1);

    // Comments and statuses are the promotion engine's: recorded, one job each.
    for f in ["issue-comment-created-on-pull-request", "status-success"] {
        let (s, text) = r
            .post(
                "/hooks/gitea",
                data(&format!("{f}.json")),
                &headers(&format!("{f}.headers.json")),
            )
            .await;
        assert_eq!(s, 202, "{f}: {text}");
    }
    // Event types nobody handles: authenticated, then 204, nothing stored.
    let mut h = headers("status-success.headers.json");
    for (k, v) in h.iter_mut() {
        if k == "X-Gitea-Event-Type" {
            *v = "fork".into();
        }
    }
    assert_eq!(
        r.post("/hooks/gitea", data("status-success.json"), &h)
            .await
            .0,
        204
    );
    assert_eq!(deliveries(&r).await, 3);
    assert_eq!(jobs(&r).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_rejects_when_no_secret_matches() {
    let db = sqlite().await;
    let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
    cfg.hooks.gitea_secrets = vec!["rotated-away-0123456789".into()];
    let r = serve(cfg).await;
    let (s, _) = r
        .post(
            "/hooks/gitea",
            data("package-created-container.json"),
            &headers("package-created-container.headers.json"),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(deliveries(&r).await, 0);
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn harbor_default_and_cloudevents(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let auth = vec![
        ("Authorization".to_string(), HARBOR_AUTH.to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let (s, _) = r
        .post(
            "/hooks/harbor",
            data("push-artifact.default.json"),
            &auth[1..],
        )
        .await;
    assert_eq!(s, 401, "no Authorization");
    let (s, text) = r
        .post("/hooks/harbor", data("push-artifact.default.json"), &auth)
        .await;
    assert_eq!(s, 202, "{}: {text}", db.name);
    assert!(text.contains("\"jobs\":1"), "{text}");
    let (s, _) = r
        .post("/hooks/harbor", data("push-artifact.default.json"), &auth)
        .await;
    assert_eq!(s, 200, "Harbor's retry of the same body is a duplicate");
    let (s, text) = r
        .post(
            "/hooks/harbor",
            data("push-artifact-by-digest.default.json"),
            &auth,
        )
        .await;
    assert_eq!(s, 202, "{text}");
    assert!(
        text.contains("\"jobs\":0"),
        "untagged push starts nothing: {text}"
    );
    let ce = vec![
        ("Authorization".to_string(), HARBOR_AUTH.to_string()),
        (
            "Content-Type".to_string(),
            "application/cloudevents+json".to_string(),
        ),
    ];
    let (s, text) = r
        .post("/hooks/harbor", data("push-artifact.cloudevents.json"), &ce)
        .await;
    assert_eq!(s, 202, "{text}");
    assert_eq!(deliveries(&r).await, 3);
    // The same tag from two sources is one queued job.
    assert_eq!(jobs(&r).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_api_auth() {
    let db = sqlite().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    assert_eq!(r.get("/healthz", None).await.0, 200);
    assert_eq!(r.get("/readyz", None).await.0, 200);
    r.post(
        "/hooks/distribution",
        data("push-manifest-tagged.envelope.json"),
        &dist_headers(),
    )
    .await;
    let (s, m) = r.get("/metrics", None).await;
    assert_eq!(s, 200);
    let m = m.as_str().unwrap().to_owned();
    assert!(
        m.contains(
            "module_webhook_deliveries_total{source=\"distribution\",outcome=\"accepted\"} 1"
        ),
        "{m}"
    );
    assert!(m.contains("module_webhook_jobs{state=\"queued\"} 1"), "{m}");
    assert!(m.contains("module_webhook_ingest_duration_seconds"), "{m}");

    let (s, v) = r.get("/api/v1/modules", None).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "unauthorized");
    let (s, v) = r
        .get("/api/v1/modules", Some("wrong-token-0123456789"))
        .await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = r.get("/api/v1/modules", Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = r
        .get("/api/v1/versions/v-nope-1.0.0", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "not_found");
    let res = r
        .http
        .post(format!("{}/api/v1/dead-letters/x/retry", r.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "retry needs the operator role");
    let (s, v) = r
        .get("/api/v1/modules/x/versions?state=bogus", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 400, "{v}");
}
