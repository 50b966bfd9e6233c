//! Fault points for the crash tests: named places where a debug build can be told to stop
//! and wait, so that a test can SIGKILL the receiver at exactly that moment instead of
//! racing it (`webhook/tests/kill.rs`).
//!
//! `MODULE_WEBHOOK_FAULT_STALL=POINT[,POINT…]` makes every task that reaches one of the named
//! points wait forever there (the rest of the process keeps running). Only debug builds
//! (`debug_assertions`, what `cargo test` builds) have this: in a release binary [`point`]
//! is an empty function and the variable is never read.
//!
//! `MODULE_WEBHOOK_FAULT_PAUSE=POINT=FILE` makes a task that reaches the point wait until
//! `FILE` exists, then go on: a test orders two replicas' work deterministically by pausing
//! one of them there (`tests/recompute_race.rs`).
//!
//! Points: `hooks.after_commit` (a hook's deliveries and jobs are committed, its answer not
//! yet sent); `promotion.after_transition` (a transition is committed with its audit row and
//! the request it settles; nothing is said to Gitea yet); `fleet.recompute.before_commit` (a
//! template's state is composed and signed under its recomputation lock, not yet written);
//! `fleet.recompute_many.after_live_read` (a recomputation of many templates has read the
//! live set it shares, before any template's lock).

/// The variable naming the points to stall at.
pub const STALL_VAR: &str = "MODULE_WEBHOOK_FAULT_STALL";

/// The variable naming a point to pause at, and the file whose creation ends the pause.
pub const PAUSE_VAR: &str = "MODULE_WEBHOOK_FAULT_PAUSE";

/// Stalls here, forever, when this debug build was told to (see the module docs).
#[cfg(debug_assertions)]
pub async fn point(name: &'static str) {
    use std::sync::LazyLock;
    static STALL: LazyLock<Vec<String>> = LazyLock::new(|| {
        std::env::var(STALL_VAR)
            .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default()
    });
    static PAUSE: LazyLock<Option<(String, std::path::PathBuf)>> = LazyLock::new(|| {
        let v = std::env::var(PAUSE_VAR).ok()?;
        let (point, file) = v.split_once('=')?;
        Some((point.trim().to_owned(), file.trim().into()))
    });
    if STALL.iter().any(|p| p == name) {
        tracing::warn!(point = name, "{STALL_VAR}: stalling at this fault point");
        std::future::pending::<()>().await;
    }
    if let Some((point, file)) = &*PAUSE
        && point == name
    {
        tracing::warn!(point = name, file = %file.display(), "{PAUSE_VAR}: pausing at this fault point");
        while !file.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tracing::warn!(point = name, "{PAUSE_VAR}: going on");
    }
}

/// Release builds have no fault points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub async fn point(_name: &'static str) {}
