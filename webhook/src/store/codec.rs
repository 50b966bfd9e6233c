//! Reading typed values out of rows: each enum column is decoded once, here, into the type
//! the rest of the receiver uses, so no caller compares a column's text. The text stored is
//! the enum's serde name (what `as_str` writes), so JSON answers keep their shape.

use serde::de::DeserializeOwned;
use sqlx::{Row, any::AnyRow};
use std::{fmt::Display, str::FromStr};

/// The enum a text column holds; an unknown value is an error naming column and value (a
/// row written by a newer receiver is refused, never misread).
pub(crate) fn text_enum<T: DeserializeOwned>(r: &AnyRow, column: &str) -> anyhow::Result<T> {
    let text: String = r.try_get(column)?;
    parse(column, text)
}

/// Like [`text_enum`], for a nullable column.
pub(crate) fn opt_text_enum<T: DeserializeOwned>(
    r: &AnyRow,
    column: &str,
) -> anyhow::Result<Option<T>> {
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| parse(column, t)).transpose()
}

/// A text column holding a value of a parsed type (a digest, a module name, a version, a
/// stage), parsed once here; a value that does not parse is an error naming the column.
pub(crate) fn parsed<T>(r: &AnyRow, column: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = r.try_get(column)?;
    parse_text(column, &text)
}

/// Like [`parsed`], for a nullable column.
pub(crate) fn opt_parsed<T>(r: &AnyRow, column: &str) -> anyhow::Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| parse_text(column, &t)).transpose()
}

fn parse_text<T>(column: &str, text: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|e| anyhow::anyhow!("column {column}: {e}"))
}

fn parse<T: DeserializeOwned>(column: &str, text: String) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(text.clone()))
        .map_err(|_| anyhow::anyhow!("column {column}: unknown value {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::store::{AuditAction, JobKind, JobState, Lifecycle, Via};

    #[test]
    fn columns_decode_to_what_as_str_wrote() {
        for via in [Via::Ingest, Via::Comment, Via::Api, Via::Mcp, Via::Auto] {
            assert_eq!(parse::<Via>("via", via.as_str().into()).unwrap(), via);
        }
        for a in [
            AuditAction::Ingested,
            AuditAction::DeadLetterRetried,
            AuditAction::TransitionBreakGlass,
        ] {
            assert_eq!(
                parse::<AuditAction>("action", a.as_str().into()).unwrap(),
                a
            );
        }
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Dead,
        ] {
            assert_eq!(parse::<JobState>("state", s.as_str().into()).unwrap(), s);
        }
        for k in [
            JobKind::Ingest,
            JobKind::DesiredStates,
            JobKind::CommitStatus,
        ] {
            assert_eq!(parse::<JobKind>("kind", k.as_str().into()).unwrap(), k);
        }
        // A kind from a newer receiver is kept by name, for the worker to dead-letter.
        assert_eq!(
            parse::<JobKind>("kind", "frobnicate".into()).unwrap(),
            JobKind::Unknown("frobnicate".into())
        );
        assert_eq!(
            parse::<Lifecycle>("to_state", "live".into()).unwrap(),
            Lifecycle::Live
        );
        let e = parse::<Via>("via", "carrier-pigeon".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column via: unknown value \"carrier-pigeon\""
        );
    }
}
