//! Promotion: moving a published version along `draft → staging → blessed → live` (or
//! yanking it) under the configured policy, from PR-comment commands, the API and `auto`
//! stages. Every part of the concern lives here:
//!
//! - [`commands`]: comment text → typed commands (pure; in `powernode-inbound`, which the
//!   fuzz targets build without the service);
//! - [`evidence`]: what Gitea says right now (permission, reviews, statuses), read only from
//!   the module's own pinned repository;
//! - [`decide`]: the lifecycle's transition function applied and committed (compare-and-set),
//!   every outcome audited;
//! - [`engine`]: the handlers (a comment, a re-evaluation, the timer);
//! - [`replies`]: every message a person reads;
//! - [`requests`]: the one entry point of the REST API, MCP and the console ([`Promotions`]).

pub use powernode_inbound::commands;
pub mod decide;
pub mod engine;
pub mod evidence;
pub mod replies;
pub mod requests;
pub mod runs;

pub use decide::{Decision, Promoter};
pub use engine::{Engine, STATUS_CONTEXT};
pub use powernode_inbound::hooks::PrComment;
pub use requests::{Decided, Promotions};
