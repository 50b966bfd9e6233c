//! `POST /instances/{id}/report`: what an instance says it runs and observes. A report is the
//! node's word, never evidence; what it may say is bounded before it is stored:
//!
//! - at most [`crate::config::FleetConfig::max_reports`] per `report_window_secs` per
//!   instance (per replica), else 429 with `Retry-After`;
//! - a body of at most [`REPORT_BODY_LIMIT`] (413);
//! - the state it names must be one its template served to an instance (400 otherwise), and
//!   it lists at most as many modules as the largest state its template served, plus
//!   [`MODULE_SLACK`] (running modules and observed modules alike);
//! - the observations' own caps (modules, packages and units per module, name lengths).

use super::{Accepted, instance_auth};
use crate::http::extract as body;
use crate::{
    http::{ApiError, AppState},
    store::Report,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use powernode_module::{
    desired_state::{ModuleObservation, Report as WireReport},
    manifest::ModuleName,
    package::{self, PackageSpecError},
};
use std::{collections::BTreeMap, time::Duration};

/// The largest report body accepted (bytes): a node with 64 modules of 20 packages each
/// sends about 100 KiB.
pub const REPORT_BODY_LIMIT: usize = 256 << 10;

/// How many more modules than the largest state its template served a report may list.
pub const MODULE_SLACK: usize = 8;

pub async fn report(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
    body::Json(b): body::Json<WireReport>,
) -> Result<Response, ApiError> {
    let auth = instance_auth(&s, &h, &id).await?;
    let f = &s.config.fleet;
    let window = Duration::from_secs(f.report_window_secs);
    if let Err(wait) = s.fleet.cache.admit_report(&id, f.max_reports, window) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "instance {id} may send {} reports per {} s; send the next in {secs} s",
                f.max_reports, f.report_window_secs
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(r);
    }
    let b = b?;
    for name in b.running_module_digests.keys() {
        if ModuleName::parse(name).is_none() {
            return Err(ApiError::bad_request(format!(
                "running_module_digests: {name:?} is not a module name"
            )));
        }
    }
    if b.message.as_ref().is_some_and(|m| m.len() > 4096) {
        return Err(ApiError::bad_request("message: at most 4096 bytes"));
    }
    check_observations(&b.modules).map_err(ApiError::bad_request)?;
    let state_id = b.desired_state_id.to_string();
    let Some(most) = s.fleet.served_bound(&auth.template_id, &state_id).await? else {
        return Err(ApiError::bad_request(format!(
            "desired_state_id: template {} never served {state_id}; report the state id the receiver sent (its ETag)",
            auth.template_id
        )));
    };
    let cap = most + MODULE_SLACK;
    for (field, n) in [
        ("running_module_digests", b.running_module_digests.len()),
        ("modules", b.modules.len()),
    ] {
        if n > cap {
            return Err(ApiError::bad_request(format!(
                "{field}: at most {cap} modules (the largest state template {} served holds {most}, plus {MODULE_SLACK}), not {n}",
                auth.template_id
            )));
        }
    }
    let r = Report {
        desired_state_id: state_id,
        running_module_digests: b
            .running_module_digests
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        composefs_digest: b.composefs_digest.map(|d| d.to_string()),
        status: b.status.as_str().into(),
        message: b.message,
        modules: b.modules,
        state_bytes: b.state_bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    };
    if !s.fleet.record_report(&id, &auth.template_id, r).await? {
        return Err(ApiError::not_found(format!("no instance {id}")));
    }
    s.metrics.reports.inc();
    Ok(Json(Accepted { accepted: true }).into_response())
}

/// How much one report may observe: modules, and packages and units per module.
const MAX_OBSERVED_MODULES: usize = 64;
const MAX_OBSERVED_PACKAGES: usize = 256;
const MAX_OBSERVED_UNITS: usize = 64;
/// The longest package name, version or unit name a report may carry (bytes).
const MAX_OBSERVED_NAME: usize = 256;

/// The systemd unit types a module's unit may have.
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".timer",
    ".mount",
    ".automount",
    ".path",
    ".target",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// A unit name as systemd prints it (`redis-server.service`, `getty@tty1.service`): the
/// characters of its escaping and a known type.
fn valid_unit(u: &str) -> bool {
    u.len() <= MAX_OBSERVED_NAME
        && u.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'_' | b'.' | b'@' | b'-'))
        && UNIT_SUFFIXES
            .iter()
            .any(|s| u.len() > s.len() && u.ends_with(s))
}

/// An `ActiveState` (`active`, `failed`, `activating`, …): lowercase words and dashes.
fn valid_unit_state(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_lowercase() || c == b'-')
}

/// Bounds what a report's observations may hold; the message names the field.
fn check_observations(modules: &BTreeMap<String, ModuleObservation>) -> Result<(), String> {
    if modules.len() > MAX_OBSERVED_MODULES {
        return Err(format!(
            "modules: at most {MAX_OBSERVED_MODULES} per report, not {}",
            modules.len()
        ));
    }
    for (m, obs) in modules {
        if ModuleName::parse(m).is_none() {
            return Err(format!("modules: {m:?} is not a module name"));
        }
        if obs.packages.len() > MAX_OBSERVED_PACKAGES {
            return Err(format!(
                "modules.{m}.packages: at most {MAX_OBSERVED_PACKAGES} per module, not {}",
                obs.packages.len()
            ));
        }
        if obs.units.len() > MAX_OBSERVED_UNITS {
            return Err(format!(
                "modules.{m}.units: at most {MAX_OBSERVED_UNITS} per module, not {}",
                obs.units.len()
            ));
        }
        for (p, v) in &obs.packages {
            if p.len() > MAX_OBSERVED_NAME {
                return Err(format!(
                    "modules.{m}.packages: a package name of {} bytes (at most {MAX_OBSERVED_NAME})",
                    p.len()
                ));
            }
            if !package::valid_name(p) {
                let e = PackageSpecError::Name(p.clone());
                return Err(format!("modules.{m}.packages: {e}"));
            }
            match v {
                Some(v) if v.len() > MAX_OBSERVED_NAME => {
                    return Err(format!(
                        "modules.{m}.packages.{p}: a version of {} bytes (at most {MAX_OBSERVED_NAME})",
                        v.len()
                    ));
                }
                Some(v) if !package::valid_version(v) => {
                    let e = PackageSpecError::Version(v.clone());
                    return Err(format!("modules.{m}.packages.{p}: {e}"));
                }
                _ => {}
            }
        }
        for (u, state) in &obs.units {
            if !valid_unit(u) {
                return Err(format!(
                    "modules.{m}.units: {u:?} is not a systemd unit name ([A-Za-z0-9:_.@-], a type such as .service, at most {MAX_OBSERVED_NAME} bytes)"
                ));
            }
            if !valid_unit_state(state) {
                return Err(format!(
                    "modules.{m}.units.{u}: {state:?} is not a unit state (active, failed, inactive, …)"
                ));
            }
        }
    }
    Ok(())
}
