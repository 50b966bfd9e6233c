//! The registry reads' own authentication (`core/src/registry/read.rs`): the distribution
//! token flow (a `401` with a `Bearer` challenge → a token from the realm, asked for with
//! the credentials, cached), and `Basic` challenges.

use powernode_module::registry::{Credentials, Registry, parse_reference};
use powernode_testkit::http::{Response, Server};
use std::sync::{Arc, OnceLock};

const MANIFEST: &str = r#"{"schemaVersion":2}"#;

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: password.into(),
        source: "test".into(),
    }
}

#[tokio::test]
async fn bearer_challenge_gets_a_token_with_the_credentials_and_caches_it() {
    let url = Arc::new(OnceLock::<String>::new());
    let realm = url.clone();
    let server = Server::start(move |req| {
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        if req.path.starts_with("/token?") {
            // "alice:s3cret"
            assert_eq!(auth, "Basic YWxpY2U6czNjcmV0");
            assert!(
                req.path.contains("scope=repository%3Amods%2Fx%3Apull"),
                "{}",
                req.path
            );
            assert!(req.path.contains("service=fake"), "{}", req.path);
            return Response::json(200, &serde_json::json!({"token": "T1", "expires_in": 300}));
        }
        if auth != "Bearer T1" {
            let challenge = format!(
                r#"Bearer realm="{}/token",service="fake",scope="repository:mods/x:pull""#,
                realm.get().unwrap()
            );
            return Response::text(401, "").with_header("WWW-Authenticate", &challenge);
        }
        Response::text(200, MANIFEST)
    });
    url.set(server.url.clone()).unwrap();
    let host = server.url.trim_start_matches("http://");
    let r = parse_reference(&format!("{host}/mods/x:v1.0.0")).unwrap();
    let registry = Registry::new(&r, basic("alice", "s3cret"), false);
    for _ in 0..2 {
        let (bytes, _) = registry.fetch_manifest(&r).await.unwrap().unwrap();
        assert_eq!(bytes, MANIFEST.as_bytes());
    }
    let tokens = server
        .requests()
        .iter()
        .filter(|q| q.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1, "the token is cached");
}

#[tokio::test]
async fn basic_challenge_gets_the_credentials_and_anonymous_gets_refused() {
    let server = Server::start(|req| match req.header("authorization") {
        Some("Basic YWxpY2U6czNjcmV0") => Response::text(200, MANIFEST),
        _ => Response::text(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
            .with_header("WWW-Authenticate", r#"Basic realm="registry""#),
    });
    let host = server.url.trim_start_matches("http://");
    let r = parse_reference(&format!("{host}/mods/x:v1.0.0")).unwrap();
    let registry = Registry::new(&r, basic("alice", "s3cret"), false);
    let (bytes, _) = registry.fetch_manifest(&r).await.unwrap().unwrap();
    assert_eq!(bytes, MANIFEST.as_bytes());

    let anonymous = Registry::new(&r, Credentials::Anonymous, false);
    let e = anonymous.fetch_manifest(&r).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 401"), "{e}");
    assert!(!e.is_transient());
}
