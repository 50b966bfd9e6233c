//! One reconcile: fetch the desired state (conditionally), verify everything on the node,
//! build and activate a generation, check health (roll back on failure), and report what
//! runs. A retry budget per `state_id` stops a bad target from being retried forever.

use crate::{
    fetch::{self, LocalTrust},
    files::write_atomic,
    generation::{Layout, Meta},
    objects::Objects,
    pin::{self, Pin},
    receiver::{Answer, Receiver, Refusal, Report},
    switch::Switch,
    system::{Host, apt, systemd},
};
use powernode_module::{
    Version,
    compose::{self, Layer},
    desired_state::{DesiredState, ModuleObservation, ReportStatus},
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
    /// How long the units an activation restarted may take to become active.
    pub health_timeout: std::time::Duration,
    /// Mount each generation's composefs image over its tree.
    pub mount: bool,
    /// Generations kept besides `current` and `previous` (see [`crate::gc`]).
    pub keep_generations: usize,
    /// Attempts per `state_id` before it is `rejected`.
    pub retry_budget: u32,
    /// While nothing changes, a report at most this often (a heartbeat against `stale`).
    pub report_every: std::time::Duration,
    /// The template this node belongs to (`--template`); unset, the template of the first
    /// state it applies, kept in `pin.json`. A state for another template is refused.
    pub template: Option<String>,
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
    /// The receiver signed a hold: nothing is applied, what runs keeps running.
    Held { reason: String },
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

    /// How this node switches generations (packages, root, units, health).
    pub fn switch(&self) -> Switch {
        Switch {
            layout: self.layout.clone(),
            host: Host::new(&self.layout.root),
            health_command: self.health_command.clone(),
            health_timeout: self.health_timeout,
            mount: self.mount,
        }
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

    /// The node's pin (`pin.json`), if it accepted a state yet.
    pub fn pin(&self) -> Option<Pin> {
        Pin::read(&self.layout.state)
    }

    /// One reconcile, then the report (sent now, or kept and sent by a later run).
    pub async fn apply_once(&self) -> anyhow::Result<Outcome> {
        fs::create_dir_all(&self.layout.state)?;
        // One reconcile at a time per state directory (a second `module-agent apply`, a
        // `rollback` by hand): released when this returns.
        let _lock = self.layout.lock()?;
        // The generations are world-readable (services read them); what the agent keeps
        // for itself is not: objects (a module's secrets before their modes apply),
        // verification records, and the node's own files it moved aside.
        for private in ["objects", "verified", "backup"] {
            let d = self.layout.state.join(private);
            fs::create_dir_all(&d)?;
            fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        let switch = self.switch();
        let recovered = tokio::task::spawn_blocking(move || {
            let undone = switch.recover();
            switch.remount_current();
            undone
        })
        .await??;
        if let Some(undone) = recovered {
            tracing::warn!(%undone, "recovered");
        }
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
        let admitted = pin::admit(
            &self.layout.state,
            self.template.as_deref(),
            &doc,
            &state_id,
        );
        if let Err(reason) = admitted {
            tracing::warn!(%reason, "desired state refused");
            // Reported against what runs (the refused state may be no state of ours).
            let id = if current.is_some() { "" } else { &state_id };
            self.report(current.as_ref(), id, ReportStatus::Rejected, &reason)
                .await;
            return Ok(Outcome::Rejected { reason });
        }
        if let Some(why) = &doc.hold {
            let reason = format!("held by the receiver: {why}; what runs keeps running");
            let new = self.pin().is_none_or(|p| p.state_id != state_id);
            pin::raise(&self.layout.state, &doc, &state_id)?;
            if new || self.report_due() {
                self.report(current.as_ref(), &state_id, ReportStatus::Applied, &reason)
                    .await;
            }
            return Ok(Outcome::Held { reason });
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
        let outcome = match self.build(&doc, &state_id).await {
            Ok(Ok(meta)) => {
                let switch = self.switch();
                let from = current.clone();
                let n = meta.number;
                match tokio::task::spawn_blocking(move || switch.enter(&meta, from.as_ref()))
                    .await?
                {
                    Ok(()) => Outcome::Applied { generation: n },
                    Err(why) => Outcome::Failed { reason: why },
                }
            }
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
                let (layout, keep) = (self.layout.clone(), self.keep_generations);
                match tokio::task::spawn_blocking(move || crate::gc::collect(&layout, keep)).await?
                {
                    Ok(c) if !c.generations.is_empty() || c.objects > 0 => tracing::info!(
                        generations = ?c.generations,
                        objects = c.objects,
                        bytes = c.bytes,
                        "collected"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "collection failed; retried after the next switch")
                    }
                }
                pin::raise(&self.layout.state, &doc, &state_id)?;
                let dir = self.layout.generations().join(generation.to_string());
                let msg = match crate::mount::state(&dir) {
                    Some(m) if m.mounted => format!(
                        "applied generation {generation} (composefs image mounted, verity: {})",
                        m.verity
                    ),
                    Some(_) => format!(
                        "applied generation {generation} (composefs image not mounted: the plain tree serves)"
                    ),
                    None => format!("applied generation {generation}"),
                };
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
            Outcome::Unchanged | Outcome::Held { .. } => {}
        }
        Ok(outcome)
    }

    /// Fetch, verify, compose, build (not yet active). `Ok(Err(reason))` is a refusal.
    async fn build(
        &self,
        doc: &DesiredState,
        state_id: &str,
    ) -> anyhow::Result<Result<Meta, String>> {
        let packages: Vec<_> = doc.modules.iter().flat_map(|m| &m.packages).collect();
        if let Err(why) = self.switch().can_install(&packages) {
            return Ok(Err(why));
        }
        let objects = self.objects();
        let mut layers = Vec::new();
        let mut units = std::collections::BTreeMap::new();
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
            let entries = compose::entries_of(&fetched.index);
            units.insert(
                m.name.clone(),
                systemd::units_in_paths(entries.iter().map(|e| e.path.as_str()))
                    .into_iter()
                    .collect::<Vec<_>>(),
            );
            layers.push(Layer {
                manifest,
                version,
                entries,
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
        tokio::task::spawn_blocking(move || {
            layout.build(&doc, &state_id, &composition, &objects, &units)
        })
        .await?
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
            message: Some(bounded(message)),
            modules: active.map(|m| self.observe(m)).unwrap_or_default(),
            state_bytes: crate::files::disk_usage(&self.layout.state).ok(),
        })
    }

    /// Per module of the active generation: its packages' installed versions (dpkg) and
    /// its units' states (systemd), where this node has them to ask.
    fn observe(&self, active: &Meta) -> std::collections::BTreeMap<String, ModuleObservation> {
        let host = Host::new(&self.layout.root);
        let (dpkg, units) = (host.is_live() && host.has_dpkg(), host.has_systemd());
        if !dpkg && !units {
            return Default::default();
        }
        let names = |m: &crate::generation::ModuleMeta| -> Vec<String> {
            m.packages.iter().map(|p| p.name.clone()).collect()
        };
        let all: Vec<String> = active.modules.iter().flat_map(names).collect();
        let have = if dpkg {
            apt::installed(all.iter().map(String::as_str)).unwrap_or_default()
        } else {
            Default::default()
        };
        active
            .modules
            .iter()
            .map(|m| {
                let mut o = ModuleObservation::default();
                for p in names(m) {
                    if dpkg {
                        o.packages.insert(p.clone(), have.get(&p).cloned());
                    }
                    if units {
                        for u in systemd::units_of_package(&p) {
                            o.units.insert(u, String::new());
                        }
                    }
                }
                for u in &m.units {
                    o.units.insert(u.clone(), String::new());
                }
                o.units.retain(|u, state| match systemd::show(u) {
                    Ok(s) if s.load == "loaded" => {
                        *state = s.active;
                        true
                    }
                    _ => false,
                });
                (m.name.clone(), o)
            })
            .collect()
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

/// A report's message stays within what the receiver accepts (4096 bytes), cut on a
/// character boundary: apt's and journalctl's words can be long.
fn bounded(message: &str) -> String {
    if message.len() <= 4000 {
        return message.to_owned();
    }
    let mut end = 4000;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
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
