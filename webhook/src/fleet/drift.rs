//! Drift: what an instance reported running against what its template's served desired
//! state says it should run. Pure: the API and the fleet summary feed it rows.
//!
//! Besides the modules' digests, a report may carry what the node observed of each module's
//! Debian packages and systemd units; those are judged only for the modules it observed
//! (older agents observe none, and then no package or unit finding is made).

use crate::store::StoredReport;
use powernode_module::{
    desired_state::{DesiredState, ModuleObservation},
    package::PackageSpec,
};
use serde::Serialize;
use std::collections::BTreeMap;

mod yanked;
pub use yanked::YankedRunning;

/// A module running at another composefs digest than desired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Outdated {
    pub module: String,
    pub running: String,
    pub desired: String,
}

/// A package a desired module names that the instance reported not installed, or left out
/// of its observation of a module it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PackageMissing {
    pub module: String,
    pub package: String,
}

/// A package installed at another version than the exact one the desired module pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PackageVersion {
    pub module: String,
    pub package: String,
    pub installed: String,
    pub desired: String,
}

/// A unit of a module the instance reported in the `failed` state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UnitFailed {
    pub module: String,
    pub unit: String,
}

/// The drift of one instance, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Drift {
    pub drift: bool,
    /// Desired modules the instance does not run.
    pub missing: Vec<String>,
    /// Modules the instance runs that are not desired.
    pub unexpected: Vec<String>,
    pub outdated: Vec<Outdated>,
    /// Packages desired modules name that are not installed.
    pub package_missing: Vec<PackageMissing>,
    /// Packages installed at another version than the pinned one.
    pub package_version: Vec<PackageVersion>,
    /// Units reported `failed`.
    pub unit_failed: Vec<UnitFailed>,
    /// Modules running at a yanked version's digest (yank is the emergency switch).
    pub yanked_running: Vec<YankedRunning>,
    /// The merged tree's digest differs from the predicted one (or was not reported).
    pub composefs_mismatch: bool,
    /// The report names another state than the served one (one it has not applied yet).
    pub state_mismatch: bool,
    /// No report within the configured interval (or never).
    pub stale: bool,
    /// The desired state compared against (`None`: the template serves none yet).
    pub desired_state_id: Option<String>,
    pub reported_state_id: Option<String>,
    /// The last reported status (`applied`, `failed`, `rejected`).
    pub status: Option<String>,
    /// One sentence per reason, for people.
    pub reasons: Vec<String>,
}

/// What the instance last said.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub running: &'a BTreeMap<String, String>,
    pub composefs_digest: Option<&'a str>,
    pub reported_state_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub last_report_at: Option<i64>,
    /// Per module, its packages and units as observed (empty: the report carried none).
    pub modules: &'a BTreeMap<String, ModuleObservation>,
}

/// A served desired state as drift compares it: prepared once per template, then compared
/// with every instance of it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub state_id: String,
    /// Module → composefs digest, as instances report them.
    pub modules: BTreeMap<String, String>,
    pub composefs_digest: String,
    /// Module → the packages it names (modules that name none are left out).
    pub packages: BTreeMap<String, Vec<PackageSpec>>,
    /// `modules` as the JSON text a matching report is stored as (sorted keys).
    pub running_text: String,
    /// Composefs digest of every yanked version → `module version`.
    pub yanked: BTreeMap<String, String>,
}

impl Desired {
    /// Whether a stored report certainly shows no drift, judged on its stored digests' text
    /// and its observations (the fleet summary's fast path; anything else goes through
    /// [`drift`]).
    pub fn in_sync_as_stored(&self, r: &StoredReport, now: i64, stale_after_ms: i64) -> bool {
        r.status.as_deref() == Some("applied")
            && r.reported_state_id.as_deref() == Some(self.state_id.as_str())
            && r.running_module_digests.as_deref() == Some(self.running_text.as_str())
            && r.composefs_digest.as_deref() == Some(self.composefs_digest.as_str())
            && r.last_report_at.is_some_and(|at| now - at <= stale_after_ms)
            && !self.modules.values().any(|d| self.yanked.contains_key(d))
            // The same text: the instance runs exactly the desired modules.
            && Observations::of(Some(self), &self.modules, &r.modules).is_empty()
    }

    pub fn of(state_id: &str, d: &DesiredState) -> Desired {
        let modules: BTreeMap<String, String> = d
            .modules
            .iter()
            .map(|m| (m.name.clone(), m.composefs_digest.to_string()))
            .collect();
        Desired {
            state_id: state_id.to_owned(),
            running_text: serde_json::to_string(&modules).unwrap_or_default(),
            modules,
            composefs_digest: d.composefs_digest.to_string(),
            packages: d
                .modules
                .iter()
                .filter(|m| !m.packages.is_empty())
                .map(|m| (m.name.clone(), m.packages.clone()))
                .collect(),
            yanked: BTreeMap::new(),
        }
    }

