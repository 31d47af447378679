//! The ShortLink operator: turns `ShortLink` resources into managed Kadi links
//! through the same link service as the HTTP API, reports their state in the
//! resource's status, expires them on time, and releases them on deletion.

pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod resource;
pub mod status;
pub mod validate;
