//! `manifest.yaml` v1: typed values, parsing with line/field errors, path selection and lint.
//!
//! Parsing is two steps. [`parse`] turns YAML into a [`Manifest`] whose every value has been
//! checked on its own (names, regexps, globs, modes); it fails with findings that name the
//! field, line and column. [`lint`] then checks the manifest against the files it would ship.

mod parse;
mod select;
mod types;

pub use parse::{ParseOutcome, parse};
pub use select::{PathSelector, SelectError};
pub use types::*;

/// The file name of the manifest inside a module directory and inside an artifact.
pub const FILE_NAME: &str = "manifest.yaml";

/// Rules that need the list of shipped paths (target paths like `/etc/redis/redis.conf`).
mod lint;
pub use lint::{ShippedKind, lint};
