//! The scene the console's tests play on: a receiver (manual clock) with a real registry,
//! `system-base` released for real in three versions, a template serving it, three
//! instances that report (one in sync, one outdated then failed, one never), fleet samples
//! taken as time moves on, and a `my-redis` version waiting in `staging` whose next stage
//! needs an approval. Verbs for a browser-less client too: log in, read a page, post a form.

use super::common::{fleet::*, release::*, *};
use module_webhook::{
    config::PromotionOverride,
    store::{Clock, Lifecycle, PromotionRequest, RequestId, RequestState, Via},
};
use powernode_module::lifecycle::{Actor, StagePolicy};
use powernode_testkit::registry::TestRegistry;
use serde_json::json;
use std::time::Duration;

pub const TEMPLATE: &str = "edge";
/// my-redis 2.0.0: in `staging`, with a source commit; `blessed` needs one approval.
pub const WAITING: &str = "v-my-redis-2.0.0";
/// system-base 1.2.0: a `draft` the browser promotes.
pub const DRAFT: &str = "v-system-base-1.2.0";

pub struct Lab {
    pub r: Running,
    pub clock: Clock,
    pub _reg: TestRegistry,
    pub _keys: Keys,
    pub _src: tempfile::TempDir,
    pub _db: TestDb,
}

/// Releases system-base at `version` with its release file saying so (so every version has
/// a content, and a composefs digest, of its own).
async fn release(l: &Lab, version: &str, live: bool) -> String {
    let file = l._src.path().join("rootfs/etc/powernode-release");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!("# {version}\n"));
    std::fs::write(&file, text).unwrap();
    let (r, reg, k, dir) = (&l.r, &l._reg, &l._keys, l._src.path());
    if live {
        release_live(r, reg, k, dir, "system-base", version).await
    } else {
        release_draft(r, reg, k, dir, "system-base", version).await
    }
}

async fn report_failed(r: &Running, instance: &str, token: &str, state_id: &str) {
    let (s, v) = r
        .fleet()
        .report(
            instance,
            token,
            json!({"desired_state_id": state_id, "running_module_digests": {}, "status": "failed",
               "message": "apt-get install systemd-sysv: dpkg was interrupted"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

pub async fn lab(db: TestDb) -> Lab {
    let reg = TestRegistry::start();
    let keys = keys();
    let policies = vec![key_policy(
        "system-base",
        &repo("system-base"),
        keys.public.clone(),
    )];
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    cfg.promotion.overrides = vec![PromotionOverride {
        module: Some("my-redis".into()),
        category: None,
        stage: Lifecycle::Blessed,
        policy: StagePolicy {
            min_approvals: 1,
            ..StagePolicy::default()
        },
    }];
    let clock = Clock::manual();
    let r = serve_with_clock(cfg, clock.clone()).await;
    let l = Lab {
        r,
        clock,
        _reg: reg,
        _keys: keys,
        _src: module("system-base"),
        _db: db,
    };
    let sample = || async {
        module_webhook::web::sampler::sample(&l.r.app.state)
            .await
            .unwrap()
    };
    let ten_minutes = || l.clock.advance(Duration::from_secs(600));

    release(&l, "1.0.0", true).await;
    template_with(&l.r, TEMPLATE, &["system-base"]).await;
    let t1 = register(&l.r, "node-1", TEMPLATE).await;
    let t2 = register(&l.r, "node-2", TEMPLATE).await;
    register(&l.r, "node-3", TEMPLATE).await;
    let (first, first_doc) = signed_state_of(&l.r, "node-1", &t1).await;
    report_signed_state(&l.r, "node-1", &t1, &first, &first_doc).await;
    report_signed_state(&l.r, "node-2", &t2, &first, &first_doc).await;
    sample().await;

    ten_minutes();
    release(&l, "1.1.0", true).await;
    let (second, second_doc) = signed_state_of(&l.r, "node-1", &t1).await;
    assert_ne!(first, second, "1.1.0 going live changes the state");
    report_signed_state(&l.r, "node-1", &t1, &second, &second_doc).await;
    report_signed_state(&l.r, "node-2", &t2, &first, &first_doc).await;
    sample().await;

    ten_minutes();
    report_signed_state(&l.r, "node-1", &t1, &second, &second_doc).await;
    report_failed(&l.r, "node-2", &t2, &second).await;
    release(&l, "1.2.0", false).await;
    let waiting = published(&l.r, "2.0.0", Lifecycle::Staging, "ab", "4c1f8e2b9a7d").await;
    assert_eq!(waiting, WAITING);
    // Alice asked for it in a PR comment; it waits for a review (as the engine records it
    // when Gitea is configured).
    let now = l.clock.now_ms();
    let asked = PromotionRequest {
        id: RequestId::for_comment("acme/my-redis-module", 7, 0),
        version_id: WAITING.to_owned().into(),
        to_state: Lifecycle::Blessed,
        digest: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
        requester: Actor::Gitea("alice".into()),
        via: Via::Comment,
        repository: Some("acme/my-redis-module".into()),
        pr_number: Some(7),
        state: RequestState::Pending,
        missing: json!([{"kind": "approvals", "need": 1, "have": 0}]),
        reason: None,
        created_at: now,
        expires_at: now + 7 * 86_400_000,
    };
    assert!(l.r.app.state.store.insert_request(&asked).await.unwrap());
    sample().await;
    l
}

pub const FORM: &str = "application/x-www-form-urlencoded";

/// A browser-less client of the console: no redirects followed, cookies kept by hand.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    /// Logs in with `token`; returns the `Set-Cookie` header.
    pub async fn login(&mut self, token: &str) -> String {
        let res = self
            .http
            .post(format!("{}/login", self.base))
            .header("content-type", FORM)
            .body(serde_urlencoded::to_string([("token", token), ("next", "/")]).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "logging in");
        let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        let pair = set.split(';').next().unwrap().to_owned();
        self.cookie = Some(pair);
        set
    }

    /// `GET path`: status, `Location`, body.
    pub async fn get(&self, path: &str) -> (u16, String, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        answer(req.send().await.unwrap()).await
    }

    /// Posts a form to `path` with `headers`: status, `Location`, body.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", FORM)
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await.unwrap()).await
    }

    /// The CSRF token of the forms of `path`.
    pub async fn csrf(&self, path: &str) -> String {
        let (s, _, body) = self.get(path).await;
        assert_eq!(s, 200, "{path}: {body}");
        let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
        re.captures(&body).expect("a form with a CSRF token")[1].to_owned()
    }
}

async fn answer(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, res.text().await.unwrap())
}

/// The version's lifecycle state, from the API.
pub async fn state_of(r: &Running, id: &str) -> String {
    let (s, v) = r
        .get(&format!("/api/v1/versions/{id}"), Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    v["lifecycle"].as_str().unwrap().to_owned()
}
