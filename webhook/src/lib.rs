//! `module-webhook`: receives registry push events, verifies and ingests module artifacts as
//! `draft` versions, and serves the API. See DESIGN.md sections 6 and 7.

pub mod api;
pub mod app;
pub mod commands;
pub mod config;
pub mod engine;
pub mod gitea;
pub mod hooks;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod policy;
pub mod promotion;
pub mod reconcile;
pub mod server;
pub mod store;
pub mod worker;
