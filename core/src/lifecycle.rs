//! The lifecycle of a published version: `draft → staging → blessed → live`, one step at a
//! time; `yanked` from any state with a reason; nothing leaves `yanked`. One pure function
//! decides every transition from the state, the request, the evidence, the policy and the
//! time, and says exactly what is missing when it refuses. Shared by the receiver (which
//! decides) and every program that reads states (the builder, the node agent).

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, str::FromStr};

/// Where a version stands. `PendingSignature` and `Rejected` come before `Draft`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    PendingSignature,
    Rejected,
    Draft,
    Staging,
    Blessed,
    Live,
    Yanked,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::PendingSignature => "pending_signature",
            Lifecycle::Rejected => "rejected",
            Lifecycle::Draft => "draft",
            Lifecycle::Staging => "staging",
            Lifecycle::Blessed => "blessed",
            Lifecycle::Live => "live",
            Lifecycle::Yanked => "yanked",
        }
    }

    /// Whether the version was accepted (its content is fixed from here on).
    pub fn is_published(self) -> bool {
        !matches!(self, Lifecycle::PendingSignature | Lifecycle::Rejected)
    }

    /// The stage after this one, if any.
    pub fn next(self) -> Option<Lifecycle> {
        next(self)
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lifecycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending_signature" => Lifecycle::PendingSignature,
            "rejected" => Lifecycle::Rejected,
            "draft" => Lifecycle::Draft,
            "staging" => Lifecycle::Staging,
            "blessed" => Lifecycle::Blessed,
            "live" => Lifecycle::Live,
            "yanked" => Lifecycle::Yanked,
            other => return Err(format!("unknown lifecycle state {other:?}")),
        })
    }
}

/// Who acted. A type, never a string to compare: a Gitea user named `auto` or `api:ops` is a
/// Gitea user like any other, and its permission is read from Gitea.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A Gitea user (a comment, a review).
    Gitea(String),
    /// An API token, by its configured name; its role says what it may do.
    Api(String),
    /// The receiver itself: `auto` stages and re-evaluations on a timer.
    #[default]
    Auto,
}

impl Actor {
    /// The stored and audited form: `gitea:<user>`, `api:<token name>` or `auto`. Gitea user
    /// names cannot contain `:`, so the forms never overlap.
    pub fn encode(&self) -> String {
        match self {
            Actor::Gitea(u) => format!("gitea:{u}"),
            Actor::Api(n) => format!("api:{n}"),
            Actor::Auto => "auto".to_owned(),
        }
    }

    pub fn decode(s: &str) -> Result<Actor, String> {
        if s == "auto" {
            return Ok(Actor::Auto);
        }
        match s.split_once(':') {
            Some(("gitea", u)) if !u.is_empty() => Ok(Actor::Gitea(u.to_owned())),
            Some(("api", n)) if !n.is_empty() => Ok(Actor::Api(n.to_owned())),
            _ => Err(format!(
                "{s:?} is not an actor (gitea:<user>, api:<token>, auto)"
            )),
        }
    }

    /// The Gitea user, when a Gitea user acted.
    pub fn gitea_user(&self) -> Option<&str> {
        match self {
            Actor::Gitea(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

/// What someone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Promote { to: Lifecycle },
    Yank { reason: String },
}

impl Request {
    /// The stage the request would put a version in.
    pub fn target(&self) -> Lifecycle {
        match self {
            Request::Promote { to } => *to,
            Request::Yank { .. } => Lifecycle::Yanked,
        }
    }
}

/// A repository permission as Gitea reports it, ordered.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Write,
    Admin,
    Owner,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
            Permission::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Permission {
        match s {
            "owner" => Permission::Owner,
            "admin" => Permission::Admin,
            "write" => Permission::Write,
            "read" => Permission::Read,
            _ => Permission::None,
        }
    }
}

/// An approving review that counts: latest review of its author, by a writer, bound to the
/// digest the request names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub user: String,
    pub review_id: i64,
}

/// A commit status's state, as Gitea (and GitHub) name it. Read once where the status is
/// read; a state this code does not know is `Other`, which never satisfies a required check
/// (and never hides the other contexts behind a parse error).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Pending,
    Success,
    Error,
    Failure,
    Warning,
    #[default]
    #[serde(other)]
    Other,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Error => "error",
            CheckState::Failure => "failure",
            CheckState::Warning => "warning",
            CheckState::Other => "other",
        }
    }
}

impl fmt::Display for CheckState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was observed right before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Who asks, and their permission on the module's repository (API callers: `Owner` for
    /// operators; the receiver itself: `Owner`).
    pub requester: Actor,
    pub requester_permission: Option<Permission>,
    /// The version's source commit, when known. Approvals are counted on it, so a stage that
    /// needs approvals needs it.
    pub source_commit: Option<String>,
    pub approvals: Vec<Approval>,
    /// Commit status contexts of the source commit and their states.
    pub checks: BTreeMap<String, CheckState>,
    /// When the version entered its current state (ms).
    pub entered_state_at: i64,
    /// The break-glass role waives approvals, checks and soak (audited as such).
    pub break_glass: bool,
}

