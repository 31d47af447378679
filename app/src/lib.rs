//! Kadi: a URL shortener built to survive production. This crate holds the
//! link service, the redirect path, the HTTP API and the storage layer; the
//! `kadi` binary and the ShortLink operator both build on it.

pub mod auth;
pub mod cache;
pub mod clicks;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod import;
pub mod links;
pub mod managed;
pub mod metrics;
pub mod ratelimit;
pub mod redirect;
pub mod server;
pub mod store;
pub mod telemetry;

/// An error and its sources, joined by `: `, for logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
