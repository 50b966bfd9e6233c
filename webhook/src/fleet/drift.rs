//! Drift: what an instance reported running against what its template's served desired
//! state says it should run. Pure: the API and the fleet summary feed it rows.

use powernode_module::desired_state::DesiredState;
use serde::Serialize;
use std::collections::BTreeMap;

/// A module running at another composefs digest than desired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Outdated {
    pub module: String,
    pub running: String,
    pub desired: String,
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
    /// The merged tree's digest differs from the predicted one (or was not reported).
    pub composefs_mismatch: bool,
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
}

/// A served desired state as drift compares it: prepared once per template, then compared
/// with every instance of it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub state_id: String,
    /// Module → composefs digest, as instances report them.
    pub modules: BTreeMap<String, String>,
    pub composefs_digest: String,
    /// `modules` as the JSON text a matching report is stored as (sorted keys).
    pub running_text: String,
}

impl Desired {
    /// Whether a stored report certainly shows no drift, judged on its stored text alone
    /// (the fleet summary's fast path; anything else goes through [`drift`]).
    pub fn in_sync_as_stored(
        &self,
        running_text: Option<&str>,
        composefs_digest: Option<&str>,
        status: Option<&str>,
        last_report_at: Option<i64>,
        now: i64,
        stale_after_ms: i64,
    ) -> bool {
        status == Some("applied")
            && running_text == Some(self.running_text.as_str())
            && composefs_digest == Some(self.composefs_digest.as_str())
            && last_report_at.is_some_and(|at| now - at <= stale_after_ms)
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
        }
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
    let composefs_mismatch =
        desired.is_some_and(|d| observed.composefs_digest != Some(d.composefs_digest.as_str()));
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
        composefs_mismatch,
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
        };
        DesiredState {
            schema_version: SCHEMA_VERSION,
            template_id: "t".into(),
            platform: "p".into(),
            modules: vec![m("base", 'a'), m("redis", 'b')],
            composefs_digest: d('f'),
            composefs_format: 1,
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
        let obs = |running, composefs| Observed {
            running,
            composefs_digest: composefs,
            reported_state_id: Some("sha256:x"),
            status: Some("applied"),
            last_report_at: Some(1_000),
        };
        let ok = drift(Some(&s), obs(&exact, Some(&merged)), 2_000, 60_000);
        assert!(!ok.drift, "{ok:?}");
        // The stored form of the same report passes the fast path; a changed one does not.
        let text = serde_json::to_string(&exact).unwrap();
        let fast = |t: &str, now| {
            s.in_sync_as_stored(
                Some(t),
                Some(&merged),
                Some("applied"),
                Some(1_000),
                now,
                60_000,
            )
        };
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
}
