//! Bodies a registry sends are bounded (issue 25 item 7): a fake registry serves a 64 MiB
//! manifest, tag list, token answer and error body, with a `Content-Length` and chunked
//! without one. The client must stop with an error naming the cap, and the fake must have
//! been able to send only a small part of the body before the client hung up.

use powernode_module::{
    digest::Digest,
    registry::{
        Credentials, MAX_ERROR_BYTES, MAX_MANIFEST_BYTES, MAX_TAG_LIST_BYTES, MAX_TOKEN_BYTES,
        Registry, RegistryError, parse_reference,
    },
};
use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// What the fake sends: 64 MiB, far over every cap.
const HUGE: u64 = 64 << 20;
/// The most the fake may have pushed into the socket: the cap and the kernel's buffers on
/// loopback (a few MiB each side), well under the whole.
const SENT_BOUND: u64 = 24 << 20;

#[derive(Clone, Copy)]
enum Body {
    /// `Content-Length: HUGE`, then that many bytes.
    Length,
    /// `Transfer-Encoding: chunked`, no length, HUGE bytes in 64 KiB chunks.
    Chunked,
}

/// A registry whose every answer is `status` with a HUGE body; `challenge` makes `/v2/…`
/// answer 401 with a bearer challenge pointing at `/token` (which then answers HUGE).
struct Fake {
    url: String,
    sent: Arc<AtomicU64>,
}

impl Fake {
    fn start(status: u16, body: Body, challenge: bool) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let sent = Arc::new(AtomicU64::new(0));
        let (count, realm) = (sent.clone(), format!("http://{url}/token"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (count, realm) = (count.clone(), realm.clone());
                std::thread::spawn(move || {
                    stream
                        .set_write_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    if challenge && path.starts_with("/v2/") {
                        let head = format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                             realm=\"{realm}\",service=\"fake\"\r\nContent-Length: 0\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes());
                        return;
                    }
                    let framing = match body {
                        Body::Length => format!("Content-Length: {HUGE}"),
                        Body::Chunked => "Transfer-Encoding: chunked".to_owned(),
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 << 10];
                    let mut left = HUGE;
                    while left > 0 {
                        let ok = match body {
                            Body::Length => stream.write_all(&chunk),
                            Body::Chunked => stream
                                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                                .and_then(|_| stream.write_all(&chunk))
                                .and_then(|_| stream.write_all(b"\r\n")),
                        };
                        if ok.is_err() {
                            return;
                        }
                        count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        left -= chunk.len() as u64;
                    }
                    if let Body::Chunked = body {
                        let _ = stream.write_all(b"0\r\n\r\n");
                    }
                });
            }
        });
        Fake { url, sent }
    }

    fn registry(&self) -> (Registry, oci_client::Reference) {
        let r = parse_reference(&format!("{}/mods/huge:v1.0.0", self.url)).unwrap();
        (Registry::new(&r, Credentials::Anonymous, false), r)
    }

    /// Bytes the fake got into the socket, once the client has hung up and it has stopped.
    async fn sent_after_hangup(&self) -> u64 {
        let mut last = u64::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.sent.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        last
    }
}

fn assert_cap(e: &RegistryError, limit: u64, name: &str, advertised: bool) {
    let text = e.to_string();
    match e {
        RegistryError::TooLarge {
            limit: l,
            limit_name,
            advertised: a,
            ..
        } => {
            assert_eq!(*l, limit, "{text}");
            assert_eq!(*limit_name, name, "{text}");
            assert_eq!(a.is_some(), advertised, "{text}");
        }
        other => panic!("expected a TooLarge error, got {other:?}: {text}"),
    }
    assert!(
        text.contains(name) && text.contains(&limit.to_string()),
        "{text}"
    );
    assert!(
        !e.is_transient(),
        "an oversized body is not retried: {text}"
    );
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_by_its_content_length_before_reading() {
    let fake = Fake::start(200, Body::Length, false);
    let (registry, r) = fake.registry();
    let e = registry.fetch_manifest(&r).await.unwrap_err();
    assert_cap(&e, MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES", true);
    assert!(
        e.to_string().contains(&format!("advertising {HUGE} bytes")),
        "{e}"
    );
    let sent = fake.sent_after_hangup().await;
    assert!(sent < SENT_BOUND, "the fake sent {sent} bytes");
}

#[tokio::test]
async fn an_oversized_chunked_manifest_is_cut_off_at_the_cap() {
    let fake = Fake::start(200, Body::Chunked, false);
    let (registry, r) = fake.registry();
    let e = registry.fetch_manifest(&r).await.unwrap_err();
    assert_cap(&e, MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES", false);
    let sent = fake.sent_after_hangup().await;
    assert!(sent < SENT_BOUND, "the fake sent {sent} bytes");
}

#[tokio::test]
async fn an_oversized_tag_list_is_refused() {
    for body in [Body::Length, Body::Chunked] {
        let fake = Fake::start(200, body, false);
        let (registry, r) = fake.registry();
        let e = registry.list_tags(&r).await.unwrap_err();
        assert_cap(
            &e,
            MAX_TAG_LIST_BYTES,
            "MAX_TAG_LIST_BYTES",
            matches!(body, Body::Length),
        );
        let sent = fake.sent_after_hangup().await;
        assert!(sent < SENT_BOUND, "the fake sent {sent} bytes");
    }
}

#[tokio::test]
async fn an_oversized_token_answer_is_refused() {
    let fake = Fake::start(200, Body::Chunked, true);
    let (registry, r) = fake.registry();
    let e = registry.fetch_manifest(&r).await.unwrap_err();
    assert_cap(&e, MAX_TOKEN_BYTES, "MAX_TOKEN_BYTES", false);
    let sent = fake.sent_after_hangup().await;
    assert!(sent < SENT_BOUND, "the fake sent {sent} bytes");
}

#[tokio::test]
async fn a_huge_error_body_is_read_only_in_part() {
    // A 404 for a blob and a 500 for a manifest, each with 64 MiB of "explanation".
    let fake = Fake::start(404, Body::Chunked, false);
    let (registry, r) = fake.registry();
    let mut sink = Vec::new();
    let e = registry
        .pull_blob_into(&r, &Digest::of(b"x"), 1 << 30, &mut sink)
        .await
        .unwrap_err();
    match &e {
        RegistryError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, 404);
            assert!(message.len() as u64 <= MAX_ERROR_BYTES, "{}", message.len());
        }
        other => panic!("expected a Status error, got {other:?}"),
    }
    assert!(fake.sent_after_hangup().await < SENT_BOUND);

    let fake = Fake::start(500, Body::Length, false);
    let (registry, r) = fake.registry();
    let e = registry.fetch_manifest(&r).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Status { status: 500, .. }),
        "{e:?}"
    );
    // Retried (a 5xx is transient), each attempt reading at most MAX_ERROR_BYTES.
    assert!(fake.sent_after_hangup().await < SENT_BOUND);
}

#[tokio::test]
async fn an_oversized_blob_is_refused_by_its_content_length() {
    let fake = Fake::start(200, Body::Length, false);
    let (registry, r) = fake.registry();
    let mut sink = Vec::new();
    let e = registry
        .pull_blob_into(&r, &Digest::of(b"x"), 1 << 20, &mut sink)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("1048576 bytes allowed"), "{e}");
    assert!(sink.is_empty());
    assert!(fake.sent_after_hangup().await < SENT_BOUND);
}