    /// With the digests of the yanked versions (`Store::yanked_digests`), so that running
    /// one is drift whatever the state says.
    pub fn with_yanked(mut self, yanked: BTreeMap<String, String>) -> Desired {
        self.yanked = yanked;
        self
    }
}

/// The package and unit findings of one report.
#[derive(Debug, Default)]
struct Observations {
    package_missing: Vec<PackageMissing>,
    package_version: Vec<PackageVersion>,
    unit_failed: Vec<UnitFailed>,
}

impl Observations {
    /// Judges each observed module: the packages its desired entry names (reported not
    /// installed; absent while the module runs; installed at another version than pinned)
    /// and its units (`failed`). Modules without an observation are not judged.
    fn of(
        desired: Option<&Desired>,
        running: &BTreeMap<String, String>,
        observed: &BTreeMap<String, ModuleObservation>,
    ) -> Observations {
        let mut out = Observations::default();
        for (module, obs) in observed {
            let specs = desired.and_then(|d| d.packages.get(module));
            for spec in specs.into_iter().flatten() {
                match obs.packages.get(&spec.name) {
                    Some(None) => out.missing(module, spec),
                    None if running.contains_key(module) => out.missing(module, spec),
                    None => {}
                    Some(Some(installed)) => {
                        if let Some(want) = &spec.version
                            && want != installed
                        {
                            out.package_version.push(PackageVersion {
                                module: module.clone(),
                                package: spec.name.clone(),
                                installed: installed.clone(),
                                desired: want.clone(),
                            });
                        }
                    }
                }
            }
            for (unit, state) in &obs.units {
                if state == "failed" {
                    out.unit_failed.push(UnitFailed {
                        module: module.clone(),
                        unit: unit.clone(),
                    });
                }
            }
        }
        out
    }

    fn missing(&mut self, module: &str, spec: &PackageSpec) {
        self.package_missing.push(PackageMissing {
            module: module.to_owned(),
            package: spec.name.clone(),
        });
    }

    fn is_empty(&self) -> bool {
        self.package_missing.is_empty()
            && self.package_version.is_empty()
            && self.unit_failed.is_empty()
    }
}

