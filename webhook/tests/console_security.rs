//! The web console's defences, from a plain HTTP client: the session cookie's flags, no
//! token in any page or redirect, CSRF tokens, foreign origins refused, the read role only
//! looks, stored HTML is escaped wherever it is shown, and a logout ends the session on the
//! server. Once per store: SQLite and PostgreSQL.

mod common;
#[path = "console/lab.rs"]
#[allow(dead_code)]
mod lab;

use common::*;
use lab::{Client, state_of};
use module_webhook::store::{AuditAction, Lifecycle, NewAudit, VersionRow, Via, now_ms};
use rstest::rstest;
use serde_json::json;

const XSS_DESCRIPTION: &str = r#"<script>alert("description")</script>"#;
const XSS_AUTHOR: &str = "gitea:<img src=x onerror=alert(1)>";
const XSS_REASON: &str = r#"<script>alert("yank")</script>"#;
const XSS_TEMPLATE: &str = r#"<b onmouseover="alert(1)">edge</b>"#;

async fn receiver(db: &TestDb) -> Running {
    serve(config(&db.url, "127.0.0.1:1", vec![])).await
}

/// A `draft` of module `evil` whose manifest's description is HTML, with an audit row by a
/// comment author whose name is HTML.
async fn plant(r: &Running) -> String {
    let store = &r.app.state.store;
    let manifest = std::fs::read_to_string(
        powernode_testkit::example("system-base").join("manifest.yaml"),
    )
    .unwrap()
    .replace("name: system-base", "name: evil")
    .replace(
        "description: Base OS identity, mounts, locale, shell profile and journald/apt defaults",
        &format!("description: '{XSS_DESCRIPTION}'"),
    );
    assert!(
        powernode_module::manifest::parse(&manifest)
            .manifest
            .is_some(),
        "the planted manifest parses"
    );
    let id = "v-evil-1.0.0".to_owned();
    let v = VersionRow {
        id: id.clone().into(),
        module: "evil".parse().unwrap(),
        version: "1.0.0".parse().unwrap(),
        lifecycle: Lifecycle::Draft,
        repository: "acct/modules/evil-module".into(),
        tag: "v1.0.0".into(),
        manifest_digest: format!("sha256:{}", "ef".repeat(32)).parse().unwrap(),
        artifact_digest: None,
        composefs_digest: None,
        composefs_format: Some(1),
        source_repository: None,
        source_commit: Some("0123abcd".into()),
        signer_identity: Some("<i>signer</i>".into()),
        signer_issuer: None,
        file_index: None,
        manifest: Some(manifest),
        reject_reason: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    };
    let audit = |actor: &str, action| NewAudit {
        version_id: Some(id.clone().into()),
        template_id: None,
        module: Some("evil".into()),
        actor: actor.into(),
        via: Via::Comment,
        action,
        from_state: None,
        to_state: Some(Lifecycle::Draft),
        reason: Some(format!("asked by {XSS_AUTHOR}")),
        evidence: json!({"approvals": [{"user": XSS_AUTHOR, "review_id": 1}]}),
    };
    assert!(
        store
            .write_version(&v, &audit("test", AuditAction::Ingested))
            .await
            .unwrap()
    );
    store
        .audit(&audit(XSS_AUTHOR, AuditAction::Refused))
        .await
        .unwrap();
    id
}

