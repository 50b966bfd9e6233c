//! Instance tokens can be revoked: `POST /api/v1/instances/{id}/token` gives a new token
//! (shown once) and the old one stops working, `DELETE /api/v1/instances/{id}` removes the
//! instance and its token; both need the operator role and are audited. Two receivers on one
//! PostgreSQL database: after a rotation or a deletion on one, the other refuses the old
//! token within about a second (its token cache re-reads the store's epoch).

mod common;
use common::{fleet::*, *};
use reqwest::Method;
use rstest::rstest;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A template and one instance of it; returns the instance's token.
async fn instance(r: &Running, id: &str) -> String {
    let (s, v) = post(
        r,
        "/templates",
        OPS_TOKEN,
        json!({"id": "edge", "platform": "p"}),
    )
    .await;
    assert!(s == 201 || s == 409, "{v}");
    let (s, v) = post(
        r,
        "/instances",
        OPS_TOKEN,
        json!({"id": id, "template_id": "edge"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// What `GET /instances/{id}/desired-state` answers to `token`.
async fn poll(r: &Running, id: &str, token: &str) -> u16 {
    let path = format!("/instances/{id}/desired-state");
    call(r, Method::GET, &path, token, None, &[]).await.0
}

/// What a report of the served state (nothing running) answers to `token`.
async fn report(r: &Running, id: &str, token: &str) -> (u16, Value) {
    let (_, t) = r.get("/api/v1/templates/edge", Some(READ_TOKEN)).await;
    let state = t["template"]["desired_state"]["state_id"].clone();
    post(
        r,
        &format!("/instances/{id}/report"),
        token,
        json!({"desired_state_id": state, "running_module_digests": {}, "status": "applied"}),
    )
    .await
}

async fn actions(r: &Running) -> Vec<(String, String, Value)> {
    r.app
        .state
        .store
        .audit_of_template(&"edge".into())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action.as_str().starts_with("instance_"))
        .map(|a| (a.action.to_string(), a.via.to_string(), a.evidence))
        .collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_replaces_the_old_one_and_a_deleted_instance_is_gone(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let old = instance(&r, "node-1").await;
    assert_eq!(poll(&r, "node-1", &old).await, 200, "{}", db.name);
    assert_eq!(report(&r, "node-1", &old).await.0, 200);

    // Only an operator may rotate or delete.
    let (s, v, _) = call(
        &r,
        Method::POST,
        "/instances/node-1/token",
        READ_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, v, _) = call(
        &r,
        Method::DELETE,
        "/instances/node-1",
        READ_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, v, _) = call(&r, Method::POST, "/instances/node-1/token", &old, None, &[]).await;
    assert_eq!(s, 401, "an instance cannot rotate its own token: {v}");
    let (s, v, _) = call(
        &r,
        Method::POST,
        "/instances/nobody/token",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // Rotate: the new token is shown once and works; the old one is dead at once.
    let (s, v, _) = call(
        &r,
        Method::POST,
        "/instances/node-1/token",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let new = v["token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("pni_") && new != old, "{v}");
    assert_eq!(v["instance"]["id"], "node-1");
    assert!(v["instance"].get("token_sha256").is_none(), "{v}");
    assert_eq!(poll(&r, "node-1", &old).await, 401);
    assert_eq!(report(&r, "node-1", &old).await.0, 401);
    assert_eq!(poll(&r, "node-1", &new).await, 200);
    assert_eq!(report(&r, "node-1", &new).await.0, 200);

    // Delete: the instance, its token and its reports are gone.
    let (s, v, _) = call(
        &r,
        Method::DELETE,
        "/instances/node-1",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["instance_id"], "node-1");
    assert_eq!(poll(&r, "node-1", &new).await, 401);
    assert_eq!(report(&r, "node-1", &new).await.0, 401);
    let (s, _) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    assert_eq!(s, 404);
    let (s, v, _) = call(
        &r,
        Method::DELETE,
        "/instances/node-1",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // The id can be registered again; none of the earlier tokens works for it.
    let again = instance(&r, "node-1").await;
    assert_eq!(poll(&r, "node-1", &again).await, 200);
    assert_eq!(poll(&r, "node-1", &old).await, 401);
    assert_eq!(poll(&r, "node-1", &new).await, 401);

    let a = actions(&r).await;
    let names: Vec<&str> = a.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "instance_registered",
            "instance_token_rotated",
            "instance_deleted",
            "instance_registered"
        ],
        "{a:?}"
    );
    for (_, via, evidence) in &a {
        assert_eq!(
            (via.as_str(), &evidence["instance_id"]),
            ("api", &json!("node-1"))
        );
    }
}

/// Polls `what` (every 20 ms) until it answers `want`; returns how long that took, or fails
/// after `limit`.
async fn until<F, Fut>(want: u16, limit: Duration, mut what: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let start = Instant::now();
    loop {
        let got = what().await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "still {got} after {:?}, not {want}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_replica_refuses_a_rotated_or_deleted_token_within_a_second() {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = postgres_in(&base).await;
    let a = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let b = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    let old = instance(&a, "node-1").await;
    // B has the token cached: it answered with it.
    assert_eq!(poll(&b, "node-1", &old).await, 200);
    assert_eq!(report(&b, "node-1", &old).await.0, 200);

    let (s, v, _) = call(
        &a,
        Method::POST,
        "/instances/node-1/token",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let new = v["token"].as_str().unwrap().to_owned();
    let took = until(401, Duration::from_secs(3), || poll(&b, "node-1", &old)).await;
    assert!(took <= Duration::from_millis(1500), "B took {took:?}");
    assert_eq!(report(&b, "node-1", &old).await.0, 401);
    assert_eq!(poll(&b, "node-1", &new).await, 200);
    assert_eq!(report(&b, "node-1", &new).await.0, 200);

    let (s, v, _) = call(
        &a,
        Method::DELETE,
        "/instances/node-1",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let took = until(401, Duration::from_secs(3), || poll(&b, "node-1", &new)).await;
    assert!(took <= Duration::from_millis(1500), "B took {took:?}");
    assert_eq!(report(&b, "node-1", &new).await.0, 401);
}
