//! `module-webhook`: receives registry push events, verifies and ingests module artifacts as
//! `draft` versions, drives their promotion from Gitea, and serves the API. ARCHITECTURE.md
//! at the repository's root maps the folders below to the concerns they own.

pub mod api;
pub mod app;
pub mod catalogue;
pub mod config;
pub mod error;
pub mod faults;
pub mod fleet;
pub mod gitea;
pub mod hooks;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod mcp;
pub use powernode_module::lifecycle;
pub mod metrics;
pub mod promotion;
pub mod server;
pub mod store;
pub mod web;
