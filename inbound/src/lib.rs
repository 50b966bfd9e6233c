//! What reaches the receiver from outside, parsed: registry and Gitea webhook payloads
//! ([`hooks`]) and PR-comment commands ([`commands`]).
//!
//! Every function here is pure (bytes in, typed values or a reason out) and total: any input
//! is refused with a message or read, never a panic. The receiver (module-webhook)
//! authenticates before it calls these and stores what they return; the fuzz targets in
//! `fuzz/` call them directly, which is why they live in a crate of their own that does not
//! pull in the service's database, HTTP and Gitea client dependencies.

pub mod commands;
pub mod hooks;
mod repositories;

pub use repositories::{Repositories, RepositoryGlobError};
