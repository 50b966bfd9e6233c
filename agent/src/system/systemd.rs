//! Units: which ones a module's change touches, restarting them, and whether they came up.
//!
//! A module touches the units of the packages it names (their `.service` files, as dpkg
//! lists them) and the units or drop-ins it ships itself (under `etc/systemd/system` or
//! `usr/lib/systemd/system`). Of those, a unit is restarted only when it is loaded and either
//! enabled or running: a disabled unit stays stopped, as the node's operator left it.
//! systemd's own units and D-Bus are never restarted by the agent (as needrestart and
//! NixOS's switch-to-configuration refuse to): restarting them under a running system
//! breaks logins and the bus the agent itself talks to systemd over.

use super::{ToolError, run};
use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

/// The unit types the agent restarts.
const KINDS: [&str; 3] = [".service", ".socket", ".timer"];

/// Never restarted by the agent (see the module documentation).
fn protected(unit: &str) -> bool {
    unit.starts_with("systemd-")
        || unit.starts_with("dbus")
        || unit.starts_with("getty@")
        || unit.starts_with("user@")
        || unit.starts_with("emergency.")
        || unit.starts_with("rescue.")
        || unit == "module-agent.service"
}

fn unit_name(file: &str) -> Option<&str> {
    let name = file.rsplit('/').next()?;
    (KINDS.iter().any(|k| name.ends_with(k)) && !name.contains("@.")).then_some(name)
}

/// The units a list of root-relative paths (a module's files) ships or changes: unit files,
/// and the unit a drop-in (`X.service.d/*.conf`) belongs to.
pub fn units_in_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in paths {
        let p = p.trim_start_matches('/');
        let Some(rest) = [
            "etc/systemd/system/",
            "usr/lib/systemd/system/",
            "lib/systemd/system/",
        ]
        .iter()
        .find_map(|d| p.strip_prefix(d)) else {
            continue;
        };
        match rest.split_once('/') {
            None => out.extend(unit_name(rest).map(str::to_owned)),
            // `X.service.d/override.conf` changes X; `multi-user.target.wants/X` enables X.
            Some((dir, file)) => {
                if let Some(unit) = dir.strip_suffix(".d") {
                    out.extend(unit_name(unit).map(str::to_owned));
                } else if dir.ends_with(".wants") || dir.ends_with(".requires") {
                    out.extend(unit_name(file).map(str::to_owned));
                }
            }
        }
    }
    out.retain(|u| !protected(u));
    out
}

/// The units a package ships, as dpkg lists its files.
pub fn units_of_package(package: &str) -> BTreeSet<String> {
    let Ok(out) = run(Command::new("dpkg-query").args(["-L", "--", package])) else {
        return BTreeSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("/lib/systemd/system/")
                .or_else(|| l.strip_prefix("/usr/lib/systemd/system/"))
        })
        .filter(|f| !f.contains('/'))
        .filter_map(unit_name)
        .filter(|u| !protected(u))
        .map(str::to_owned)
        .collect()
}

/// What systemd says of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
    pub unit_file: String,
    /// `ConditionResult=no`: a start condition did not hold (not a failure).
    pub condition_failed: bool,
}

impl UnitState {
    pub fn healthy(&self) -> bool {
        self.active == "active" || (self.active == "inactive" && self.condition_failed)
    }

    /// Failed, or on its way to being restarted after a failure.
    pub fn failing(&self) -> bool {
        self.active == "failed" || self.sub == "auto-restart"
    }

    /// Restarted by the agent: loaded, and enabled or running.
    pub fn restartable(&self) -> bool {
        self.load == "loaded"
            && (self.unit_file == "enabled"
                || matches!(self.active.as_str(), "active" | "activating" | "failed"))
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.active, self.sub)
    }
}

pub fn show(unit: &str) -> Result<UnitState, ToolError> {
    let out = run(Command::new("systemctl").args([
        "show",
        "-p",
        "LoadState,ActiveState,SubState,UnitFileState,ConditionResult",
        "--",
        unit,
    ]))?;
    let mut s = UnitState::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "LoadState" => s.load = v.to_owned(),
            "ActiveState" => s.active = v.to_owned(),
            "SubState" => s.sub = v.to_owned(),
            "UnitFileState" => s.unit_file = v.to_owned(),
            "ConditionResult" => s.condition_failed = v == "no",
            _ => {}
        }
    }
    Ok(s)
}

pub fn daemon_reload() -> Result<(), ToolError> {
    run(Command::new("systemctl").arg("daemon-reload"))?;
    Ok(())
}

/// Reloads the unit if it can, restarts it otherwise, after clearing a failed state (a unit
/// that failed too often is otherwise refused by its start limit). A failure to come up is
/// judged by [`wait_healthy`], which has the unit's state to report.
pub fn reload_or_restart(unit: &str) {
    let _ = run(Command::new("systemctl").args(["reset-failed", "--", unit]));
    if let Err(e) = run(Command::new("systemctl").args(["reload-or-restart", "--", unit])) {
        tracing::warn!(unit, error = %e, "restart failed");
    }
}

/// Waits until every unit is healthy, or one fails, or `deadline` passes. The error names
/// each unhealthy unit with its state and the last lines of its journal.
pub fn wait_healthy(units: &BTreeSet<String>, deadline: Duration) -> Result<(), String> {
    let until = Instant::now() + deadline;
    loop {
        let mut bad = Vec::new();
        let mut failing = false;
        for u in units {
            let s = show(u).map_err(|e| e.to_string())?;
            if !s.healthy() {
                failing |= s.failing();
                bad.push((u, s));
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        if failing || Instant::now() >= until {
            return Err(bad
                .iter()
                .map(|(u, s)| format!("unit {u} is {s}; its journal ends:\n{}", journal_tail(u, 8)))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines the unit logged.
pub fn journal_tail(unit: &str, n: usize) -> String {
    run(Command::new("journalctl").args([
        "-u",
        unit,
        "-n",
        &n.to_string(),
        "--no-pager",
        "-o",
        "cat",
    ]))
    .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
    .unwrap_or_else(|e| format!("(journalctl: {e})"))
}

#[cfg(test)]
mod tests {
    use super::units_in_paths;

    #[test]
    fn a_module_touches_the_units_and_drop_ins_it_ships() {
        let got = units_in_paths([
            "etc/systemd/system/app.service",
            "etc/systemd/system/redis-server.service.d/50-limits.conf",
            "etc/systemd/system/timers.target.wants/backup.timer",
            "usr/lib/systemd/system/app.socket",
            "etc/systemd/system/worker@.service",
            "etc/systemd/system/systemd-journald.service.d/override.conf",
            "etc/systemd/system/dbus.service.d/x.conf",
            "etc/systemd/journald.conf.d/50-powernode.conf",
            "etc/redis/redis.conf",
        ]);
        let want = [
            "app.service",
            "app.socket",
            "backup.timer",
            "redis-server.service",
        ];
        assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), want);
    }
}
