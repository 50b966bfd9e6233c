//! Prometheus metrics: deliveries by source and outcome, jobs by state (read from the store
//! at scrape time), ingest duration, verification failures and rejections by reason,
//! desired-state compositions performed and skipped.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    deliveries: Family<DeliveryLabels, Counter>,
    verification_failures: Family<ReasonLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    jobs: Family<StateLabels, Gauge>,
    ingest_seconds: Histogram,
    /// Instance reports accepted.
    pub reports: Counter,
    /// Transactions that recorded hook deliveries (with group commit, fewer than requests).
    pub delivery_commits: Counter,
    /// Transactions that recorded instance reports (group commit).
    pub report_commits: Counter,
    /// Desired-state reads answered 304 (unchanged) and with a document.
    pub desired_state_reads: Family<StateLabels, Counter>,
    /// Template recomputations by what they did: `composed`, or `skipped` (same inputs as
    /// the last computation: nothing composed, nothing recorded).
    compositions: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("module_webhook");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let verification_failures = Family::<ReasonLabels, Counter>::default();
        let rejections = Family::<ReasonLabels, Counter>::default();
        let jobs = Family::<StateLabels, Gauge>::default();
        let ingest_seconds =
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
        r.register(
            "deliveries",
            "Webhook deliveries by source and outcome",
            deliveries.clone(),
        );
        r.register(
            "verification_failures",
            "Signature verification failures by reason",
            verification_failures.clone(),
        );
        r.register(
            "rejections",
            "Versions rejected by reason",
            rejections.clone(),
        );
        r.register("jobs", "Jobs by state", jobs.clone());
        r.register(
            "ingest_duration_seconds",
            "Time to run one ingest job",
            ingest_seconds.clone(),
        );
        let reports = Counter::default();
        r.register(
            "instance_reports",
            "Instance reports accepted",
            reports.clone(),
        );
        let delivery_commits = Counter::default();
        r.register(
            "delivery_commits",
            "Transactions that recorded hook deliveries (group commit: often several requests each)",
            delivery_commits.clone(),
        );
        let report_commits = Counter::default();
        r.register(
            "report_commits",
            "Transactions that recorded instance reports (group commit: often several reports each)",
            report_commits.clone(),
        );
        let desired_state_reads = Family::<StateLabels, Counter>::default();
        r.register(
            "desired_state_reads",
            "Desired-state reads by answer (not_modified, document)",
            desired_state_reads.clone(),
        );
        let compositions = Family::<OutcomeLabels, Counter>::default();
        r.register(
            "desired_state_compositions",
            "Template recomputations by outcome: composed, or skipped (inputs unchanged)",
            compositions.clone(),
        );
        Metrics {
            compositions,
            reports,
            delivery_commits,
            report_commits,
            desired_state_reads,
            registry: Mutex::new(r),
            deliveries,
            verification_failures,
            rejections,
            jobs,
            ingest_seconds,
        }
    }
}

impl Metrics {
    pub fn delivery(&self, source: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn verification_failure(&self, reason: &str) {
        self.verification_failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// One template recomputation: `composed` or `skipped`.
    pub fn composition(&self, outcome: &str) {
        self.compositions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// How many recomputations had `outcome` (for tests and the bench).
    pub fn compositions(&self, outcome: &str) -> u64 {
        self.compositions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .get()
    }

    pub fn ingest_duration(&self, secs: f64) {
        self.ingest_seconds.observe(secs);
    }

    pub fn set_jobs(&self, counts: &[(String, i64)]) {
        for s in ["queued", "running", "done", "dead"] {
            let n = counts
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.jobs
                .get_or_create(&StateLabels { state: s.into() })
                .set(n);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
