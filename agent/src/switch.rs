//! Switching the node from one generation to another, all or nothing: the packages the new
//! generation names, then its files over the root, then the units its change touches,
//! then health. Any failure puts the node back on the generation it came from (files,
//! diversions, backups, packages the agent installed, and the units restarted on the old
//! configuration).
//!
//! `activation.json` is written before the root changes and removed only when the new
//! generation is healthy. A crash anywhere in between (a SIGKILL, a power loss) is found by
//! [`Switch::recover`] on the next start, which goes back to the old generation the same
//! way a failed health check does; the next reconcile then applies the new one from the
//! start. So a node is on the old generation or the new one, whole, never between.

use crate::{
    files::write_atomic,
    generation::{Layout, Meta},
    root::Root,
    system::{Host, apt::Packages, systemd},
};
use powernode_module::package::PackageSpec;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeSet, fs, path::PathBuf, time::Duration};

/// The activation in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    /// The generation that was current (none on a first activation).
    from: Option<u64>,
    to: u64,
    /// What `previous` pointed at, to put back.
    previous: Option<u64>,
    /// The units the change touches: restarted again on the way back.
    units: BTreeSet<String>,
}

/// What switching needs to know about the node.
#[derive(Debug, Clone)]
pub struct Switch {
    pub layout: Layout,
    pub host: Host,
    /// Run after the units are healthy (`sh -c`); a non-zero exit rolls back.
    pub health_command: Option<String>,
    /// How long restarted units may take to become active.
    pub health_timeout: Duration,
    /// Mount each generation's composefs image over its tree (`--no-mount` turns it off).
    pub mount: bool,
}

