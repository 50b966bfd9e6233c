//! [`TestApp`]: a receiver and its pull request, driven with the promotion domain's verbs (as
//! rust-lang/bors' `BorsTester`), so a test reads as the story it checks — a draft is pushed,
//! bob comments `/promote`, carol approves, the bot replies — and not as the JSON, HMACs and
//! store calls that tell it. Everything goes through the real router and the real Gitea client;
//! the store is read only to see where things stand.

use super::{
    Backend, OPS_TOKEN, Running, TestDb, config, data, headers, promotion::*, published_module_in,
    serve_with_clock,
};
use module_webhook::{
    config::Config,
    promotion::Engine,
    store::{AuditRow, Clock, JobRow, Lifecycle, PromotionRequest, RequestId, Store, VersionId},
};
use powernode_testkit::gitea::{FakeGitea, Fault, review, review_at};
use serde_json::{Value, json};
use std::sync::{
    Mutex,
    atomic::{AtomicI64, Ordering},
};

/// The byte a draft's manifest digest repeats (`sha256:cdcd…`).
pub const DRAFT_DIGEST_BYTE: &str = "cd";

/// The pull request every comment and review of a [`TestApp`] is on (the fixtures').
pub const PR: i64 = 7;

/// How a [`TestApp`] is set up: which store, whether Gitea is there, which clock, and the
/// configuration changes the test needs.
pub struct TestAppBuilder {
    backend: Backend,
    gitea: bool,
    clock: Clock,
    tweaks: Vec<Tweak>,
}

/// A change to the configuration a test makes before the receiver starts.
type Tweak = Box<dyn FnOnce(&mut Config)>;

impl TestAppBuilder {
    /// No Gitea and no module policy: promotion through the API alone, by the default policy
    /// (approvals can never be found, so a stage needing one stays pending).
    pub fn api_only(mut self) -> Self {
        self.gitea = false;
        self
    }

    /// Goes by `clock` (a manual one moves only when the test says).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Changes the configuration before the receiver starts (applied in order).
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Starts the receiver (and Gitea) on a fresh database.
    pub async fn start(self) -> TestApp {
        let db = self.backend.db().await;
        let tweak = |c: &mut Config| self.tweaks.into_iter().for_each(|t| t(c));
        let (r, gitea, db) = if self.gitea {
            let e = env_with_clock(db, self.clock, tweak).await;
            (e.r, Some(e.gitea), e._db)
        } else {
            let mut cfg = config(&db.url, "127.0.0.1:1", vec![]);
            tweak(&mut cfg);
            (serve_with_clock(cfg, self.clock).await, None, db)
        };
        TestApp {
            r,
            gitea,
            _db: db,
            next_comment: AtomicI64::new(1),
            next_review: AtomicI64::new(11),
            next_delivery: AtomicI64::new(1),
            last_comment: Mutex::new(None),
        }
    }
}

/// A receiver on a fresh database (dropped with it), with my-redis's pull request
/// [`PR`] in [`GITEA_REPO`] on a fake Gitea where alice, bob, carol and dave may write and
/// `reader` may only read.
pub struct TestApp {
    r: Running,
    gitea: Option<FakeGitea>,
    _db: TestDb,
    /// Ids for new comments and reviews, and for review deliveries: each is Gitea's own id,
    /// unique per forge, so a test never has to number them.
    next_comment: AtomicI64,
    next_review: AtomicI64,
    next_delivery: AtomicI64,
    /// The last new comment (id, user, text), for a re-delivery.
    last_comment: Mutex<Option<(i64, String, String)>>,
}

