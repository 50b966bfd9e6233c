//! PR-comment commands: comment text → typed commands. Pure, so it is tested exhaustively.
//!
//! One command per line, at the start of the line. Lines inside fenced code blocks
//! (``` or ~~~), indented code (4 spaces or a tab) and quotes (`>`) are ignored, so
//! quoting or documenting a command never runs it.

use crate::store::Lifecycle;
use powernode_module::manifest::ModuleName;

/// `<version>` or `<module>@<version>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub module: Option<ModuleName>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Promote {
        target: Target,
        to: Lifecycle,
    },
    Yank {
        target: Target,
        reason: String,
    },
    Status {
        target: Option<Target>,
    },
    Cancel {
        target: Option<Target>,
    },
    Help,
    /// A known command with bad arguments.
    Invalid {
        command: String,
        message: String,
    },
    /// `/something` we do not know.
    Unknown {
        command: String,
    },
}

pub const HELP: &str = "Commands (one per line, not in code blocks or quotes):\n\
- `/promote <version> <stage>` or `/promote <module>@<version> <stage>` — stage: staging, blessed, live\n\
- `/yank <version> <reason>` — never installable again\n\
- `/status [<version>]` — where a version (or every version of this module) stands\n\
- `/cancel [<version>]` — withdraw your pending promotion requests\n\
- `/help` — this text";

fn target(s: &str) -> Result<Target, String> {
    let (module, version) = match s.split_once('@') {
        Some((m, v)) => (
            Some(ModuleName::parse(m).ok_or_else(|| format!("`{m}` is not a module name"))?),
            v,
        ),
        None => (None, s),
    };
    let ok = !version.is_empty()
        && version.len() <= 128
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if !ok {
        return Err(format!("`{version}` is not a version"));
    }
    let version = version
        .strip_prefix('v')
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(version);
    Ok(Target {
        module,
        version: version.to_owned(),
    })
}

fn stage(s: &str) -> Result<Lifecycle, String> {
    match s {
        "staging" => Ok(Lifecycle::Staging),
        "blessed" => Ok(Lifecycle::Blessed),
        "live" => Ok(Lifecycle::Live),
        other => Err(format!(
            "`{other}` is not a stage to promote to (staging, blessed, live)"
        )),
    }
}

fn invalid(command: &str, message: impl Into<String>) -> Command {
    Command::Invalid {
        command: command.to_owned(),
        message: message.into(),
    }
}

fn parse_line(line: &str) -> Option<Command> {
    let rest = line.strip_prefix('/')?;
    let name_len = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return None;
    }
    let args: Vec<&str> = rest[name_len..].split_whitespace().collect();
    Some(match name {
        "promote" => match args.as_slice() {
            [t, s] => match (target(t), stage(s)) {
                (Ok(target), Ok(to)) => Command::Promote { target, to },
                (Err(e), _) | (_, Err(e)) => invalid(name, e),
            },
            _ => invalid(name, "usage: /promote <version> <stage>"),
        },
        "yank" => match args.as_slice() {
            [t, reason @ ..] if !reason.is_empty() => match target(t) {
                Ok(target) => Command::Yank {
                    target,
                    reason: reason.join(" "),
                },
                Err(e) => invalid(name, e),
            },
            _ => invalid(name, "usage: /yank <version> <reason>"),
        },
        "status" | "cancel" => {
            let t = match args.as_slice() {
                [] => None,
                [t] => match target(t) {
                    Ok(t) => Some(t),
                    Err(e) => return Some(invalid(name, e)),
                },
                _ => return Some(invalid(name, format!("usage: /{name} [<version>]"))),
            };
            if name == "status" {
                Command::Status { target: t }
            } else {
                Command::Cancel { target: t }
            }
        }
        "help" => Command::Help,
        other => Command::Unknown {
            command: other.to_owned(),
        },
    })
}