/// Every page of the console with `id`'s version.
fn pages(id: &str) -> Vec<String> {
    [
        "/",
        "/modules/evil",
        "/templates",
        "/templates/edge",
        "/fleet",
        "/instances/node-1",
        "/modules/evil/adoption.svg",
        "/fleet/drift.svg",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain([format!("/versions/{id}")])
    .collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_strict_and_http_only_and_no_token_shows(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = receiver(&db).await;
    let id = plant(&r).await;
    let (s, v) = r.fleet().create_template("edge", "x").await;
    assert_eq!(s, 201, "{v}");
    r.fleet().register("node-1", "edge").await;
    let mut c = Client::new(&r.url);

    let (s, to, _) = c.get("/fleet").await;
    assert_eq!(
        (s, to.as_str()),
        (303, "/login?next=%2Ffleet"),
        "{}",
        db.name
    );
    let (s, _, body) = c.post("/login", &[("token", "not-a-token")], &[]).await;
    assert_eq!(s, 401, "{}", db.name);
    assert!(body.contains("not one this receiver knows"));

    let set = c.login(READ_TOKEN).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{}: {set}", db.name);
    }
    assert!(
        !set.contains("Secure") && !set.contains(READ_TOKEN),
        "{set}"
    );
    let (_, _, _) = c.get("/").await;
    for p in pages(&id) {
        let (s, to, body) = c.get(&p).await;
        assert_eq!(s, 200, "{}: {p}: {body}", db.name);
        for t in [READ_TOKEN, OPS_TOKEN] {
            assert!(!body.contains(t) && !to.contains(t), "{p}: the token shows");
        }
    }
    // Behind a TLS proxy the cookie is Secure.
    let res = c
        .http
        .post(format!("{}/login", r.url))
        .header("x-forwarded-proto", "https")
        .header("content-type", lab::FORM)
        .body(format!("token={READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn forms_need_the_csrf_token_the_own_origin_and_the_operator_role(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = receiver(&db).await;
    let id = plant(&r).await;
    let page = format!("/versions/{id}");
    let promote = format!("{page}/promote");

    let mut reader = Client::new(&r.url);
    reader.login(READ_TOKEN).await;
    let (_, _, body) = reader.get(&page).await;
    assert!(!body.contains("Promote to"), "no form for the read role");
    let csrf = reader.csrf(&page).await;
    let (s, _, body) = reader
        .post(&promote, &[("csrf", &csrf), ("to", "staging")], &[])
        .await;
    assert_eq!(s, 403, "{}: the read role acts: {body}", db.name);
    assert!(body.contains("read role"), "{body}");

    let mut ops = Client::new(&r.url);
    ops.login(OPS_TOKEN).await;
    let csrf = ops.csrf(&page).await;
    let form = [("csrf", csrf.as_str()), ("to", "staging")];
    for (what, form, headers) in [
        ("no CSRF token", &[("to", "staging")][..], &[][..]),
        (
            "another CSRF token",
            &[("csrf", "forged"), ("to", "staging")][..],
            &[][..],
        ),
        (
            "a foreign Origin",
            &form[..],
            &[("origin", "http://evil.example")][..],
        ),
        ("a null Origin", &form[..], &[("origin", "null")][..]),
        (
            "a cross-site fetch",
            &form[..],
            &[("sec-fetch-site", "cross-site")][..],
        ),
    ] {
        let (s, _, _) = ops.post(&promote, form, headers).await;
        assert_eq!(s, 403, "{}: {what} is refused", db.name);
        assert_eq!(state_of(&r, &id).await, "draft", "{what}");
    }
    // A foreign origin cannot log in either.
    let (s, _, _) = Client::new(&r.url)
        .post(
            "/login",
            &[("token", OPS_TOKEN)],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(s, 403);

    let own = r.url.clone();
    let (s, to, _) = ops.post(&promote, &form, &[("origin", &own)]).await;
    assert_eq!((s, to.as_str()), (303, format!("{page}#timeline").as_str()));
    assert_eq!(state_of(&r, &id).await, "staging", "{}", db.name);
    let (_, audit) = r
        .get(&format!("/api/v1/versions/{id}/audit"), Some(READ_TOKEN))
        .await;
    let last = audit["audit"].as_array().unwrap().last().unwrap();
    assert_eq!(last["via"], "web", "{last}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn html_in_stored_data_is_shown_as_text(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = receiver(&db).await;
    let id = plant(&r).await;
    let (s, v) = r
        .fleet()
        .create_described_template("edge", "x", XSS_TEMPLATE)
        .await;
    assert_eq!(s, 201, "{v}");
    let page = format!("/versions/{id}");
    let mut ops = Client::new(&r.url);
    ops.login(OPS_TOKEN).await;
    let csrf = ops.csrf(&page).await;
    let (s, _, body) = ops
        .post(
            &format!("{page}/yank"),
            &[("csrf", &csrf), ("reason", XSS_REASON)],
            &[],
        )
        .await;
    assert_eq!(s, 303, "{}: {body}", db.name);
    assert_eq!(state_of(&r, &id).await, "yanked");

    for p in [page.as_str(), "/", "/templates", "/templates/edge"] {
        let (s, _, body) = ops.get(p).await;
        assert_eq!(s, 200, "{p}");
        for raw in [
            XSS_DESCRIPTION,
            XSS_AUTHOR,
            XSS_REASON,
            XSS_TEMPLATE,
            "<i>signer</i>",
        ] {
            assert!(
                !body.contains(raw),
                "{}: {p} shows {raw:?} as HTML",
                db.name
            );
        }
    }
    // askama writes `<` as `&#60;` and `>` as `&#62;`.
    let (_, _, body) = ops.get(&page).await;
    for escaped in [
        "&#60;script&#62;alert(",
        "&#60;img src=x onerror=alert(1)&#62;",
    ] {
        assert!(body.contains(escaped), "{}: {escaped} missing", db.name);
    }
    let (_, _, body) = ops.get("/templates").await;
    assert!(body.contains("&#60;b onmouseover="), "{body}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_ends_the_session_on_the_server(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let r = receiver(&db).await;
    let mut c = Client::new(&r.url);
    c.login(OPS_TOKEN).await;
    let csrf = c.csrf("/").await;
    let (s, _, _) = c.post("/logout", &[], &[]).await;
    assert_eq!(
        s, 403,
        "{}: a logout needs the session's CSRF token",
        db.name
    );
    let kept = c.cookie.clone();
    let (s, to, _) = c.post("/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!((s, to.as_str()), (303, "/login"));
    // The old cookie, replayed, opens nothing.
    c.cookie = kept;
    let (s, to, _) = c.get("/").await;
    assert_eq!((s, to.as_str()), (303, "/login?next=%2F"), "{}", db.name);
}
