//! The web console in a real browser (Debian's Chromium, headless, over WebDriver) against a
//! live receiver with a real registry and modules ingested for real: log in, walk every
//! page, promote a version through its form and find the audit row, ask for a promotion that
//! lacks an approval and read what is missing, log out. No page logs a console error, and no
//! URL carries the token.
//!
//! With `CONSOLE_SCREENSHOTS=DIR` (`docs/console` for the README), a PNG of every page is
//! written there.

mod common;
#[path = "console/lab.rs"]
#[allow(dead_code)]
mod lab;

use common::*;
use lab::*;
use powernode_testkit::browser::{Browser, fantoccini::Locator};
use rstest::rstest;

struct Walk<'a> {
    b: &'a Browser,
    base: String,
    shots: Option<std::path::PathBuf>,
}

impl Walk<'_> {
    /// Opens `path`, checks its heading, that nothing went to the console and that the URL
    /// has no token; takes its screenshot as `name`.
    async fn visit(&self, path: &str, heading: &str, name: &str) -> String {
        self.b
            .client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
        self.check(heading, name).await
    }

    /// Checks the page the browser shows now (see [`Walk::visit`]); returns its source.
    async fn check(&self, heading: &str, name: &str) -> String {
        let c = &self.b.client;
        let h1 = c
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !h1.contains(heading) {
            let main = c.find(Locator::Css("main")).await.unwrap();
            let text = main.text().await.unwrap();
            panic!("{name}: the heading is {h1:?}: {text}");
        }
        let url = c.current_url().await.unwrap().to_string();
        for t in [READ_TOKEN, OPS_TOKEN] {
            assert!(!url.contains(t), "{name}: the token is in the URL {url}");
        }
        let errors = self.b.console_errors().await;
        assert!(errors.is_empty(), "{name}: console errors {errors:?}");
        if let Some(dir) = &self.shots
            && !matches!(name, "logged-out" | "login-again")
        {
            self.b.screenshot(&dir.join(format!("{name}.png"))).await;
        }
        let html = c.source().await.unwrap();
        for t in [READ_TOKEN, OPS_TOKEN] {
            assert!(!html.contains(t), "{name}: the token is in the page");
        }
        html
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.b.client.find(Locator::Css(css)).await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks what `css` finds, a button of a form: waits for the page the post leads to.
    async fn click(&self, css: &str) {
        let c = &self.b.client;
        let before = c.current_url().await.unwrap();
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while c.current_url().await.unwrap() == before {
            assert!(std::time::Instant::now() < deadline, "{css}: no page came");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_walks_the_console_in_a_browser(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let store = db.name;
    let l = lab(db).await;
    let b = Browser::start().await;
    let shots = std::env::var_os("CONSOLE_SCREENSHOTS")
        .filter(|_| store == "sqlite")
        .map(|d| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(d)
        });
    let w = Walk {
        b: &b,
        base: l.r.url.clone(),
        shots,
    };

    // Not logged in: the login page, which comes back to the page asked for.
    w.visit("/fleet", "module-webhook", "login").await;
    w.fill("#token", OPS_TOKEN).await;
    w.click("button[type=submit]").await;
    let html = w.check("Fleet", "fleet").await;
    assert!(
        html.contains("never reported") && html.contains("failed"),
        "{store}"
    );
    assert!(
        html.contains("/fleet/drift.svg"),
        "{store}: the drift chart"
    );
    let cookie = b.client.get_named_cookie("pn_console").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "{store}");
    assert_eq!(
        format!("{:?}", cookie.same_site()),
        "Some(Strict)",
        "{store}"
    );

    let html = w.visit("/", "Modules", "modules").await;
    assert!(
        html.contains("system-base") && html.contains("my-redis"),
        "{store}"
    );
    assert!(html.contains("Pending promotion requests"), "{store}");
    let html = w
        .visit("/modules/system-base", "system-base", "module")
        .await;
    assert!(
        html.contains("adoption.svg") && html.contains("1.1.0"),
        "{store}"
    );
    let html = w.visit("/templates", "Templates", "templates").await;
    assert!(html.contains(TEMPLATE), "{store}");
    let html = w
        .visit(&format!("/templates/{TEMPLATE}"), TEMPLATE, "template")
        .await;
    assert!(
        html.contains("Modules in composition order") && html.contains("Merged composefs"),
        "{store}"
    );
    let html = w.visit("/instances/node-2", "node-2", "instance").await;
    assert!(
        html.contains("dpkg was interrupted"),
        "{store}: the last report"
    );
    w.visit("/fleet?state=outdated", "Fleet", "fleet-outdated")
        .await;
    w.visit("/versions/v-system-base-1.1.0", "1.1.0", "version-live")
        .await;

    // Promote the draft through its form: back on the version page, its timeline has
    // the transition, made via the web by the operator's token.
    let html = w
        .visit(&format!("/versions/{DRAFT}"), "1.2.0", "version")
        .await;
    assert!(html.contains("Promote to staging"), "{store}");
    w.click("form[action$='/promote'] button").await;
    let html = w.check("1.2.0", "version-promoted").await;
    assert!(html.contains(">staging<"), "{store}: {html}");
    let (s, audit) =
        l.r.get(&format!("/api/v1/versions/{DRAFT}/audit"), Some(READ_TOKEN))
            .await;
    assert_eq!(s, 200);
    let last = audit["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["action"].as_str(),
            last["via"].as_str(),
            last["actor"].as_str()
        ),
        (Some("transition"), Some("web"), Some("api:ops")),
        "{store}: {last}"
    );
    assert_eq!(state_of(&l.r, DRAFT).await, "staging");

    // A promotion that lacks an approval: it waits, and the page says what for.
    w.visit(&format!("/versions/{WAITING}"), "2.0.0", "version-waiting")
        .await;
    w.fill("#note", "release train 12").await;
    w.click("form[action$='/promote'] button").await;
    let html = w.check("Waiting", "refused").await;
    assert!(
        html.contains("0 of 1 required approvals"),
        "{store}: {html}"
    );
    assert_eq!(state_of(&l.r, WAITING).await, "staging", "{store}");
    let html = w
        .visit(&format!("/versions/{WAITING}"), "2.0.0", "version-pending")
        .await;
    assert!(
        html.contains("0 of 1 required approvals") && html.contains("release train 12"),
        "{store}: the timeline has the pending request with its note"
    );

    // Log out: the session is gone; its pages lead to the login again.
    w.click("header form button").await;
    w.check("module-webhook", "logged-out").await;
    w.visit("/fleet", "module-webhook", "login-again").await;
    drop(w);
    drop(b);
}