impl TestApp {
    /// A receiver with Gitea (call [`TestAppBuilder::start`]).
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            gitea: true,
            clock: Clock::system(),
            tweaks: Vec::new(),
        }
    }

    /// A receiver with Gitea and the default configuration.
    pub async fn start(backend: Backend) -> TestApp {
        Self::builder(backend).start().await
    }

    // --- Versions ---------------------------------------------------------------------------

    /// my-redis `version`, ingested as a draft built from [`HEAD`] (the pull request's head).
    pub async fn draft(&self, version: &str) -> VersionId {
        self.draft_of("my-redis", "acct/modules/my-redis-module", version)
            .await
    }

    /// As [`TestApp::draft`], for another module promoted from the same pull request.
    pub async fn draft_of(&self, module: &str, repository: &str, version: &str) -> VersionId {
        published_module_in(
            self.store(),
            module,
            repository,
            version,
            Lifecycle::Draft,
            DRAFT_DIGEST_BYTE,
            Some(HEAD),
        )
        .await
    }

    /// my-redis `version` as a draft whose source commit is unknown (nothing to approve).
    pub async fn draft_without_commit(&self, version: &str) -> VersionId {
        published_module_in(
            self.store(),
            "my-redis",
            "acct/modules/my-redis-module",
            version,
            Lifecycle::Draft,
            DRAFT_DIGEST_BYTE,
            None,
        )
        .await
    }

    /// Where `version` stands.
    pub async fn state(&self, version: &VersionId) -> Lifecycle {
        self.store()
            .version_by_id(version)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no version {version}"))
            .lifecycle
    }

    /// `version`'s audit trail, oldest first.
    pub async fn audit(&self, version: &VersionId) -> Vec<AuditRow> {
        self.store().audit_of(version).await.unwrap()
    }

    /// How many transitions `version`'s audit trail records (each change of state is one).
    pub async fn transitions(&self, version: &VersionId) -> usize {
        self.audit(version)
            .await
            .iter()
            .filter(|a| a.action == "transition")
            .count()
    }

    /// `version`'s audit trail as the API answers it (`GET /versions/{id}/audit`), read with
    /// `token`.
    pub async fn audit_via_api(&self, version: &VersionId, token: &str) -> Value {
        let (s, v) = self
            .r
            .get(&format!("/api/v1/versions/{version}/audit"), Some(token))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// The promotion request `id`.
    pub async fn request(&self, id: &RequestId) -> PromotionRequest {
        self.store()
            .request_by_id(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no request {id}"))
    }

    /// Promotion requests still waiting for their requirements.
    pub async fn pending_requests(&self) -> Vec<PromotionRequest> {
        self.store().pending_requests(None).await.unwrap()
    }

    // --- The API ----------------------------------------------------------------------------

    /// Asks the API, as the operator, to promote `version` to `stage`: the status and body.
    pub async fn promote(&self, version: &VersionId, stage: Lifecycle) -> (u16, Value) {
        self.promote_as(OPS_TOKEN, version, stage).await
    }

    /// As [`TestApp::promote`], with the bearer `token`.
    pub async fn promote_as(
        &self,
        token: &str,
        version: &VersionId,
        stage: Lifecycle,
    ) -> (u16, Value) {
        self.api(
            token,
            &format!("/versions/{version}/promote"),
            json!({"to": stage.as_str()}),
        )
        .await
    }

    /// As [`TestApp::promote`], giving the operator's `reason`.
    pub async fn promote_because(
        &self,
        version: &VersionId,
        stage: Lifecycle,
        reason: &str,
    ) -> (u16, Value) {
        self.api(
            OPS_TOKEN,
            &format!("/versions/{version}/promote"),
            json!({"to": stage.as_str(), "reason": reason}),
        )
        .await
    }

    /// Asks the API, as the operator, to yank `version` for `reason`.
    pub async fn yank(&self, version: &VersionId, reason: &str) -> (u16, Value) {
        self.api(
            OPS_TOKEN,
            &format!("/versions/{version}/yank"),
            json!({"reason": reason}),
        )
        .await
    }

    /// `n` operators ask the API at the same moment to promote `version` to `stage`: the
    /// statuses, in no particular order.
    pub async fn promote_concurrently(
        &self,
        n: usize,
        version: &VersionId,
        stage: Lifecycle,
    ) -> Vec<u16> {
        let url = format!("{}/api/v1/versions/{version}/promote", self.r.url);
        let asks: Vec<_> = (0..n)
            .map(|_| {
                let ask = self
                    .r
                    .http
                    .post(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"to": stage.as_str()}));
                tokio::spawn(async move { ask.send().await.unwrap().status().as_u16() })
            })
            .collect();
        let mut codes = Vec::new();
        for a in asks {
            codes.push(a.await.unwrap());
        }
        codes
    }

    async fn api(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        super::fleet::post(&self.r, path, token, body).await
    }

    // --- The pull request -------------------------------------------------------------------

    /// `user` comments `text` on the pull request; the receiver's answer to the webhook (202
    /// queued, 200 a delivery already seen) once the queue has run.
    pub async fn comment(&self, user: &str, text: &str) -> u16 {
        let s = self.post_comment(user, text).await;
        self.step_worker().await;
        s
    }

    /// As [`TestApp::comment`], leaving the job queued (the test steps the worker itself).
    pub async fn post_comment(&self, user: &str, text: &str) -> u16 {
        let id = self.next_comment.fetch_add(1, Ordering::Relaxed);
        *self.last_comment.lock().unwrap() = Some((id, user.into(), text.into()));
        self.deliver_comment(id, user, text, "created").await
    }

    /// Gitea delivers the last comment's webhook again (same delivery, same body): the
    /// answer, once the queue has run.
    pub async fn redeliver_last_comment(&self) -> u16 {
        let (id, user, text) = self
            .last_comment
            .lock()
            .unwrap()
            .clone()
            .expect("no comment to deliver again");
        let s = self.deliver_comment(id, &user, &text, "created").await;
        self.step_worker().await;
        s
    }

    /// `user` edits a comment to say `text` (commands are read from new comments only).
    pub async fn edit_comment(&self, user: &str, text: &str) -> u16 {
        let id = self.next_comment.fetch_add(1, Ordering::Relaxed);
        let s = self.deliver_comment(id, user, text, "edited").await;
        self.step_worker().await;
        s
    }

    /// As [`TestApp::comment`], on a pull request of another repository (`owner/name`).
    pub async fn comment_in(&self, repository: &str, user: &str, text: &str) -> u16 {
        let id = self.next_comment.fetch_add(1, Ordering::Relaxed);
        let (body, h) = comment_request(repository, id, user, text, "created");
        let s = self.r.post("/hooks/gitea", body, &h).await.0;
        self.step_worker().await;
        s
    }

    async fn deliver_comment(&self, id: i64, user: &str, text: &str, action: &str) -> u16 {
        let (body, h) = comment_request(GITEA_REPO, id, user, text, action);
        self.r.post("/hooks/gitea", body, &h).await.0
    }

    /// `user` approves the pull request at [`HEAD`], and Gitea sends the review webhook; the
    /// review's id, once the queue has run.
    pub async fn approve(&self, user: &str) -> i64 {
        let id = self.add_review(user, "APPROVED");
        self.review_event().await;
        id
    }

    /// A review by `user` in `state` (`APPROVED`, `REQUEST_CHANGES`) at [`HEAD`] that Gitea
    /// has recorded but not (yet) sent a webhook for. Its id.
    pub fn add_review(&self, user: &str, state: &str) -> i64 {
        self.add_review_on(PR, user, state, HEAD)
    }

    /// As [`TestApp::add_review`], on pull request `pr` at `commit`.
    pub fn add_review_on(&self, pr: i64, user: &str, state: &str, commit: &str) -> i64 {
        let id = self.next_review.fetch_add(1, Ordering::Relaxed);
        self.gitea()
            .add_review(GITEA_REPO, pr, review(id, user, state, commit));
        id
    }

    /// As [`TestApp::add_review`], submitted long before any request the test makes.
    pub fn add_old_review(&self, user: &str, state: &str) -> i64 {
        let id = self.next_review.fetch_add(1, Ordering::Relaxed);
        self.gitea()
            .add_review(GITEA_REPO, PR, review_at(id, user, state, HEAD));
        id
    }

    /// An admin dismisses review `id` (Gitea sends no webhook for that).
    pub fn dismiss_review(&self, id: i64) {
        let mut g = self.gitea().state.lock().unwrap();
        for r in g.reviews.values_mut().flatten() {
            if r["id"] == id {
                r["dismissed"] = true.into();
            }
        }
    }

    /// Gitea sends a review webhook (the fixture's, as a new delivery), and the queue runs.
    pub async fn review_event(&self) {
        let s = self.post_review_event().await;
        assert!(s == 202 || s == 200, "review webhook answered {s}");
        self.step_worker().await;
    }

    /// As [`TestApp::review_event`], leaving the job queued. The HTTP status.
    pub async fn post_review_event(&self) -> u16 {
        let body = data("pull-request-review-approved.json");
        let mut h = headers("pull-request-review-approved.headers.json");
        let n = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        for (k, v) in h.iter_mut() {
            if k == "X-Gitea-Delivery" {
                *v = format!("review-{n}");
            }
        }
        self.r.post("/hooks/gitea", body, &h).await.0
    }

    /// The check `context` on [`HEAD`] reports `status` (`success`, `failure`), with no webhook.
    pub fn set_check(&self, context: &str, status: &str) {
        self.gitea().set_check(GITEA_REPO, HEAD, context, status);
    }

    /// Gitea sends the fixture's commit status webhook (`success`), and the queue runs.
    pub async fn status_event(&self) {
        let (s, text) = self
            .r
            .post(
                "/hooks/gitea",
                data("status-success.json"),
                &headers("status-success.headers.json"),
            )
            .await;
        assert!(s == 202 || s == 200, "{text}");
        self.step_worker().await;
    }

    /// Gives `user` `permission` (`read`, `write`, `owner`) on `repository`.
    pub fn grant(&self, repository: &str, user: &str, permission: &str) {
        self.gitea().grant(repository, user, permission);
    }

    /// The next time anything reads the pull request's reviews, Gitea holds the call: the
    /// receiver says when it arrived, and dropping (or sending on) the sender lets it go.
    pub fn hold_next_review_read(
        &self,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        self.gitea().hold_next_reviews()
    }

    /// Opens pull request `number` on `head` (besides [`PR`], which is always there).
    pub fn open_pull(&self, number: i64, head: &str) {
        self.gitea().open_pull(GITEA_REPO, number, head);
    }

    // --- What the bot said ------------------------------------------------------------------

    /// Every reply the bot posted, oldest first.
    pub fn replies(&self) -> Vec<String> {
        self.gitea().comments()
    }

    /// The bot's last reply ("" if none).
    pub fn last_reply(&self) -> String {
        self.replies().last().cloned().unwrap_or_default()
    }

    /// Asserts that the bot's last reply contains `text`, and returns it.
    #[track_caller]
    pub fn expect_reply(&self, text: &str) -> String {
        let replies = self.replies();
        let last = replies
            .last()
            .unwrap_or_else(|| panic!("no reply yet, expected {text:?}"));
        assert!(
            last.contains(text),
            "expected {text:?} in the last reply: {replies:#?}"
        );
        last.clone()
    }

    /// The repository of each reply the bot posted, oldest first.
    pub fn reply_repositories(&self) -> Vec<String> {
        let g = self.gitea().state.lock().unwrap();
        g.comments.iter().map(|(repo, _, _)| repo.clone()).collect()
    }

    /// The commit statuses the bot set, oldest first: (commit, body).
    pub fn commit_statuses(&self) -> Vec<(String, Value)> {
        let g = self.gitea().state.lock().unwrap();
        g.set_statuses
            .iter()
            .map(|(_, sha, b)| (sha.clone(), b.clone()))
            .collect()
    }

    /// The Gitea API calls made so far: (method, path).
    pub fn gitea_calls(&self) -> Vec<(String, String)> {
        self.gitea()
            .calls()
            .into_iter()
            .filter(|(_, p)| p.starts_with("/api/v1/"))
            .collect()
    }

    // --- Gitea misbehaving ------------------------------------------------------------------

    /// Gitea goes down: every call is answered 503 until [`TestApp::gitea_recovers`].
    pub fn gitea_goes_down(&self) {
        self.gitea().state.lock().unwrap().down = true;
    }

    /// Gitea answers every call `status` (e.g. 403: the token lost its access).
    pub fn gitea_answers_every_call(&self, status: u16) {
        self.gitea().state.lock().unwrap().fail_with = Some(status);
    }

    /// Gitea answers `status` to the calls whose path contains `path` (e.g. `/statuses/` and
    /// 503: commit statuses refused while the rest works).
    pub fn gitea_refuses(&self, path: &str, status: u16) {
        self.gitea().state.lock().unwrap().fail_path = Some((path.into(), status));
    }

    /// Gitea answers every call normally again (queued [`Fault`]s still apply).
    pub fn gitea_recovers(&self) {
        let mut g = self.gitea().state.lock().unwrap();
        g.down = false;
        g.fail_with = None;
        g.fail_path = None;
    }

    /// Gitea misbehaves on its next call as `fault` says (queued after earlier ones).
    pub fn gitea_fault(&self, fault: Fault) {
        self.gitea().state.lock().unwrap().faults.push_back(fault);
    }

    // --- The worker -------------------------------------------------------------------------

    /// Runs queued jobs until none is due; how many ran.
    pub async fn step_worker(&self) -> usize {
        self.r.app.drain().await.unwrap()
    }

    /// Runs one due job; whether there was one.
    pub async fn run_job(&self) -> bool {
        self.r.app.worker.run_once().await.unwrap()
    }

    /// Runs one due job on a task of its own (to hold it mid-way); whether there was one.
    pub fn run_job_in_background(&self) -> tokio::task::JoinHandle<bool> {
        let worker = self.r.app.worker.clone();
        tokio::spawn(async move { worker.run_once().await.unwrap() })
    }

    /// Whether any job is queued or running.
    pub async fn has_pending_jobs(&self) -> bool {
        super::has_pending_jobs(self.store()).await
    }

    /// Jobs that gave up.
    pub async fn dead_letters(&self) -> Vec<JobRow> {
        self.store().dead_letters().await.unwrap()
    }

    /// The engine re-evaluates every pending request and automatic stage (what its timer
    /// does).
    pub async fn reevaluate(&self) {
        self.engine().reevaluate(None).await.unwrap();
    }

    /// One pass of the singletons' timer (reconcile, then re-evaluate), as every replica runs
    /// it: only the replica holding the singleton lock does the work.
    pub async fn timer_tick(&self) {
        let engine = self.engine();
        module_webhook::jobs::singletons::tick(&self.r.app.worker.ctx, Some(&engine)).await;
    }

    /// Takes the singletons' lock as another replica would, until the guard is dropped.
    pub async fn another_replica_holds_the_timer(&self) -> module_webhook::store::Singleton {
        self.store()
            .singleton(module_webhook::store::RECONCILER_LOCK)
            .await
            .unwrap()
            .expect("the lock is free")
    }

    /// As [`TestApp::reevaluate`], on a task of its own (to hold it mid-way).
    pub fn reevaluate_in_background(&self) -> tokio::task::JoinHandle<()> {
        let engine = self.engine();
        tokio::spawn(async move {
            engine.reevaluate(None).await.unwrap();
        })
    }

    fn engine(&self) -> Engine {
        self.r
            .app
            .worker
            .engine
            .clone()
            .expect("the promotion engine is on")
    }

    fn store(&self) -> &Store {
        &self.r.app.state.store
    }

    fn gitea(&self) -> &FakeGitea {
        self.gitea
            .as_ref()
            .expect("this TestApp has no Gitea: build it without `api_only()`")
    }
}