/// All commands in a comment, in order.
pub fn parse(body: &str) -> Vec<Command> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for raw in body.lines() {
        let trimmed = raw.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if trimmed.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if raw.starts_with('\t') || indent >= 4 || trimmed.starts_with('>') {
            continue;
        }
        if let Some(c) = parse_line(trimmed.trim_end()) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Target {
        Target {
            module: None,
            version: v.into(),
        }
    }

    #[test]
    fn promote_forms() {
        assert_eq!(
            parse("/promote 0.1.0 staging"),
            vec![Command::Promote {
                target: t("0.1.0"),
                to: Lifecycle::Staging
            }]
        );
        assert_eq!(
            parse("/promote v0.1.0 live"),
            vec![Command::Promote {
                target: t("0.1.0"),
                to: Lifecycle::Live
            }]
        );
        let c = parse("/promote my-redis@1.2.3-rc.1 blessed");
        assert_eq!(
            c,
            vec![Command::Promote {
                target: Target {
                    module: ModuleName::parse("my-redis"),
                    version: "1.2.3-rc.1".into()
                },
                to: Lifecycle::Blessed
            }]
        );
        assert!(
            matches!(&parse("/promote 0.1.0 draft")[0], Command::Invalid { message, .. } if message.contains("not a stage"))
        );
        assert!(
            matches!(&parse("/promote 0.1.0")[0], Command::Invalid { message, .. } if message.contains("usage"))
        );
        assert!(
            matches!(&parse("/promote Bad_Name@1.0 live")[0], Command::Invalid { message, .. } if message.contains("module name"))
        );
        assert!(matches!(
            &parse("/promote 1.0;rm live")[0],
            Command::Invalid { .. }
        ));
        assert!(matches!(
            &parse("/promote 0.1.0 live now")[0],
            Command::Invalid { .. }
        ));
    }

    #[test]
    fn yank_status_cancel_help_unknown() {
        assert_eq!(
            parse("/yank 0.1.0 CVE-2026-1234 in redis.conf"),
            vec![Command::Yank {
                target: t("0.1.0"),
                reason: "CVE-2026-1234 in redis.conf".into()
            }]
        );
        assert!(matches!(&parse("/yank 0.1.0")[0], Command::Invalid { .. }));
        assert_eq!(parse("/status"), vec![Command::Status { target: None }]);
        assert_eq!(
            parse("/status 0.1.0"),
            vec![Command::Status {
                target: Some(t("0.1.0"))
            }]
        );
        assert_eq!(parse("/cancel"), vec![Command::Cancel { target: None }]);
        assert_eq!(parse("/help"), vec![Command::Help]);
        assert_eq!(
            parse("/deploy 0.1.0"),
            vec![Command::Unknown {
                command: "deploy".into()
            }]
        );
    }

    #[test]
    fn code_quotes_and_prose_are_ignored() {
        assert!(parse("```\n/promote 0.1.0 live\n```").is_empty());
        assert!(parse("~~~sh\n/promote 0.1.0 live\n~~~").is_empty());
        assert!(parse("    /promote 0.1.0 live").is_empty());
        assert!(parse("\t/promote 0.1.0 live").is_empty());
        assert!(parse("> /promote 0.1.0 live").is_empty());
        assert!(
            parse("please /promote 0.1.0 live").is_empty(),
            "not at the start of a line"
        );
        assert!(parse("see /etc/redis/redis.conf").is_empty());
        assert!(parse("/etc/redis/redis.conf is protected").is_empty());
        assert!(parse("").is_empty());
        // After a closed fence, commands count again; several per comment.
        let c = parse("```\n/yank 1 x\n```\n/promote 0.1.0 staging\n  /status\n");
        assert_eq!(
            c,
            vec![
                Command::Promote {
                    target: t("0.1.0"),
                    to: Lifecycle::Staging
                },
                Command::Status { target: None }
            ]
        );
    }
}
