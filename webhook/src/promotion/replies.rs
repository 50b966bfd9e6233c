//! Every message the promotion engine posts on a pull request, in one place, so their
//! wording is reviewed (and changed) together.

use super::commands::HELP;
use powernode_module::lifecycle::{Lifecycle, Missing};

fn list(missing: &[Missing]) -> String {
    missing.iter().map(|m| format!("\n- {m}")).collect()
}

pub fn help() -> String {
    HELP.to_owned()
}

pub fn unknown(command: &str) -> String {
    format!("Unknown command `/{command}`.\n\n{HELP}")
}

pub fn invalid(command: &str, message: &str) -> String {
    format!("`/{command}`: {message}\n\n{HELP}")
}

pub fn already_decided(request_id: &str, state: &str) -> String {
    format!("request {request_id} was already decided: {state}")
}

pub fn done(module: &str, version: &str, from: Lifecycle, to: Lifecycle) -> String {
    format!("{module} {version}: {from} → **{to}**.")
}

pub fn done_later(module: &str, version: &str, from: Lifecycle, to: Lifecycle) -> String {
    format!("{module} {version}: {from} → **{to}** (requirements now met).")
}

pub fn pending(module: &str, version: &str, to: Lifecycle, missing: &[Missing]) -> String {
    format!(
        "{module} {version} → {to} is pending; it will happen by itself once these hold:{}",
        list(missing)
    )
}

pub fn refused(module: &str, version: &str, to: Lifecycle, missing: &[Missing]) -> String {
    format!("{module} {version} → {to} refused:{}", list(missing))
}

pub fn expired(version_id: &str, to: Lifecycle) -> String {
    format!("the request to move {version_id} to {to} expired.")
}

pub fn cancelled(n: usize) -> String {
    format!("cancelled {n} pending request(s)")
}

pub fn no_module_here(repository: &str) -> String {
    format!("no module is promoted from {repository}; name it as `<module>@<version>`")
}

pub fn no_module_named(module: &str) -> String {
    format!("there is no module {module}")
}

/// A command for a module whose promotion is driven from another repository.
pub fn wrong_repository(module: &str, here: &str, home: &str) -> String {
    format!(
        "{module} is promoted only from {home}, not from {here}: comment on a pull request there"
    )
}

pub fn not_published(id: &str, state: Lifecycle) -> String {
    format!("{id} is {state}, not a published version")
}

pub fn no_version(module: &str, version: &str) -> String {
    format!("{module} has no version {version}")
}

pub fn status_table(rows: &[(String, Lifecycle, String)]) -> String {
    let mut s = String::from("| version | state | digest |\n|---|---|---|\n");
    for (version, state, digest) in rows {
        s.push_str(&format!("| {version} | {state} | `{digest}` |\n"));
    }
    s
}

/// The description of the commit status the engine keeps on a version's source commit.
pub fn commit_status(module: &str, version: &str, stage: Lifecycle) -> String {
    format!("{module} {version}: {stage}")
}

#[cfg(test)]
mod tests {
    //! The texts people read, pinned as snapshots: a change of wording shows up in review
    //! (`cargo insta review`, or update the `.snap` file by hand).
    use super::*;
    use powernode_module::lifecycle::Permission;

    #[test]
    fn replies_read_as_written() {
        let missing = [
            Missing::Approvals { need: 2, have: 1 },
            Missing::Check {
                context: "module-builder / build".into(),
                state: Some(powernode_module::lifecycle::CheckState::Failure),
            },
            Missing::Soak {
                remaining_secs: 1800,
            },
        ];
        let all = [
            done("my-redis", "0.1.0", Lifecycle::Draft, Lifecycle::Staging),
            done_later("my-redis", "0.1.0", Lifecycle::Blessed, Lifecycle::Live),
            pending("my-redis", "0.1.0", Lifecycle::Live, &missing),
            refused(
                "my-redis",
                "0.1.0",
                Lifecycle::Staging,
                &[
                    Missing::Permission {
                        need: Permission::Write,
                        has: Some(Permission::Read),
                    },
                    Missing::SourceCommit,
                ],
            ),
            wrong_repository("my-redis", "mallory/playground", "acme/hello-module"),
            expired("v-my-redis-0.1.0", Lifecycle::Live),
            cancelled(2),
            status_table(&[(
                "0.1.0".into(),
                Lifecycle::Staging,
                format!("sha256:{}", "ab".repeat(32)),
            )]),
            invalid("promote", "usage: /promote <version> <stage>"),
        ]
        .join("\n\n---\n\n");
        insta::assert_snapshot!(all);
    }
}