/// Compares `observed` with `desired` at `now` (ms); a report older than `stale_after_ms`
/// is stale.
pub fn drift(
    desired: Option<&Desired>,
    observed: Observed<'_>,
    now: i64,
    stale_after_ms: i64,
) -> Drift {
    let none = BTreeMap::new();
    let want = desired.map_or(&none, |d| &d.modules);
    let running = observed.running;
    let mut reasons = Vec::new();
    let missing: Vec<String> = want
        .keys()
        .filter(|m| !running.contains_key(*m))
        .cloned()
        .collect();
    let unexpected: Vec<String> = running
        .keys()
        .filter(|m| !want.contains_key(*m))
        .cloned()
        .collect();
    let outdated: Vec<Outdated> = want
        .iter()
        .filter_map(|(m, d)| {
            let r = running.get(m)?;
            (r != d).then(|| Outdated {
                module: m.clone(),
                running: r.clone(),
                desired: d.clone(),
            })
        })
        .collect();
    let obs = Observations::of(desired, running, observed.modules);
    let yanked_running = yanked::running(desired, running);
    let composefs_mismatch =
        desired.is_some_and(|d| observed.composefs_digest != Some(d.composefs_digest.as_str()));
    // The state a report names is the node's word too: matching digests under another
    // state id is not "in sync" (the receiver refuses ids its template never served).
    let state_mismatch = desired
        .zip(observed.reported_state_id)
        .is_some_and(|(d, r)| r != d.state_id);
    let stale = match observed.last_report_at {
        None => true,
        Some(at) => now - at > stale_after_ms,
    };
    for m in &missing {
        reasons.push(format!("{m} is desired but not running"));
    }
    for m in &unexpected {
        reasons.push(format!("{m} is running but not desired"));
    }
    for o in &outdated {
        reasons.push(format!(
            "{} runs {} where {} is desired",
            o.module, o.running, o.desired
        ));
    }
    for p in &obs.package_missing {
        reasons.push(format!(
            "{} needs {}, which is not installed",
            p.module, p.package
        ));
    }
    for p in &obs.package_version {
        reasons.push(format!(
            "{} needs {}={} but {} is installed",
            p.module, p.package, p.desired, p.installed
        ));
    }
    for u in &obs.unit_failed {
        reasons.push(format!("{} of {} has failed", u.unit, u.module));
    }
    reasons.extend(yanked_running.iter().map(yanked::sentence));
    if let (true, Some(d), Some(r)) = (state_mismatch, desired, observed.reported_state_id) {
        reasons.push(format!(
            "the instance reports state {r}, not the served {}",
            d.state_id
        ));
    }
    if composefs_mismatch {
        reasons.push(match observed.composefs_digest {
            Some(c) => format!("the merged tree measures {c}, not the predicted digest"),
            None => "no merged composefs digest was reported".into(),
        });
    }
    match observed.last_report_at {
        None => reasons.push("the instance has never reported".into()),
        Some(at) if stale => reasons.push(format!(
            "no report for {} s (stale after {} s)",
            (now - at) / 1000,
            stale_after_ms / 1000
        )),
        Some(_) => {}
    }
    if let Some(s @ ("failed" | "rejected")) = observed.status {
        reasons.push(format!("the last apply {s}"));
    }
    Drift {
        drift: !reasons.is_empty(),
        missing,
        unexpected,
        outdated,
        package_missing: obs.package_missing,
        package_version: obs.package_version,
        unit_failed: obs.unit_failed,
        yanked_running,
        composefs_mismatch,
        state_mismatch,
        stale,
        desired_state_id: desired.map(|d| d.state_id.clone()),
        reported_state_id: observed.reported_state_id.map(str::to_owned),
        status: observed.status.map(str::to_owned),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_module::{
        desired_state::{DesiredModule, SCHEMA_VERSION, SignerPolicy},
        digest::Digest,
    };

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn state() -> DesiredState {
        let m = |name: &str, c| DesiredModule {
            name: name.into(),
            version: "1.0.0".into(),
            reference: format!("r/{name}@{}", d(c)),
            manifest_digest: d(c),
            composefs_digest: d(c),
            signer: SignerPolicy::default(),
            packages: Vec::new(),
        };
        DesiredState {
            schema_version: SCHEMA_VERSION,
            template_id: "t".into(),
            sequence: 1,
            issued_at: 0,
            expires_at: 1,
            hold: None,
            platform: "p".into(),
            modules: vec![m("base", 'a'), m("redis", 'b')],
            composefs_digest: d('f'),
            composefs_format: 1,
        }
    }

    /// An `applied` report stored at 1 s, as the fleet summary reads it.
    fn stored(
        running_text: &str,
        composefs: &str,
        modules: BTreeMap<String, ModuleObservation>,
    ) -> StoredReport {
        StoredReport {
            id: "i".into(),
            template_id: "t".into(),
            last_report_at: Some(1_000),
            reported_state_id: Some("sha256:x".into()),
            running_module_digests: Some(running_text.into()),
            composefs_digest: Some(composefs.into()),
            status: Some("applied".into()),
            modules,
        }
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let s = Desired::of("sha256:x", &state());
        let merged = d('f').to_string();
        let exact: BTreeMap<String, String> = [
            ("base".to_string(), d('a').to_string()),
            ("redis".to_string(), d('b').to_string()),
        ]
        .into();
        let none = BTreeMap::new();
        let obs = |running, composefs| Observed {
            running,
            composefs_digest: composefs,
            reported_state_id: Some("sha256:x"),
            status: Some("applied"),
            last_report_at: Some(1_000),
            modules: &none,
        };
        let ok = drift(Some(&s), obs(&exact, Some(&merged)), 2_000, 60_000);
        assert!(!ok.drift, "{ok:?}");
        // The stored form of the same report passes the fast path; a changed one does not.
        let text = serde_json::to_string(&exact).unwrap();
        let fast =
            |t: &str, now| s.in_sync_as_stored(&stored(t, &merged, BTreeMap::new()), now, 60_000);
        assert!(fast(&text, 2_000));
        assert!(!fast(&text, 120_000), "stale");
        assert!(!fast(&text.replace("base", "bass"), 2_000));
        assert!(ok.reasons.is_empty());

        let mut other: BTreeMap<String, String> = exact.clone();
        other.insert("redis".into(), d('c').to_string());
        other.remove("base");
        other.insert("extra".into(), d('e').to_string());
        let bad = drift(Some(&s), obs(&other, Some("sha256:0")), 2_000, 60_000);
        assert!(bad.drift);
        assert_eq!(bad.missing, ["base"]);
        assert_eq!(bad.unexpected, ["extra"]);
        assert_eq!(
            bad.outdated,
            [Outdated {
                module: "redis".into(),
                running: d('c').to_string(),
                desired: d('b').to_string()
            }]
        );
        assert!(bad.composefs_mismatch && !bad.stale);

        let stale = drift(Some(&s), obs(&exact, Some(&merged)), 120_000, 60_000);
        assert!(stale.drift && stale.stale, "{stale:?}");
        let never = drift(
            Some(&s),
            Observed {
                last_report_at: None,
                ..obs(&exact, Some(&merged))
            },
            0,
            60_000,
        );
        assert!(
            never.stale && never.reasons[0].contains("never"),
            "{never:?}"
        );
    }

    /// `redis` names a pinned and an unpinned package; `base` names none.
    fn with_packages() -> Desired {
        let mut st = state();
        st.modules[1].packages = vec![
            "redis-server=5:7.0.15-1".parse().unwrap(),
            "redis-tools".parse().unwrap(),
        ];
        Desired::of("sha256:x", &st)
    }

    fn observation(packages: &[(&str, Option<&str>)], units: &[(&str, &str)]) -> ModuleObservation {
        ModuleObservation {
            packages: packages
                .iter()
                .map(|(p, v)| (p.to_string(), v.map(str::to_owned)))
                .collect(),
            units: units
                .iter()
                .map(|(u, s)| (u.to_string(), s.to_string()))
                .collect(),
        }
    }

    #[test]
    fn packages_and_units_are_judged_only_where_observed() {
        let s = with_packages();
        let merged = d('f').to_string();
        let running = s.modules.clone();
        let judge = |modules: &BTreeMap<String, ModuleObservation>| {
            let obs = Observed {
                running: &running,
                composefs_digest: Some(&merged),
                reported_state_id: Some("sha256:x"),
                status: Some("applied"),
                last_report_at: Some(1_000),
                modules,
            };
            let fast = s.in_sync_as_stored(
                &stored(&s.running_text, &merged, modules.clone()),
                2_000,
                60_000,
            );
            let d = drift(Some(&s), obs, 2_000, 60_000);
            assert_eq!(fast, !d.drift, "the fast path agrees: {d:?}");
            d
        };

        // An older agent observes nothing: nothing is judged.
        assert!(!judge(&BTreeMap::new()).drift);
        let healthy: BTreeMap<String, ModuleObservation> = [
            (
                "redis".to_string(),
                observation(
                    &[
                        ("redis-server", Some("5:7.0.15-1")),
                        ("redis-tools", Some("5:7.0.11-1")),
                    ],
                    &[("redis-server.service", "active")],
                ),
            ),
            (
                "base".to_string(),
                observation(&[], &[("ssh.service", "inactive")]),
            ),
        ]
        .into();
        assert!(!judge(&healthy).drift);

        let sick: BTreeMap<String, ModuleObservation> = [(
            "redis".to_string(),
            observation(
                &[("redis-server", Some("5:7.0.11-1")), ("other", None)],
                &[
                    ("redis-server.service", "failed"),
                    ("redis.socket", "active"),
                ],
            ),
        )]
        .into();
        let bad = judge(&sick);
        assert_eq!(
            bad.package_missing,
            [PackageMissing {
                module: "redis".into(),
                package: "redis-tools".into()
            }],
            "absent from the observation of a running module"
        );
        assert_eq!(
            bad.package_version,
            [PackageVersion {
                module: "redis".into(),
                package: "redis-server".into(),
                installed: "5:7.0.11-1".into(),
                desired: "5:7.0.15-1".into()
            }]
        );
        assert_eq!(
            bad.unit_failed,
            [UnitFailed {
                module: "redis".into(),
                unit: "redis-server.service".into()
            }]
        );
        assert_eq!(
            bad.reasons,
            [
                "redis needs redis-tools, which is not installed",
                "redis needs redis-server=5:7.0.15-1 but 5:7.0.11-1 is installed",
                "redis-server.service of redis has failed",
            ]
        );

        // Reported not installed counts even where the module does not run; absent does not.
        let mut gone = healthy.clone();
        gone.get_mut("redis")
            .unwrap()
            .packages
            .insert("redis-tools".into(), None);
        assert_eq!(judge(&gone).package_missing[0].package, "redis-tools");
        let only_base: BTreeMap<String, String> = [("base".to_string(), d('a').to_string())].into();
        let partial: BTreeMap<String, ModuleObservation> =
            [("redis".to_string(), observation(&[], &[]))].into();
        let d = drift(
            Some(&s),
            Observed {
                running: &only_base,
                composefs_digest: Some(&merged),
                reported_state_id: None,
                status: Some("failed"),
                last_report_at: Some(1_000),
                modules: &partial,
            },
            2_000,
            60_000,
        );
        assert_eq!(d.missing, ["redis"]);
        assert!(d.package_missing.is_empty(), "{d:?}");
    }
}
