//! Drift across a fleet: a report is judged when it arrives and the verdict kept while it
//! holds; the fleet summary counts every instance and pages through the drifting ones; many
//! instances reporting at once share commits. (The end-to-end story of a template, its
//! signed state and an instance's drift across promotions and yanks is `fleet.rs`.)

mod common;
use common::{fleet::post, *};
use rstest::rstest;
use serde_json::{Value, json};

/// Creates template `id` with no modules; returns the state it serves and its merged
/// composefs digest, as an in-sync report names them.
async fn empty_template(r: &Running, id: &str) -> (Value, Value) {
    let (s, v) = r.fleet().create_template(id, "p").await;
    assert_eq!(s, 201, "{v}");
    let st = &v["template"]["desired_state"];
    (
        st["state_id"].clone(),
        st["document"]["composefs_digest"].clone(),
    )
}

/// The fleet summary counts every instance and pages through the drifting ones.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn drift_summary_counts_and_pages_the_drifting_instances(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let fleet = r.fleet();
    let (state, merged) = empty_template(&r, "empty").await;
    let merged = merged.as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(fleet.register(&format!("n{i}"), "empty").await);
    }
    let report = |composefs: &str, status: &str| json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": composefs, "status": status});
    for (i, token) in tokens.iter().enumerate().take(3) {
        let (s, v) = fleet
            .report(&format!("n{i}"), token, report(&merged, "applied"))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let other = format!("sha256:{}", "0".repeat(64));
    let (s, v) = fleet
        .report("n3", &tokens[3], report(&other, "failed"))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        &r,
        "/instances/n3/report",
        &tokens[4],
        report(&merged, "applied"),
    )
    .await;
    assert_eq!(
        s, 401,
        "one instance's token cannot report for another: {v}"
    );
    let (s, v) = post(
        &r,
        "/instances/n2/report",
        &tokens[2],
        json!({"desired_state_id": "nope", "running_module_digests": {}, "status": "applied"}),
    )
    .await;
    assert_eq!(s, 400, "a malformed report is refused: {v}");
    assert_eq!(v["error"], "bad_request", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("desired_state_id"),
        "the message names the field: {v}"
    );

    let v = fleet.drift_page("empty", 1, None).await;
    assert_eq!(
        v["counts"],
        json!({"total": 5, "in_sync": 3, "drifting": 2, "stale": 1, "failed": 1, "rejected": 0, "never_reported": 1}),
        "{v}"
    );
    assert_eq!(v["drifting"][0]["id"], "n3");
    assert!(
        v["drifting"][0]["reasons"].to_string().contains("failed"),
        "{v}"
    );
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let v = fleet.drift_page("empty", 1, Some(&cursor)).await;
    assert_eq!(v["drifting"][0]["id"], "n4", "{v}");
    assert!(
        v["drifting"][0]["reasons"]
            .to_string()
            .contains("never reported"),
        "{v}"
    );
    assert!(v["next_cursor"].is_null(), "{v}");
    let (s, v) = fleet.drift_summary("nope").await;
    assert_eq!(s, 404, "{v}");
}

