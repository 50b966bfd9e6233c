//! The console's pages, a file per family. Each handler authenticates ([`Session`]),
//! parses, reads or acts, and renders a template of `webhook/templates/web/`.
//!
//! [`Session`]: super::session::Session

pub mod fleet;
pub mod modules;
pub mod templates;
pub mod versions;

/// A stored `missing` item (what a promotion request waits for) as a sentence.
pub fn missing_sentence(m: &serde_json::Value) -> String {
    let n = |k: &str| m[k].as_i64().unwrap_or(0);
    let t = |k: &str| m[k].as_str().unwrap_or("?").to_owned();
    match m["kind"].as_str().unwrap_or("") {
        "approvals" => format!("{} of {} required approvals", n("have"), n("need")),
        "check" => match m["state"].as_str() {
            Some(s) => format!("check `{}` is {s}, not success", t("context")),
            None => format!("check `{}` has not reported", t("context")),
        },
        "soak" => format!(
            "{} more soak time in the current stage",
            duration(n("remaining_secs"))
        ),
        "source_commit" => {
            "approvals are required, but the version names no source commit to approve".into()
        }
        "reason" => "a yank needs a reason".into(),
        "not_allowed" => format!("{} → {} is not a lifecycle step", t("from"), t("to")),
        "permission" => format!(
            "needs {} permission on the module's repository; the requester has {}",
            t("need"),
            m["has"].as_str().unwrap_or("none")
        ),
        _ => m.to_string(),
    }
}

/// `2 h 5 min`, `40 s`.
pub fn duration(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}
