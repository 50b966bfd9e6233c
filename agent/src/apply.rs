//! One reconcile: fetch the desired state (conditionally), verify everything on the node,
//! build and activate a generation, check health (roll back on failure), and report what
//! runs. A retry budget per `state_id` stops a bad target from being retried forever.

use crate::{
    fetch::{self, LocalTrust},
    generation::{Layout, Meta},
    objects::Objects,
    receiver::{Answer, Receiver, Refusal, Report},
};
use anyhow::Context as _;
use powernode_module::{
    Version,
    compose::{self, Layer},
    desired_state::{DesiredState, ReportStatus},
    manifest,
};
use serde::{Deserialize, Serialize};
use std::{fs, path::PathBuf};

/// Everything one reconcile needs.
#[derive(Debug, Clone)]
pub struct Agent {
    pub receiver: Receiver,
    pub layout: Layout,
    pub trust: LocalTrust,
    /// Run after activation (`sh -c`); non-zero exit rolls back.
    pub health_command: Option<String>,
    /// Attempts per `state_id` before it is `rejected`.
    pub retry_budget: u32,
    /// While nothing changes, a report at most this often (a heartbeat against `stale`).
    pub report_every: std::time::Duration,
}

/// What a reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The desired state is what runs (304, or already the current generation).
    Unchanged,
    /// A new generation is active.
    Applied { generation: u64 },
    /// The apply failed and what ran before runs again.
    Failed { reason: String },
    /// The target is refused (bad signature, policy, digest) or out of retries.
    Rejected { reason: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Attempts {
    state_id: String,
    count: u32,
    last_error: String,
}

impl Agent {
    fn objects(&self) -> Objects {
        Objects::new(&self.layout.state)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.layout.state.join(name)
    }

    fn attempts(&self) -> Attempts {
        fs::read(self.file("attempts.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn set_attempts(&self, a: &Attempts) -> anyhow::Result<()> {
        write_atomic(&self.file("attempts.json"), &serde_json::to_vec(a)?)
    }

    /// One reconcile, then the report (sent now, or kept and sent by a later run).
    pub async fn apply_once(&self) -> anyhow::Result<Outcome> {
        fs::create_dir_all(&self.layout.state)?;
        self.flush_pending().await;
        let current = self.layout.current();
        // Ask with what runs, or with a target already out of retries, so neither is fetched
        // again until the desired state changes.
        let tried = self.attempts();
        let ask = if tried.count >= self.retry_budget && !tried.state_id.is_empty() {
            Some(tried.state_id.clone())
        } else {
            current.as_ref().map(|m| m.state_id.clone())
        };
        let answer = match self.receiver.desired(ask.as_deref()).await {
            Ok(a) => a,
            Err(e) if e.downcast_ref::<Refusal>().is_some() => {
                let reason = e.to_string();
                self.report(current.as_ref(), "", ReportStatus::Rejected, &reason)
                    .await;
                return Ok(Outcome::Rejected { reason });
            }
            Err(e) => return Err(e),
        };
        let (doc, state_id) = match answer {
            Answer::Unchanged => {
                // Still alive and still running it: say so now and then (the receiver calls
                // an instance stale when it stops hearing from it), not on every poll.
                if self.report_due() {
                    let status = if tried.count >= self.retry_budget {
                        ReportStatus::Rejected
                    } else {
                        ReportStatus::Applied
                    };
                    let msg = if status == ReportStatus::Rejected {
                        tried.last_error.clone()
                    } else {
                        "up to date".into()
                    };
                    let id = if status == ReportStatus::Rejected {
                        tried.state_id.clone()
                    } else {
                        String::new()
                    };
                    self.report(current.as_ref(), &id, status, &msg).await;
                }
                return Ok(Outcome::Unchanged);
            }
            Answer::State(doc, id) => (doc, id),
        };
        if current.as_ref().is_some_and(|m| m.state_id == state_id) {
            self.report(
                current.as_ref(),
                &state_id,
                ReportStatus::Applied,
                "up to date",
            )
            .await;
            return Ok(Outcome::Unchanged);
        }
        let mut attempts = if tried.state_id == state_id {
            tried
        } else {
            Attempts {
                state_id: state_id.clone(),
                ..Default::default()
            }
        };
        if attempts.count >= self.retry_budget {
            let reason = format!(
                "gave up on {state_id} after {} attempts: {}",
                attempts.count, attempts.last_error
            );
            self.report(current.as_ref(), &state_id, ReportStatus::Rejected, &reason)
                .await;
            return Ok(Outcome::Rejected { reason });
        }
        let outcome = match self.build_and_activate(&doc, &state_id).await {
            Ok(Ok(n)) => match self.check_health(n).await {
                Ok(()) => Outcome::Applied { generation: n },
                Err(why) => {
                    self.layout.rollback()?;
                    Outcome::Failed { reason: why }
                }
            },
            Ok(Err(refused)) => Outcome::Rejected { reason: refused },
            Err(e) => {
                // Network or disk: nothing was activated; the next run tries again.
                Outcome::Failed {
                    reason: format!("{e:#}"),
                }
            }
        };
        let active = self.layout.current();
        match &outcome {
            Outcome::Applied { generation } => {
                let _ = fs::remove_file(self.file("attempts.json"));
                let msg = format!("applied generation {generation}");
                self.report(active.as_ref(), &state_id, ReportStatus::Applied, &msg)
                    .await;
            }
            Outcome::Failed { reason } | Outcome::Rejected { reason } => {
                attempts.count += 1;
                attempts.last_error = reason.clone();
                // A refusal does not get better by retrying.
                if matches!(outcome, Outcome::Rejected { .. }) {
                    attempts.count = self.retry_budget;
                }
                self.set_attempts(&attempts)?;
                let status = if attempts.count >= self.retry_budget {
                    ReportStatus::Rejected
                } else {
                    ReportStatus::Failed
                };
                self.report(active.as_ref(), &state_id, status, reason)
                    .await;
                if status == ReportStatus::Rejected {
                    return Ok(Outcome::Rejected {
                        reason: reason.clone(),
                    });
                }
            }
            Outcome::Unchanged => {}
        }
        Ok(outcome)
    }

    /// Fetch, verify, compose, build, activate. `Ok(Err(reason))` is a refusal.
    async fn build_and_activate(
        &self,
        doc: &DesiredState,
        state_id: &str,
    ) -> anyhow::Result<Result<u64, String>> {
        let objects = self.objects();
        let mut layers = Vec::new();
        for m in &doc.modules {
            let fetched =
                match fetch::fetch_cached(m, &self.trust, &objects, &self.layout.state).await? {
                    Ok(f) => f,
                    Err(refused) => return Ok(Err(refused.to_string())),
                };
            let Some(manifest) = manifest::parse(&fetched.manifest_text).manifest else {
                return Ok(Err(format!("{}: its manifest does not parse", m.name)));
            };
            let Ok(version) = Version::parse(&m.version) else {
                return Ok(Err(format!(
                    "{}: version {:?} is not SemVer",
                    m.name, m.version
                )));
            };
            layers.push(Layer {
                manifest,
                version,
                entries: compose::entries_of(&fetched.index),
            });
        }
        let composition = compose::compose_tree(&layers);
        if composition.is_blocked() {
            let why: Vec<String> = composition.conflicts().map(|f| f.to_string()).collect();
            return Ok(Err(format!(
                "composition has conflicts: {}",
                why.join("; ")
            )));
        }
        let order: Vec<&str> = composition.order().iter().map(|n| n.as_str()).collect();
        let want: Vec<&str> = doc.modules.iter().map(|m| m.name.as_str()).collect();
        if order != want {
            return Ok(Err(format!(
                "composition order {order:?} differs from the desired state's {want:?}"
            )));
        }
        let layout = self.layout.clone();
        let doc = doc.clone();
        let state_id = state_id.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Result<u64, String>> {
            let meta = match layout.build(&doc, &state_id, &composition, &objects) {
                Ok(m) => m,
                Err(e) if e.to_string().contains("generation refused") => {
                    return Ok(Err(e.to_string()));
                }
                Err(e) => return Err(e),
            };
            layout.activate(meta.number)?;
            Ok(Ok(meta.number))
        })
        .await?
    }

    async fn check_health(&self, generation: u64) -> Result<(), String> {
        let Some(cmd) = &self.health_command else {
            return Ok(());
        };
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("MODULE_AGENT_GENERATION", generation.to_string())
            .env("MODULE_AGENT_ROOT", &self.layout.root)
            .output()
            .await
            .map_err(|e| format!("health command: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "health command {cmd:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// What runs, read from the active generation: its modules' digests and the image's
    /// measured digest. `None` when there is no state to report against yet.
    fn report_of(
        &self,
        active: Option<&Meta>,
        state_id: &str,
        status: ReportStatus,
        message: &str,
    ) -> Option<Report> {
        let running = active
            .map(|m| {
                m.modules
                    .iter()
                    .filter_map(|x| Some((x.name.clone(), x.composefs_digest.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        let measured = active.and_then(|m| {
            let image = self
                .layout
                .generations()
                .join(m.number.to_string())
                .join("image.cfs");
            fs::File::open(image)
                .ok()
                .and_then(|f| crate::objects::fsverity_of_reader(f).ok())
        });
        let state = if state_id.is_empty() {
            active.map(|m| m.state_id.as_str()).unwrap_or_default()
        } else {
            state_id
        };
        Some(Report {
            desired_state_id: state.parse().ok()?,
            running_module_digests: running,
            composefs_digest: measured,
            status,
            message: Some(message.to_owned()),
        })
    }

    /// Builds and sends the report of what runs (see [`Self::send`]).
    async fn report(
        &self,
        active: Option<&Meta>,
        state_id: &str,
        status: ReportStatus,
        message: &str,
    ) {
        if let Some(r) = self.report_of(active, state_id, status, message) {
            self.send(r).await;
        }
    }

    /// Whether the last report sent is older than `report_every`.
    fn report_due(&self) -> bool {
        let Ok(m) = fs::metadata(self.file("last-report.json")) else {
            return true;
        };
        m.modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age >= self.report_every)
    }

    /// Sends a report; one that cannot be sent is kept (`pending-report.json`, the newest
    /// wins) and retried by later runs with exponential backoff (5 s doubling, at most
    /// 10 min), so a receiver that is down is not hammered by its fleet.
    pub async fn send(&self, r: Report) {
        let attempts = self.pending().map_or(0, |p| p.attempts);
        self.deliver(r, attempts).await;
    }

    async fn deliver(&self, r: Report, attempts: u32) {
        match self.receiver.report(&r).await {
            Ok(()) => {
                let _ = fs::remove_file(self.file("pending-report.json"));
                let _ = write_atomic(
                    &self.file("last-report.json"),
                    &serde_json::to_vec_pretty(&r).unwrap_or_default(),
                );
            }
            Err(e) => {
                let attempts = attempts + 1;
                let wait = (5u64 << attempts.min(10)).min(600);
                tracing::warn!(error = %format!("{e:#}"), retry_in_secs = wait, "report not sent; kept for a later run");
                let p = Pending {
                    report: r,
                    attempts,
                    next_at: unix_now() + wait,
                };
                let _ = write_atomic(
                    &self.file("pending-report.json"),
                    &serde_json::to_vec(&p).unwrap_or_default(),
                );
            }
        }
    }

    fn pending(&self) -> Option<Pending> {
        let bytes = fs::read(self.file("pending-report.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Sends the kept report when its backoff has passed.
    async fn flush_pending(&self) {
        if let Some(p) = self.pending()
            && unix_now() >= p.next_at
        {
            self.deliver(p.report, p.attempts).await;
        }
    }
}

/// A report that could not be sent yet.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    report: Report,
    attempts: u32,
    /// Unix seconds before which it is not retried.
    next_at: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes a file whole (temporary name, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)?;
    Ok(())
}
