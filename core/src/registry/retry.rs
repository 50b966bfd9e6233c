//! Retrying transient registry failures with exponential backoff.

use super::RegistryError;
use std::{future::Future, time::Duration};

/// Attempts in all (the first try included).
pub const ATTEMPTS: u32 = 4;

/// Runs `f` until it succeeds, fails permanently, or [`ATTEMPTS`] are used up. Waits 200 ms,
/// 400 ms, 800 ms between attempts.
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
