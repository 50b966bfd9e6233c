//! YAML → [`Manifest`], with every error naming the field, line and column.

use super::{
    At, Category, Dependency, FILE_NAME, FileSpec, Identity, Manifest, Mode, ModuleName, NAME_RULE,
    PathSelector, Pattern, Variety, select,
};
use crate::diagnostics::{Code, Finding, Position};
use crate::package::PackageSpec;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};

// The raw shape, exactly as written. `deny_unknown_fields` everywhere: a typo must not pass.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    schema_version: Spanned<u32>,
    identity: RawIdentity,
    #[serde(default)]
    package_spec: Vec<Spanned<String>>,
    file_spec: RawFileSpec,
    #[serde(default)]
    protected_spec: Vec<Spanned<String>>,
    #[serde(default)]
    dependency_spec: Vec<RawDependency>,
    #[serde(default)]
    modes: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    mask: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: Spanned<String>,
    category: Spanned<Category>,
    variety: Variety,
    #[serde(default)]
    description: String,
    #[serde(default)]
    cosign_identity_regexp: Option<Spanned<String>>,
    #[serde(default)]
    cosign_issuer_regexp: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSpec {
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependency {
    name: Spanned<String>,
}

/// What parsing found: the manifest when it has no errors, and every finding either way.
#[derive(Debug)]
pub struct ParseOutcome {
    pub manifest: Option<Manifest>,
    pub findings: Vec<Finding>,
}

fn pos<T>(s: &Spanned<T>) -> Option<Position> {
    Some(s.referenced.into())
}

/// Parses and checks `manifest.yaml` text. Errors name the field and position; the pure
/// lints (that do not need the rootfs) are reported as well.
pub fn parse(text: &str) -> ParseOutcome {
    let raw = match deserialize(text) {
        Ok(raw) => raw,
        Err(f) => {
            return ParseOutcome {
                manifest: None,
                findings: vec![f],
            };
        }
    };
    let mut c = Checker::default();
    let manifest = c.check(raw);
    let has_errors = c.findings.iter().any(|f| {
        f.severity == crate::diagnostics::Severity::Error
            || f.severity == crate::diagnostics::Severity::Conflict
    });
    ParseOutcome {
        manifest: if has_errors { None } else { manifest },
        findings: c.findings,
    }
}

fn deserialize(text: &str) -> Result<Raw, Finding> {
    let options = serde_saphyr::options! { with_snippet: false };
    // First as any YAML at all, so a syntax error is reported as one rather than as a problem
    // with whichever field the parser happened to be in.
    if let Err(e) =
        serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(text, options.clone())
    {
        return Err(Finding::new(
            Code::YamlInvalid,
            FILE_NAME,
            format!("not valid YAML: {}", error_message(&e)),
        )
        .at(e.location().map(Position::from)));
    }
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let message = error_message(&e);
        let code = if message.starts_with("unknown field") {
            Code::FieldUnknown
        } else if message.starts_with("missing field") {
            Code::FieldMissing
        } else if path.is_empty() || path == "." {
            return Finding::new(
                Code::YamlInvalid,
                FILE_NAME,
                format!("the manifest must be a YAML mapping that starts with `schema_version: 1` ({message})"),
            )
            .at(e.location().map(Position::from));
        } else {
            Code::FieldInvalid
        };
        let mut field = clean_path(&path);
        if code == Code::FieldMissing {
            // The path is the mapping that lacks the key; name the key itself, as
            // FIELD_UNKNOWN does (`identity.name`, not `identity`).
            if let Some(key) = message.split('`').nth(1) {
                field = if field.is_empty() {
                    key.to_string()
                } else {
                    format!("{field}.{key}")
                };
            }
        }
        let mut f = Finding::new(code, FILE_NAME, message).at(e.location().map(Position::from));
        if !field.is_empty() {
            f = f.field(field);
        }
        f
    })
}

/// serde-saphyr renders its location into the message; we report it in its own fields.
fn error_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or_default();
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    trimmed.trim().to_string()
}

/// `serde_path_to_error` shows the `Spanned` wrapper's inner field; drop it.
fn clean_path(p: &str) -> String {
    p.replace(".value", "").trim_matches('.').to_string()
}

#[derive(Default)]
struct Checker {
    findings: Vec<Finding>,
}

