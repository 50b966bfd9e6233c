//! Webhook receivers. The edge only authenticates, parses and records: each handler turns a
//! request into deliveries and the jobs they hint at, and [`routes`] stores them in
//! one transaction before answering 202. Nothing here knows how to ingest.
//!
//! The payload parsers are pure and live in `powernode-inbound` (so the fuzz targets build
//! them alone); this module maps what they return onto the store's rows.

pub mod auth;
pub mod routes;

pub use crate::config::Repositories;
use crate::store::{Job, NewDelivery, NewJob};
pub use powernode_inbound::hooks::{HookError, Parsed, Work, distribution, gitea, harbor};

/// The queue row of what a delivery asks for.
pub fn job_for(work: Work) -> NewJob {
    match work {
        Work::Tag { repository, tag } => Job::for_tag(&repository, &tag).to_new(),
        Work::Comment(c) => Job::Command(c).to_new(),
        Work::Reevaluate { repository } => Job::Reevaluate { repository }.to_new(),
    }
}

/// The rows a parsed request is recorded as: each delivery with the jobs it asks for.
pub fn rows(parsed: Parsed) -> Vec<(NewDelivery, Vec<NewJob>)> {
    parsed
        .deliveries
        .into_iter()
        .map(|(d, work)| (d, work.into_iter().map(job_for).collect()))
        .collect()
}