/// Requirements to enter one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagePolicy {
    pub required_checks: Vec<String>,
    pub min_approvals: usize,
    /// Minimum time in the previous stage, seconds.
    pub min_soak_secs: i64,
    /// Minimum repository permission to ask.
    pub who: Permission,
    /// Promote by itself as soon as the requirements hold.
    pub auto: bool,
    /// Whether the requester's own approval is excluded.
    pub exclude_requester: bool,
}

impl Default for StagePolicy {
    fn default() -> Self {
        StagePolicy {
            required_checks: Vec::new(),
            min_approvals: 0,
            min_soak_secs: 0,
            who: Permission::Write,
            auto: false,
            exclude_requester: true,
        }
    }
}

/// Why a transition cannot happen (now, or ever).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Missing {
    /// Never: not the next stage, or from a terminal state.
    NotAllowed {
        from: String,
        to: String,
    },
    /// Never for this requester.
    Permission {
        need: Permission,
        has: Option<Permission>,
    },
    Approvals {
        need: usize,
        have: usize,
    },
    Check {
        context: String,
        /// The context's state, or none when it has not reported.
        state: Option<CheckState>,
    },
    Soak {
        remaining_secs: i64,
    },
    Reason,
    /// Approvals are required but the version names no source commit to approve.
    SourceCommit,
}

impl Missing {
    /// Whether waiting could satisfy it (a pending request), or it is final (a refusal).
    pub fn can_be_met_later(&self) -> bool {
        matches!(
            self,
            Missing::Approvals { .. } | Missing::Check { .. } | Missing::Soak { .. }
        )
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::NotAllowed { from, to } => write!(f, "{from} → {to} is not a lifecycle step"),
            Missing::Permission { need, has } => {
                let has = match has {
                    None | Some(Permission::None) => "no",
                    Some(p) => p.as_str(),
                };
                write!(
                    f,
                    "needs {} permission on the module's repository; the requester has {has} permission",
                    need.as_str()
                )
            }
            Missing::Approvals { need, have } => write!(f, "{have} of {need} required approvals"),
            Missing::Check { context, state } => match state {
                Some(s) => write!(f, "check `{context}` is {s}, not success"),
                None => write!(f, "check `{context}` has not reported"),
            },
            Missing::Soak { remaining_secs } => {
                write!(f, "{remaining_secs}s more soak time in the current stage")
            }
            Missing::Reason => write!(f, "a yank needs a reason"),
            Missing::SourceCommit => write!(
                f,
                "approvals are required, but the version names no source commit to approve"
            ),
        }
    }
}

/// The stage after `s`, if any.
pub fn next(s: Lifecycle) -> Option<Lifecycle> {
    match s {
        Lifecycle::Draft => Some(Lifecycle::Staging),
        Lifecycle::Staging => Some(Lifecycle::Blessed),
        Lifecycle::Blessed => Some(Lifecycle::Live),
        _ => None,
    }
}

/// Decides a transition. `policy` is the target stage's policy (for yanks, `who` of the
/// yank policy applies).
pub fn transition(
    state: Lifecycle,
    request: &Request,
    evidence: &Evidence,
    policy: &StagePolicy,
    now_ms: i64,
) -> Result<Lifecycle, Vec<Missing>> {
    let mut missing = Vec::new();
    let allowed_permission = |missing: &mut Vec<Missing>| {
        if evidence.requester_permission.is_none_or(|p| p < policy.who) {
            missing.push(Missing::Permission {
                need: policy.who,
                has: evidence.requester_permission,
            });
        }
    };
    match request {
        Request::Yank { reason } => {
            if state == Lifecycle::Yanked || !state.is_published() {
                return Err(vec![Missing::NotAllowed {
                    from: state.to_string(),
                    to: Lifecycle::Yanked.to_string(),
                }]);
            }
            allowed_permission(&mut missing);
            if reason.trim().is_empty() {
                missing.push(Missing::Reason);
            }
            if missing.is_empty() {
                Ok(Lifecycle::Yanked)
            } else {
                Err(missing)
            }
        }
        Request::Promote { to } => {
            if next(state) != Some(*to) {
                return Err(vec![Missing::NotAllowed {
                    from: state.to_string(),
                    to: to.to_string(),
                }]);
            }
            allowed_permission(&mut missing);
            if !evidence.break_glass {
                let requester = evidence.requester.gitea_user();
                let approvals = evidence
                    .approvals
                    .iter()
                    .filter(|a| !(policy.exclude_requester && Some(a.user.as_str()) == requester))
                    .count();
                if policy.min_approvals > 0 && evidence.source_commit.is_none() {
                    missing.push(Missing::SourceCommit);
                } else if approvals < policy.min_approvals {
                    missing.push(Missing::Approvals {
                        need: policy.min_approvals,
                        have: approvals,
                    });
                }
                for c in &policy.required_checks {
                    let st = evidence.checks.get(c).copied();
                    if st != Some(CheckState::Success) {
                        missing.push(Missing::Check {
                            context: c.clone(),
                            state: st,
                        });
                    }
                }
                let soaked = (now_ms - evidence.entered_state_at) / 1000;
                if soaked < policy.min_soak_secs {
                    missing.push(Missing::Soak {
                        remaining_secs: policy.min_soak_secs - soaked,
                    });
                }
            }
            if missing.is_empty() {
                Ok(*to)
            } else {
                Err(missing)
            }
        }
    }
}

#[cfg(test)]
mod tests;
