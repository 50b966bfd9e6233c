//! PR-comment commands: comment text → typed commands. Pure, so it is tested exhaustively.
//!
//! A command is a line a reader sees as plain text: one command per line, at the start of a
//! line of a top-level paragraph, as Gitea renders the comment's Markdown (CommonMark with
//! GitHub's tables). The comment is parsed with a CommonMark parser, not line heuristics, so
//! code blocks of any fence length, indented code, quotes (lazy continuation lines
//! included), list items, tables, HTML blocks and comments (`<!-- /yank … -->`) and inline
//! code never run a command: quoting or documenting a command is safe.

use powernode_module::{Version, lifecycle::Lifecycle, manifest::ModuleName};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// `<version>` or `<module>@<version>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub module: Option<ModuleName>,
    pub version: Version,
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
    // `v0.1.0` names version 0.1.0, as a release tag does.
    let version = Version::from_tag(version)
        .map_err(|_| format!("`{version}` is not a version (SemVer: 0.1.0, 1.2.0-rc.1)"))?;
    Ok(Target { module, version })
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

/// The lines of `body` a reader sees as plain text at the start of a line: the lines of
/// top-level paragraphs, each up to its first piece of non-plain inline content (code,
/// HTML, a link, emphasis), which ends what a command on that line may say.
fn plain_lines(body: &str) -> Vec<String> {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut lines = Vec::new();
    // Depth of block containers (quotes, lists, tables, …) around the current position.
    let mut depth = 0usize;
    let mut in_paragraph = false;
    // Depth of inline markup (emphasis, links, …) inside the paragraph.
    let mut inline = 0usize;
    let mut line = String::new();
    // Whether the current line has met non-plain content: the rest of it is not plain text.
    let mut cut = false;
    fn end_line(line: &mut String, cut: &mut bool, lines: &mut Vec<String>) {
        lines.push(std::mem::take(line));
        *cut = false;
    }
    for ev in Parser::new_ext(body, opts) {
        match ev {
            Event::Start(Tag::Paragraph) if depth == 0 => in_paragraph = true,
            Event::End(TagEnd::Paragraph) if in_paragraph => {
                end_line(&mut line, &mut cut, &mut lines);
                in_paragraph = false;
            }
            // A paragraph inside a container (a list item, a quote) is not top-level.
            Event::Start(t) if !in_paragraph && !matches!(t, Tag::Paragraph) => depth += 1,
            Event::End(t) if !in_paragraph && t != TagEnd::Paragraph => {
                depth = depth.saturating_sub(1)
            }
            Event::Start(_) | Event::End(_) if !in_paragraph => {}
            Event::Start(_) => {
                inline += 1;
                cut = true;
            }
            Event::End(_) => inline = inline.saturating_sub(1),
            Event::Text(t) if in_paragraph && inline == 0 && !cut => line.push_str(&t),
            Event::SoftBreak | Event::HardBreak if in_paragraph => {
                end_line(&mut line, &mut cut, &mut lines)
            }
            _ if in_paragraph => cut = true,
            _ => {}
        }
    }
    lines
}

/// All commands in a comment, in order.
pub fn parse(body: &str) -> Vec<Command> {
    plain_lines(body)
        .iter()
        .filter_map(|l| parse_line(l.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Target {
        Target {
            module: None,
            version: Version::parse(v).unwrap(),
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
                    version: Version::parse("1.2.3-rc.1").unwrap()
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
        for not_semver in ["1.0", "redis-3.0.0", "latest", "01.0.0"] {
            assert!(
                matches!(&parse(&format!("/promote {not_semver} live"))[0], Command::Invalid { message, .. } if message.contains("not a version")),
                "{not_semver}"
            );
        }
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

    /// Issue 8, item 5: what Markdown renders as code, a quote or a comment never runs.
    #[test]
    fn markdown_that_hides_a_command_does_not_run_it() {
        let hidden = [
            // A four-backtick fence holding a three-backtick line.
            "````\n```\n/promote 0.1.0 live\n````",
            "````md\n/promote 0.1.0 live\n```\n/yank 0.1.0 x\n````",
            // An HTML comment, on one line or several.
            "<!-- /yank 0.1.0 gone -->",
            "<!--\n/yank 0.1.0 gone\n-->",
            "text <!--\n/yank 0.1.0 gone\n--> more",
            // A lazy continuation line of a block quote is part of the quote.
            "> quoted\n/promote 0.1.0 live",
            "> a\n> b\n/promote 0.1.0 live",
            // Lists, tables, inline code, emphasis.
            "- /promote 0.1.0 live",
            "1. /promote 0.1.0 live",
            "| a |\n|---|\n| /promote 0.1.0 live |",
            "`/promote 0.1.0 live`",
            "*/promote 0.1.0 live*",
            "<div>\n/promote 0.1.0 live\n</div>",
        ];
        for body in hidden {
            assert!(parse(body).is_empty(), "{body:?} ran {:?}", parse(body));
        }
        // A quote ends at a blank line; a paragraph after it is read.
        assert_eq!(
            parse("> quoted\n\n/promote 0.1.0 live"),
            vec![Command::Promote {
                target: t("0.1.0"),
                to: Lifecycle::Live
            }]
        );
        // Inline content later on the line ends the command's arguments there.
        assert_eq!(
            parse("/status 0.1.0 `x`"),
            vec![Command::Status {
                target: Some(t("0.1.0"))
            }]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Fragments comments are made of: commands, their arguments, Markdown that hides
        /// or breaks them, and bytes parsers trip on.
        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "/promote",
                    "/yank",
                    "/status",
                    "/cancel",
                    "/help",
                    "/",
                    " ",
                    "\n",
                    "\n\n",
                    "```",
                    "~~~",
                    "    ",
                    "> ",
                    "- ",
                    "1. ",
                    "| a |",
                    "|---|",
                    "<!--",
                    "-->",
                    "<div>",
                    "`",
                    "*",
                    "@",
                    "my-redis@",
                    "0.1.0",
                    "v1.2.3-rc.1+b",
                    "01.0.0",
                    "staging",
                    "blessed",
                    "live",
                    "draft",
                    "\r\n",
                    "\t",
                    "\u{0}",
                    "é",
                    "\u{202e}",
                ])
                .prop_map(str::to_owned),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

            /// Any comment parses (to zero or more commands) without panicking, and parsing
            /// is a function of the text.
            #[test]
            fn never_panics_and_is_deterministic(parts in prop::collection::vec(fragment(), 0..40)) {
                let body = parts.concat();
                let first = parse(&body);
                prop_assert_eq!(first, parse(&body));
            }

            /// A well-formed promote line on its own is read as exactly that command.
            #[test]
            fn a_promote_line_round_trips(
                major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000,
                stage in prop::sample::select(vec!["staging", "blessed", "live"]),
            ) {
                let body = format!("/promote {major}.{minor}.{patch} {stage}");
                let want = Command::Promote {
                    target: t(&format!("{major}.{minor}.{patch}")),
                    to: stage.parse().unwrap(),
                };
                prop_assert_eq!(parse(&body), vec![want]);
            }
        }
    }
}