/// Debug builds only: `MODULE_AGENT_FAULT=<point>` holds the agent at that point of an
/// activation (it says so on stderr and waits), so a crash test can SIGKILL it exactly there.
/// Release builds have no fault points.
fn fault(point: &str) {
    if cfg!(debug_assertions) && std::env::var("MODULE_AGENT_FAULT").as_deref() == Ok(point) {
        eprintln!("module-agent: fault point {point}: waiting to be killed");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

impl Switch {
    fn journal_file(&self) -> PathBuf {
        self.layout.state.join("activation.json")
    }

    fn root(&self) -> Root {
        Root::new(self.host.clone(), &self.layout.state)
    }

    pub fn packages(&self) -> Packages {
        Packages::new(&self.layout.state)
    }

    /// Whether a state naming these packages can be applied here; the reason when not.
    pub fn can_install(&self, packages: &[&PackageSpec]) -> Result<(), String> {
        if packages.is_empty() || self.host.has_apt() {
            return Ok(());
        }
        let names: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
        Err(format!(
            "the state names packages ({}) and this node cannot install them: {}",
            names.join(" "),
            if self.host.is_live() {
                "no apt-get or dpkg database here"
            } else {
                "packages are installed only on the running system (--root /)"
            }
        ))
    }

    /// Goes back to the generation an interrupted activation came from. `Some(message)`
    /// when there was one.
    pub fn recover(&self) -> anyhow::Result<Option<String>> {
        if self.host.has_apt() {
            self.packages().recover()?;
        }
        let Ok(bytes) = fs::read(self.journal_file()) else {
            return Ok(None);
        };
        let j: Journal = serde_json::from_slice(&bytes)?;
        tracing::warn!(from = ?j.from, to = j.to, "an activation was interrupted; going back");
        self.back(&j)?;
        Ok(Some(format!(
            "an interrupted activation of generation {} was undone",
            j.to
        )))
    }

    /// Makes `to` the active generation, coming from `from`. `Err(why)` when it could not
    /// be (the node is back on `from`).
    pub fn enter(&self, to: &Meta, from: Option<&Meta>) -> Result<(), String> {
        let wanted = specs(Some(to));
        // 1. Packages, before anything of the root changes.
        if self.host.has_apt() {
            let missing = crate::system::apt::missing(&wanted).map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            match self.packages().install(&missing) {
                Ok(changed) if !missing.is_empty() => tracing::info!(
                    installed = changed.installed.len(),
                    secs = started.elapsed().as_secs_f64(),
                    "packages installed"
                ),
                Ok(_) => {}
                Err(e) => {
                    self.prune(from);
                    self.discard(to.number, from);
                    return Err(format!("{e:#}"));
                }
            }
        } else if let Err(why) = self.can_install(&wanted.iter().collect::<Vec<_>>()) {
            self.discard(to.number, from);
            return Err(why);
        }
        // The image, mounted over the new tree before anything points at it.
        if self.mount {
            self.mount_generation(to.number);
        }
        let j = Journal {
            from: from.map(|m| m.number),
            to: to.number,
            previous: self.layout.pointed("previous"),
            units: self.touched(from, to),
        };
        let undo = |why: String| -> String {
            match self.back(&j) {
                Ok(()) => why,
                Err(e) => format!("{why}; going back failed too: {e:#}"),
            }
        };
        // 2. Files: the journal first, then the links, the switch, the releases.
        if let Err(e) = write_atomic(
            &self.journal_file(),
            &serde_json::to_vec(&j).unwrap_or_default(),
        ) {
            self.discard(to.number, from);
            return Err(format!("{e:#}"));
        }
        fault("activate.journaled");
        if let Err(e) = self.root().prepare(&self.layout.tree(to.number)) {
            return Err(undo(format!("laying out the root: {e:#}")));
        }
        fault("activate.prepared");
        let switched = (|| -> anyhow::Result<()> {
            if let Some(f) = j.from.filter(|f| *f != to.number) {
                self.layout.point("previous", f)?;
            }
            self.layout.point("current", to.number)
        })();
        if let Err(e) = switched {
            return Err(undo(format!("switching generations: {e:#}")));
        }
        fault("activate.switched");
        if let Err(e) = self.root().finish(Some(&self.layout.tree(to.number))) {
            return Err(undo(format!("releasing old paths: {e:#}")));
        }
        // 3. Packages no module wants any more (their files were released above). One that
        //    will not go is left installed and recorded, tried again next time: harmless
        //    to what runs, so not a reason to roll back.
        self.prune(Some(to));
        fault("activate.pruned");
        // 4. Units, then health.
        if let Err(why) = self.restart(&j.units) {
            return Err(undo(why));
        }
        if let Err(why) = self.health_command(to.number) {
            return Err(undo(why));
        }
        fault("activate.healthy");
        let _ = fs::remove_file(self.journal_file());
        Ok(())
    }

    /// Back to `j.from`: its packages, its files, `current` and `previous` as they were,
    /// the touched units restarted on its configuration; the new generation deleted.
    fn back(&self, j: &Journal) -> anyhow::Result<()> {
        let from = j.from.and_then(|n| self.layout.meta(n).ok());
        if self.host.has_apt() {
            let wanted = specs(from.as_ref());
            if let Ok(missing) = crate::system::apt::missing(&wanted) {
                self.packages().install(&missing)?;
            }
        }
        let root = self.root();
        match j.from {
            Some(f) => {
                root.prepare(&self.layout.tree(f))?;
                self.layout.point("current", f)?;
                root.finish(Some(&self.layout.tree(f)))?;
            }
            None => {
                self.layout.unpoint("current")?;
                root.finish(None)?;
            }
        }
        match j.previous {
            Some(p) => self.layout.point("previous", p)?,
            None => self.layout.unpoint("previous")?,
        }
        self.prune(from.as_ref());
        if let Err(why) = self.restart(&j.units) {
            tracing::warn!(%why, "after going back, a unit is not healthy either");
        }
        if j.from != Some(j.to) {
            let dir = self.layout.generations().join(j.to.to_string());
            crate::mount::unmount(&dir);
            let _ = fs::remove_dir_all(dir);
        }
        fs::remove_file(self.journal_file()).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(())
    }

    /// A generation built but never activated is deleted.
    fn discard(&self, n: u64, from: Option<&Meta>) {
        if from.is_none_or(|m| m.number != n) {
            let dir = self.layout.generations().join(n.to_string());
            crate::mount::unmount(&dir);
            let _ = fs::remove_dir_all(dir);
        }
    }

    /// Mounts generation `n`'s image (see [`crate::mount`]); what could not be done is in
    /// its `mount.json` and the log, and the plain tree serves.
    pub fn mount_generation(&self, n: u64) -> crate::mount::MountState {
        let objects = crate::objects::Objects::new(&self.layout.state);
        let digests: Vec<_> = self
            .layout
            .file_digests(n)
            .into_iter()
            .filter(|d| objects.has(d))
            .collect();
        crate::mount::mount(
            &self.layout.generations().join(n.to_string()),
            &objects,
            &digests,
        )
    }

    /// After a reboot nothing is mounted: the active generation's image is mounted again.
    pub fn remount_current(&self) {
        if let Some(n) = self.layout.pointed("current").filter(|_| self.mount)
            && !crate::mount::is_mounted(&self.layout.tree(n))
        {
            self.mount_generation(n);
        }
    }

    /// Purges the packages the agent installed that `active` does not name. A failure is
    /// logged and left for the next run (the record keeps what is still installed).
    fn prune(&self, active: Option<&Meta>) {
        if !self.host.has_apt() {
            return;
        }
        let names: BTreeSet<String> = specs(active).into_iter().map(|p| p.name).collect();
        match self.packages().prune(&names) {
            Ok(changed) if !changed.removed.is_empty() => {
                tracing::info!(removed = ?changed.removed, "packages no module wants were purged");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "packages left installed"),
        }
    }

    /// The units a change from `from` to `to` touches: those of every module added, removed
    /// or changed (by composefs digest), from its packages and its own files.
    fn touched(&self, from: Option<&Meta>, to: &Meta) -> BTreeSet<String> {
        if !self.host.has_systemd() {
            return BTreeSet::new();
        }
        let key = |m: &crate::generation::ModuleMeta| (m.name.clone(), m.composefs_digest.clone());
        let old: BTreeSet<_> = from
            .map(|f| f.modules.iter().map(key).collect())
            .unwrap_or_default();
        let new: BTreeSet<_> = to.modules.iter().map(key).collect();
        let mut units = BTreeSet::new();
        let all = to
            .modules
            .iter()
            .chain(from.map(|f| f.modules.iter()).into_iter().flatten());
        for m in all {
            let k = key(m);
            if old.contains(&k) && new.contains(&k) {
                continue;
            }
            units.extend(m.units.iter().cloned());
            for p in &m.packages {
                units.extend(systemd::units_of_package(&p.name));
            }
        }
        units
    }

    /// daemon-reload, then reload-or-restart every touched unit systemd has loaded and that
    /// is enabled or running; then wait for them to be active.
    fn restart(&self, units: &BTreeSet<String>) -> Result<(), String> {
        if units.is_empty() || !self.host.has_systemd() {
            return Ok(());
        }
        systemd::daemon_reload().map_err(|e| e.to_string())?;
        let mut restarted = BTreeSet::new();
        for u in units {
            if systemd::show(u).is_ok_and(|s| s.restartable()) {
                systemd::reload_or_restart(u);
                restarted.insert(u.clone());
            }
        }
        tracing::info!(units = ?restarted, "units restarted");
        systemd::wait_healthy(&restarted, self.health_timeout)
    }

    fn health_command(&self, generation: u64) -> Result<(), String> {
        let Some(cmd) = &self.health_command else {
            return Ok(());
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("MODULE_AGENT_GENERATION", generation.to_string())
            .env("MODULE_AGENT_ROOT", &self.host.root)
            .stdin(std::process::Stdio::null())
            .output()
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
}

/// The packages a generation's modules name.
fn specs(m: Option<&Meta>) -> Vec<PackageSpec> {
    let mut out: Vec<PackageSpec> = m
        .map(|m| {
            m.modules
                .iter()
                .flat_map(|x| x.packages.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}