impl Checker {
    fn push(
        &mut self,
        code: Code,
        field: impl Into<String>,
        at: Option<Position>,
        msg: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(code, FILE_NAME, msg).field(field).at(at));
    }

    fn check(&mut self, raw: Raw) -> Option<Manifest> {
        if raw.schema_version.value != 1 {
            self.push(
                Code::SchemaVersionUnsupported,
                "schema_version",
                pos(&raw.schema_version),
                format!(
                    "schema_version {} is not supported; this module-builder reads schema_version 1",
                    raw.schema_version.value
                ),
            );
        }
        let name = ModuleName::parse(&raw.identity.name.value);
        if name.is_none() {
            self.push(
                Code::NameInvalid,
                "identity.name",
                pos(&raw.identity.name),
                format!("{NAME_RULE} (got {:?})", raw.identity.name.value),
            );
        }
        let identity_re = self.regex(
            "identity.cosign_identity_regexp",
            &raw.identity.cosign_identity_regexp,
        );
        let issuer_re = self.regex(
            "identity.cosign_issuer_regexp",
            &raw.identity.cosign_issuer_regexp,
        );
        if identity_re.is_none() && raw.identity.cosign_identity_regexp.is_none() {
            self.findings.push(
                Finding::new(
                    Code::IdentityUnpinned,
                    FILE_NAME,
                    "no cosign_identity_regexp: keyless signatures of this module cannot be tied to its repository",
                )
                .field("identity.cosign_identity_regexp"),
            );
        }

        let packages = self.packages(&raw.package_spec);
        let include = self.paths("file_spec.include", &raw.file_spec.include);
        let exclude = self.paths("file_spec.exclude", &raw.file_spec.exclude);
        let protected = self.paths("protected_spec", &raw.protected_spec);
        let mask = self.paths("mask", &raw.mask);
        let modes = self.modes(&raw.modes);
        let deps = self.dependencies(name.as_ref(), &raw.dependency_spec);

        if raw.identity.variety != Variety::Config {
            for (i, m) in mask.iter().enumerate() {
                self.push(
                    Code::MaskOutsideConfig,
                    format!("mask[{i}]"),
                    m.pos,
                    format!(
                        "only `variety: config` modules may mask paths; {:?} will be ignored by composition",
                        m.value
                    ),
                );
            }
        }
        for (i, p) in protected.iter().enumerate() {
            if select::compile(&p.value).is_ok() && excluded_by(&exclude, &p.value) {
                self.push(
                    Code::ProtectedExcluded,
                    format!("protected_spec[{i}]"),
                    p.pos,
                    format!(
                        "{:?} is protected but file_spec.exclude removes it",
                        p.value
                    ),
                );
            }
        }

        let values = |v: &[At<String>]| v.iter().map(|a| a.value.clone()).collect::<Vec<_>>();
        let selector = PathSelector::new(
            &values(&include),
            &values(&exclude),
            &values(&protected),
            &values(&mask),
        );
        Some(Manifest {
            schema_version: raw.schema_version.value,
            identity: Identity {
                name: name?,
                category: raw.identity.category.value,
                category_pos: pos(&raw.identity.category),
                variety: raw.identity.variety,
                description: raw.identity.description,
                cosign_identity_regexp: identity_re,
                cosign_issuer_regexp: issuer_re,
            },
            package_spec: packages,
            file_spec: FileSpec { include, exclude },
            protected_spec: protected,
            dependency_spec: deps,
            modes,
            mask,
            selector,
        })
    }

    fn regex(&mut self, field: &str, v: &Option<Spanned<String>>) -> Option<Pattern> {
        let v = v.as_ref()?;
        match regex::Regex::new(&v.value) {
            Ok(regex) => {
                let p = Pattern {
                    source: v.value.clone(),
                    regex,
                };
                if !p.is_anchored() {
                    self.push(
                        Code::IdentityRegexUnanchored,
                        field,
                        pos(v),
                        format!(
                            "{:?} is not anchored: unless every alternative starts with ^ and ends with $ (^(a|b)$, not ^a|b$), it also matches any signer whose identity merely contains it",
                            v.value
                        ),
                    );
                }
                Some(p)
            }
            Err(e) => {
                let detail = e.to_string();
                let last = detail
                    .lines()
                    .last()
                    .unwrap_or("invalid regexp")
                    .trim()
                    .to_string();
                self.push(
                    Code::RegexInvalid,
                    field,
                    pos(v),
                    format!("{:?} does not compile: {last}", v.value),
                );
                None
            }
        }
    }

    fn paths(&mut self, field: &str, v: &[Spanned<String>]) -> Vec<At<String>> {
        let mut out = Vec::new();
        for (i, s) in v.iter().enumerate() {
            match select::compile(&s.value) {
                Ok(_) => out.push(At {
                    value: s.value.clone(),
                    pos: pos(s),
                }),
                Err(e) => {
                    let code = match e {
                        select::SelectError::Glob(_) => Code::GlobInvalid,
                        _ => Code::PathInvalid,
                    };
                    self.push(
                        code,
                        format!("{field}[{i}]"),
                        pos(s),
                        format!("{:?} {e}", s.value),
                    );
                }
            }
        }
        out
    }

    fn packages(&mut self, v: &[Spanned<String>]) -> Vec<PackageSpec> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, p) in v.iter().enumerate() {
            match PackageSpec::parse(&p.value) {
                Err(e) => self.push(
                    Code::PackageInvalid,
                    format!("package_spec[{i}]"),
                    pos(p),
                    e.to_string(),
                ),
                Ok(spec) if !seen.insert(spec.name.clone()) => self.push(
                    Code::PackageDuplicate,
                    format!("package_spec[{i}]"),
                    pos(p),
                    format!("{:?} is listed more than once", spec.name),
                ),
                Ok(spec) => out.push(spec),
            }
        }
        out
    }

    fn modes(&mut self, v: &BTreeMap<String, Spanned<String>>) -> BTreeMap<String, At<Mode>> {
        let mut out = BTreeMap::new();
        for (path, m) in v {
            let field = format!("modes.{path:?}");
            if let Err(e) = select::compile(path) {
                self.push(Code::PathInvalid, &field, pos(m), format!("{path:?} {e}"));
                continue;
            }
            if path.contains(['*', '?', '[', '{']) {
                self.push(
                    Code::PathInvalid,
                    &field,
                    pos(m),
                    format!("{path:?}: modes take exact paths, not globs"),
                );
                continue;
            }
            if path.len() > 1 && path.ends_with('/') {
                // Shipped paths never end in '/', so this mode would never apply.
                self.push(
                    Code::PathInvalid,
                    &field,
                    pos(m),
                    format!("{path:?}: modes take exact paths without a trailing '/'"),
                );
                continue;
            }
            let digits = m.value.strip_prefix("0o").unwrap_or(&m.value);
            // `from_str_radix` alone would also accept a sign ("+644").
            let octal = digits.bytes().all(|b| matches!(b, b'0'..=b'7'));
            match u32::from_str_radix(digits, 8) {
                Ok(bits) if octal && digits.len() >= 3 && bits <= 0o7777 => {
                    out.insert(
                        path.clone(),
                        At {
                            value: Mode(bits),
                            pos: pos(m),
                        },
                    );
                }
                _ => self.push(
                    Code::ModeInvalid,
                    &field,
                    pos(m),
                    format!("{:?} is not an octal mode like \"0640\" (quote it so YAML keeps it a string)", m.value),
                ),
            }
        }
        out
    }

    fn dependencies(&mut self, me: Option<&ModuleName>, v: &[RawDependency]) -> Vec<Dependency> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, d) in v.iter().enumerate() {
            let field = format!("dependency_spec[{i}].name");
            let Some(name) = ModuleName::parse(&d.name.value) else {
                self.push(
                    Code::DependencyInvalid,
                    field,
                    pos(&d.name),
                    format!("{NAME_RULE} (got {:?})", d.name.value),
                );
                continue;
            };
            if Some(&name) == me {
                self.push(
                    Code::DependencySelf,
                    field,
                    pos(&d.name),
                    format!("{name} is this module's own name: a module cannot depend on itself"),
                );
            } else if !seen.insert(name.clone()) {
                self.push(
                    Code::DependencyDuplicate,
                    field,
                    pos(&d.name),
                    format!("{name} is listed more than once"),
                );
            } else {
                out.push(Dependency { name });
            }
        }
        out
    }
}

fn excluded_by(exclude: &[At<String>], path: &str) -> bool {
    let ex: Vec<String> = exclude.iter().map(|a| a.value.clone()).collect();
    PathSelector::new(&[], &ex, &[], &[]).excluded(path)
}
