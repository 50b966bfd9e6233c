//! Reports are the node's word, and bounded: the state a report names must be one its
//! template served (a made-up or another template's id is refused, and drift never calls a
//! report naming another state "in sync"), it lists at most as many modules as its
//! template's largest state plus a slack, an instance sends at most `[fleet] max_reports`
//! per `report_window_secs` (429 with `Retry-After`), and the body is at most 256 KiB.

mod common;
use common::{fleet::*, *};
use module_webhook::fleet::drift::{Desired, Observed, drift};
use powernode_module::desired_state::DesiredState;
use rstest::rstest;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A digest that no state holds.
fn digest(i: usize) -> String {
    format!("sha256:{i:064x}")
}

/// Templates `edge` and `other` (no modules: their states hold none), and instances
/// `node-1` and `node-2` of `edge`; returns their tokens.
async fn fleet(r: &Running) -> (String, String) {
    for t in ["edge", "other"] {
        let (s, v) = post(
            r,
            "/templates",
            OPS_TOKEN,
            json!({"id": t, "platform": "p"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let mut tokens = Vec::new();
    for i in ["node-1", "node-2"] {
        let (s, v) = post(
            r,
            "/instances",
            OPS_TOKEN,
            json!({"id": i, "template_id": "edge"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    (tokens.remove(0), tokens.remove(0))
}

/// The state `template` serves: `(state_id, document)`.
async fn served(r: &Running, template: &str) -> (String, DesiredState) {
    let (s, t) = r
        .get(&format!("/api/v1/templates/{template}"), Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{t}");
    let st = &t["template"]["desired_state"];
    (
        st["state_id"].as_str().unwrap().to_owned(),
        serde_json::from_value(st["document"].clone()).unwrap(),
    )
}

async fn send(r: &Running, instance: &str, token: &str, body: Value) -> (u16, Value) {
    post(r, &format!("/instances/{instance}/report"), token, body).await
}

fn body(state: &str, running: usize, composefs: &str) -> Value {
    let running: serde_json::Map<String, Value> = (0..running)
        .map(|i| (format!("m{i}"), json!(digest(i))))
        .collect();
    json!({
        "desired_state_id": state,
        "running_module_digests": running,
        "composefs_digest": composefs,
        "status": "applied",
    })
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_report_must_name_a_state_its_template_served(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let (token, _) = fleet(&r).await;
    let (state, doc) = served(&r, "edge").await;
    let (foreign, _) = served(&r, "other").await;
    let merged = doc.composefs_digest.to_string();

    for (what, id) in [("made up", digest(7)), ("another template's", foreign)] {
        let (s, v) = send(&r, "node-1", &token, body(&id, 0, &merged)).await;
        assert_eq!(s, 400, "{} {what}: {v}", db.name);
        assert_eq!(v["error"], "bad_request");
        assert!(
            v["message"].as_str().unwrap().contains("never served"),
            "{v}"
        );
    }
    let (_, inst) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    assert_eq!(
        inst["instance"]["last_report_at"],
        Value::Null,
        "nothing stored: {inst}"
    );

    let (s, v) = send(&r, "node-1", &token, body(&state, 0, &merged)).await;
    assert_eq!(s, 200, "{v}");
    let (_, d) = r
        .get("/api/v1/instances/node-1/drift", Some(READ_TOKEN))
        .await;
    assert_eq!(d["drift"], false, "{d}");
    assert_eq!(d["state_mismatch"], false, "{d}");

    // Digests that match under another state id are not in sync (a state the template
    // served before: accepted, and drift says so).
    let desired = Desired::of(&state, &doc);
    let (running, observed) = (BTreeMap::new(), BTreeMap::new());
    let older = digest(9);
    let d = drift(
        Some(&desired),
        Observed {
            running: &running,
            composefs_digest: Some(&merged),
            reported_state_id: Some(&older),
            status: Some("applied"),
            last_report_at: Some(1_000),
            modules: &observed,
        },
        2_000,
        60_000,
    );
    assert!(d.drift && d.state_mismatch, "{d:?}");
    assert_eq!(
        d.reasons,
        [format!(
            "the instance reports state {older}, not the served {state}"
        )]
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_report_lists_no_more_modules_than_its_states_held_and_its_body_is_bounded(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let (token, _) = fleet(&r).await;
    let (state, doc) = served(&r, "edge").await;
    let merged = doc.composefs_digest.to_string();
    assert!(doc.modules.is_empty());

    // The state holds no module: 8 (the slack) are accepted, 9 are not.
    let (s, v) = send(&r, "node-1", &token, body(&state, 9, &merged)).await;
    assert_eq!(s, 400, "{} {v}", db.name);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("running_module_digests: at most 8 modules"),
        "{m}"
    );
    let (s, v) = send(&r, "node-1", &token, body(&state, 8, &merged)).await;
    assert_eq!(s, 200, "{v}");

    // Observed modules alike.
    let mut b = body(&state, 0, &merged);
    b["modules"] = (0..9)
        .map(|i| (format!("m{i}"), json!({"packages": {}, "units": {}})))
        .collect::<serde_json::Map<String, Value>>()
        .into();
    let (s, v) = send(&r, "node-1", &token, b).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("modules: at most 8"),
        "{v}"
    );

    // 300 KiB is over the report's body limit (the message check alone would say 400);
    // so is the 2 MB, 24,000-module report of the review.
    let mut b = body(&state, 0, &merged);
    b["message"] = json!("x".repeat(300 << 10));
    let (s, v) = send(&r, "node-1", &token, b).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"], "payload_too_large", "{v}");
    let (s, v) = send(&r, "node-1", &token, body(&state, 24_000, &merged)).await;
    assert_eq!(s, 413, "{v}");
    // Without the instance's token, the body is not looked at.
    let mut b = body(&state, 0, &merged);
    b["message"] = json!("x".repeat(300 << 10));
    let (s, v) = send(&r, "node-1", "pni_wrong", b).await;
    assert_eq!(s, 401, "{v}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_sends_at_most_its_report_budget(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
    cfg.fleet.max_reports = 3;
    cfg.fleet.report_window_secs = 60;
    let r = serve(cfg).await;
    let (token1, token2) = fleet(&r).await;
    let (state, doc) = served(&r, "edge").await;
    let ok = body(&state, 0, &doc.composefs_digest.to_string());
    for i in 0..3 {
        let (s, v) = send(&r, "node-1", &token1, ok.clone()).await;
        assert_eq!(s, 200, "{} report {i}: {v}", db.name);
    }
    let res = r
        .http
        .post(format!("{}/api/v1/instances/node-1/report", r.url))
        .bearer_auth(&token1)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "one report per 20 s: {wait}");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "too_many_requests", "{v}");
    // Refused reports change nothing, and the budget is the instance's own: another
    // instance reports, and a wrong token is a 401, not a 429.
    let (s, v) = send(&r, "node-2", &token2, ok.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(&r, "node-1", &token2, ok.clone()).await;
    assert_eq!(s, 401, "{v}");
}