/// A report is judged when it arrives, and the fleet summary reads that verdict instead of
/// judging the report again, but only while it holds: judged against something else, the
/// instance is judged in full and the new verdict kept; once the report is stale, it is
/// judged in full. (The end-to-end test above checks, at every step, that the summary
/// agrees with the instance's own drift across promotions and yanks.)
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_report_is_judged_when_it_arrives_and_its_verdict_holds_only_while_fresh(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let clock = module_webhook::store::Clock::manual();
    let r = serve_with_clock(config(&db.url, "127.0.0.1:1", vec![]), clock.clone()).await;
    let fleet = r.fleet();
    let (state, merged) = empty_template(&r, "t").await;
    let token = fleet.register("n0", "t").await;
    let (s, v) = fleet
        .report(
            "n0",
            &token,
            json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": merged, "status": "applied"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let stored = r.app.state.store.verdicts_page(None, "", 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].state,
        Some(module_webhook::store::DriftState::InSync)
    );
    let key = stored[0].judged_against.clone().unwrap();
    assert!(
        key.starts_with(state.as_str().unwrap()),
        "judged against the served state: {key}"
    );

    // Proof that the summary reads the stored word: a verdict changed behind the receiver's
    // back (nothing does that but this test) is what it shows, while it holds.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE instances SET drift_state = 'failed', drift_reasons = '[\"judged earlier\"]' WHERE id = 'n0'")
        .execute(&pool)
        .await
        .unwrap();
    let (_, v) = fleet.drift_summary("t").await;
    assert_eq!(
        v["drifting"][0]["reasons"],
        json!(["judged earlier"]),
        "{v}"
    );

    // Judged against something else (another served state, another yanked set): judged in
    // full again, and that verdict is kept for the next walk.
    sqlx::query("UPDATE instances SET judged_against = 'an older state' WHERE id = 'n0'")
        .execute(&pool)
        .await
        .unwrap();
    let (_, v) = fleet.drift_summary("t").await;
    assert_eq!(v["counts"]["in_sync"], 1, "{v}");
    let mut kept = None;
    for _ in 0..50 {
        let row = r
            .app
            .state
            .store
            .verdicts_page(None, "", 10)
            .await
            .unwrap()
            .remove(0);
        if row.judged_against.as_deref() == Some(key.as_str()) {
            kept = Some(row);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = kept.expect("the re-judged verdict is kept");
    assert_eq!(kept.state, Some(module_webhook::store::DriftState::InSync));
    assert_eq!(kept.reasons, None);

    // Stale: judged in full again, from the report itself.
    clock.advance(std::time::Duration::from_secs(3600));
    let (_, v) = fleet.drift_summary("t").await;
    assert_eq!(v["counts"]["stale"], 1, "{v}");
    let reasons = v["drifting"][0]["reasons"].to_string();
    assert!(
        reasons.contains("no report for") && !reasons.contains("judged earlier"),
        "{v}"
    );
    pool.close().await;
}

/// Many instances reporting at once: each report is recorded (and answered only once it is
/// committed), with its verdict, and they share transactions (group commit).
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reports_share_commits_and_each_is_recorded_with_its_verdict(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let fleet = r.fleet();
    let (state, merged) = empty_template(&r, "t").await;
    let mut tokens = Vec::new();
    for i in 0..150 {
        tokens.push(fleet.register(&format!("n{i:03}"), "t").await);
    }
    let mut sends = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (http, url) = (r.http.clone(), r.url.clone());
        // Every third instance reports a failed apply.
        let status = if i % 3 == 0 { "failed" } else { "applied" };
        let body = json!({"desired_state_id": state, "running_module_digests": {}, "composefs_digest": merged, "status": status});
        sends.spawn(async move {
            let res = http
                .post(format!("{url}/api/v1/instances/n{i:03}/report"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (i, res.status().as_u16(), res.text().await.unwrap())
        });
    }
    while let Some(res) = sends.join_next().await {
        let (i, status, body) = res.unwrap();
        assert_eq!(status, 200, "{}: n{i:03}: {body}", db.name);
    }
    let (_, v) = fleet.drift_summary("t").await;
    assert_eq!(
        v["counts"],
        json!({"total": 150, "in_sync": 100, "drifting": 50, "stale": 0, "failed": 50, "rejected": 0, "never_reported": 0}),
        "{}: {v}",
        db.name
    );
    let stored = r
        .app
        .state
        .store
        .verdicts_page(None, "", 200)
        .await
        .unwrap();
    assert_eq!(stored.len(), 150);
    assert!(
        stored
            .iter()
            .all(|v| v.judged_against.is_some() && v.state.is_some()),
        "every report was judged when it arrived"
    );
    let commits = r.counter("module_webhook_report_commits_total").await;
    assert!(
        (1.0..150.0).contains(&commits),
        "{}: 150 reports, {commits} transactions: reports shared commits",
        db.name
    );
}
