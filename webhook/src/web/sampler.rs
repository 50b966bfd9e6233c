//! The history the console's charts draw: every `[web] sample_interval_secs`, the fleet's
//! count of instances per drift state (series `drift`) and, per module, how many instances
//! run each of its versions (series `adoption:<module>`). A sample belongs to the period it
//! falls in, and a period is written once, so replicas sampling together add nothing.
//! Tests take samples with [`sample`] instead of waiting for the timer.

use crate::{fleet::judge::DriftState, http::AppState};
use std::collections::BTreeMap;
use tokio::sync::watch;

/// Takes one sample of every series now.
pub async fn sample(s: &AppState) -> anyhow::Result<()> {
    let cfg = &s.config.web;
    let period = cfg.sample_interval_secs as i64 * 1000;
    let now = s.store.now();
    let at = now - now.rem_euclid(period);
    let keep_after = now - cfg.sample_retention_days * 86_400_000;
    // Reported digests → (module, version).
    let versions: BTreeMap<String, (String, String)> = s
        .store
        .composefs_digests()
        .await?
        .into_iter()
        .map(|(m, v, d)| (d, (m, v)))
        .collect();
    // One walk of the fleet gives both series: each instance's drift state, and which
    // version of each module it runs.
    let mut drift: BTreeMap<&str, i64> = DriftState::ALL.iter().map(|d| (d.as_str(), 0)).collect();
    let mut adoption: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    s.fleet
        .judge_reports(None, |row, d| {
            let state = d.as_ref().map_or(DriftState::InSync, DriftState::of);
            *drift.entry(state.as_str()).or_default() += 1;
            for (module, digest) in row.running()? {
                let version = match versions.get(&digest) {
                    Some((m, v)) if *m == module => v.clone(),
                    _ => "unknown".to_owned(),
                };
                *adoption
                    .entry(module)
                    .or_default()
                    .entry(version)
                    .or_default() += 1;
            }
            Ok(())
        })
        .await?;
    let counts: Vec<(String, i64)> = drift.into_iter().map(|(k, v)| (k.into(), v)).collect();
    s.store
        .record_samples("drift", at, &counts, keep_after)
        .await?;
    for (module, by_version) in adoption {
        let counts: Vec<(String, i64)> = by_version.into_iter().collect();
        s.store
            .record_samples(&format!("adoption:{module}"), at, &counts, keep_after)
            .await?;
    }
    Ok(())
}

/// Samples every interval until `stop` turns true.
pub async fn run_until(s: AppState, mut stop: watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(s.config.web.sample_interval_secs.max(10));
    loop {
        if let Err(e) = sample(&s).await {
            tracing::warn!(error = %format!("{e:#}"), "web console: sampling the fleet failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
