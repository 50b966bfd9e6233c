//! Findings: what validation says about a module, with stable codes a machine can match on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad a finding is. Errors and conflicts make a module invalid; warnings do not.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest or rootfs cannot be used as it is.
    Error,
    /// Two parts of the module contradict each other (the module is invalid).
    Conflict,
    /// Allowed, but probably not what the author meant.
    Warning,
}

/// A stable, machine-matchable code. The string form (`NAME_INVALID`) is part of the CLI's
/// JSON contract: add codes, never rename them.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    // --- errors: the manifest itself ---
    ManifestMissing,
    YamlInvalid,
    FieldUnknown,
    FieldMissing,
    FieldInvalid,
    SchemaVersionUnsupported,
    NameInvalid,
    RegexInvalid,
    PathInvalid,
    GlobInvalid,
    ModeInvalid,
    PackageInvalid,
    DependencyInvalid,
    CategoryMismatch,
    // --- errors: the rootfs ---
    RootfsMissing,
    RootfsUnsupportedType,
    RootfsHardlink,
    RootfsSymlinkEscapes,
    RootfsNameInvalid,
    RootfsUnreadable,
    // --- conflicts: parts of the module contradict each other ---
    DependencyDuplicate,
    DependencySelf,
    ProtectedExcluded,
    ModeNotShipped,
    MaskShipped,
    // --- conflicts: composing several modules (`compose`) ---
    ModuleDuplicate,
    EntryInvalid,
    DepMissing,
    DepCycle,
    MaskForbidden,
    TypeConflict,
    ProtectedDuplicate,
    ProtectedOverridden,
    // --- warnings ---
    IdentityRegexUnanchored,
    IdentityUnpinned,
    IncludeMatchesNothing,
    ProtectedNotShipped,
    MaskOutsideConfig,
    PackageDuplicate,
    NothingShipped,
    // --- warnings: composing several modules (`compose`) ---
    ProtectedDropped,
    FileShadowed,
    MaskUnused,
    // --- warnings: a template's desired state ---
    /// An assigned module has no live version matching the assignment (left out for now).
    AssignmentUnresolved,
}

impl Code {
    /// The `SCREAMING_SNAKE_CASE` name used in JSON and human output.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Severity is a property of the code, so the same problem is never an error in one place
    /// and a warning in another.
    pub fn severity(self) -> Severity {
        use Code::*;
        match self {
            DependencyDuplicate | DependencySelf | ProtectedExcluded | ModeNotShipped
            | MaskShipped | ModuleDuplicate | EntryInvalid | DepMissing | DepCycle
            | MaskForbidden | TypeConflict | ProtectedDuplicate | ProtectedOverridden => {
                Severity::Conflict
            }
            IdentityRegexUnanchored
            | IdentityUnpinned
            | IncludeMatchesNothing
            | ProtectedNotShipped
            | MaskOutsideConfig
            | PackageDuplicate
            | NothingShipped
            | ProtectedDropped
            | FileShadowed
            | MaskUnused
            | AssignmentUnresolved => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// A 1-based line and column in `manifest.yaml`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl From<serde_saphyr::Location> for Position {
    fn from(l: serde_saphyr::Location) -> Self {
        Position {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// One thing validation found.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// Dotted field path in the manifest (`identity.name`, `file_spec.include[1]`), or the
    /// rootfs path for rootfs problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The file the finding is about (`manifest.yaml`, `rootfs/dev/null`).
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    pub message: String,
}

impl Finding {
    pub fn new(code: Code, file: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            field: None,
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn at(mut self, pos: Option<Position>) -> Self {
        if let Some(p) = pos {
            self.line = Some(p.line);
            self.column = Some(p.column);
        }
        self
    }

    fn sort_key(&self) -> (Code, &str, Option<u64>, Option<u64>, &Option<String>, &str) {
        (
            self.code,
            &self.file,
            self.line,
            self.column,
            &self.field,
            &self.message,
        )
    }
}

impl fmt::Display for Finding {
    /// `manifest.yaml:3:9: error[NAME_INVALID] identity.name: must match …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Conflict => "conflict",
            Severity::Warning => "warning",
        };
        write!(f, ": {sev}[{}] ", self.code)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The outcome of validating a module: the JSON shape `module-builder validate` prints.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub valid: bool,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub conflicts: Vec<Finding>,
}

impl Report {
    /// Sorts findings into their buckets, in a stable order (code, then place).
    pub fn from_findings(findings: impl IntoIterator<Item = Finding>) -> Self {
        let mut r = Report::default();
        for f in findings {
            match f.severity {
                Severity::Error => r.errors.push(f),
                Severity::Conflict => r.conflicts.push(f),
                Severity::Warning => r.warnings.push(f),
            }
        }
        for list in [&mut r.errors, &mut r.warnings, &mut r.conflicts] {
            list.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            list.dedup();
        }
        r.valid = r.errors.is_empty() && r.conflicts.is_empty();
        r
    }

    pub fn all(&self) -> impl Iterator<Item = &Finding> {
        self.errors
            .iter()
            .chain(self.conflicts.iter())
            .chain(self.warnings.iter())
    }
}
