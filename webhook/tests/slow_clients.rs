//! Slow clients cannot hold the receiver (issue 25 item 8): idle and half-sent connections
//! are closed after `server.header_read_timeout_secs`, a stalled body after
//! `server.body_timeout_secs`, connections beyond `server.max_connections` wait instead of
//! exhausting descriptors, and `/healthz` answers quickly throughout. Loopback only; every
//! connection the test opens is its own and closes with it.

mod common;
use common::*;
use module_webhook::{app::App, config::Config};
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The header timeout the tests configure: short, so closing is observable.
const HEADER_TIMEOUT: u64 = 2;

/// The receiver, served by the production server loop (`module_webhook::server::serve`).
async fn start(db: &TestDb, tune: impl FnOnce(&mut Config)) -> (App, String) {
    let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
    cfg.server.header_read_timeout_secs = HEADER_TIMEOUT;
    cfg.server.body_timeout_secs = 2;
    tune(&mut cfg);
    let server = cfg.server.clone();
    let app = App::new(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = module_webhook::app::router(app.state.clone());
    tokio::spawn(async move {
        module_webhook::server::serve(listener, router, &server, std::future::pending()).await
    });
    (app, addr)
}

/// `GET /healthz` on a fresh connection: its status and how long the answer took.
async fn healthz(addr: &str) -> (u16, Duration) {
    let t = Instant::now();
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("/healthz answered");
    (res.status().as_u16(), t.elapsed())
}

/// Waits (at most `within`) for the server to close `c`: `true` if it did.
async fn closed_by_server(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error answer before closing (e.g. 408) is fine; keep reading to the end.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_sent_connections_do_not_hold_the_receiver() {
    let db = sqlite().await;
    let (_app, addr) = start(&db, |_| {}).await;
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut half = Vec::new();
    for head in [
        "POST /hooks/distribution HTTP/1.1\r\nHost: x\r\nContent-Le",
        "GET /api/v1/modules HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        half.push(c);
    }
    let (status, took) = healthz(&addr).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");

    // The half-sent requests are closed after the header timeout (never answered).
    for c in &mut half {
        assert!(
            closed_by_server(c, Duration::from_secs(HEADER_TIMEOUT + 5)).await,
            "a half-sent request stayed open {:?}",
            opened.elapsed()
        );
    }
    // So are the idle connections.
    for c in &mut idle {
        assert!(closed_by_server(c, Duration::from_secs(HEADER_TIMEOUT + 5)).await);
    }
    assert!(opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT + 8));
    let (status, took) = healthz(&addr).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_cut_off() {
    let db = sqlite().await;
    let (_app, addr) = start(&db, |_| {}).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        format!(
            "POST /hooks/distribution HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DIST_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"events\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    assert!(
        closed_by_server(&mut c, Duration::from_secs(10)).await,
        "a stalled body kept its connection open"
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_wait_and_the_probe_is_answered() {
    let db = sqlite().await;
    let (_app, addr) = start(&db, |c| c.server.max_connections = 20).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Twenty are served (and idle); the rest wait in the kernel's queue. The probe waits
    // until the idle ones are closed, not for ever.
    let (status, took) = healthz(&addr).await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(3 * HEADER_TIMEOUT + 4),
        "/healthz took {took:?}"
    );
}
