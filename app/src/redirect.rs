//! The redirect path: resolve a short code through the cache tiers, enforce
//! the link's state and limits, and queue the click.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cache::Cached;
use crate::links::{is_code_shaped, LinkService};
use crate::store::{LinkTarget, StoreError};

/// What a request for a short code gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Redirect to the link's target.
    Redirect {
        /// The link.
        target: Arc<LinkTarget>,
        /// Whether the link's click count already includes this visit.
        counted: bool,
    },
    /// No live link has the code.
    NotFound,
    /// The link is inactive.
    Inactive,
    /// The link's expiry has passed.
    Expired,
    /// The link served all its visits.
    Limited,
}

/// Resolves `code` at time `now`. `count_visit` is false for requests that
/// must not use up a visit (HEAD).
pub async fn resolve(
    links: &LinkService,
    code: &str,
    now: DateTime<Utc>,
    count_visit: bool,
) -> Result<Outcome, StoreError> {
    if !is_code_shaped(code) {
        return Ok(Outcome::NotFound);
    }
    let target = match lookup(links, code).await? {
        Cached::Found(target) => target,
        Cached::Missing => return Ok(Outcome::NotFound),
    };
    if !target.is_active {
        return Ok(Outcome::Inactive);
    }
    if target.expires_at.is_some_and(|at| at <= now) {
        return Ok(Outcome::Expired);
    }
    let counted = match target.max_visits {
        Some(_) if count_visit => {
            if !links.store().take_visit(target.id).await? {
                return Ok(Outcome::Limited);
            }
            true
        }
        Some(_) => {
            // HEAD uses up no visit but must not redirect once they are gone.
            if !links.store().has_visits_left(target.id).await? {
                return Ok(Outcome::Limited);
            }
            false
        }
        None => false,
    };
    Ok(Outcome::Redirect { target, counted })
}

async fn lookup(links: &LinkService, code: &str) -> Result<Cached, StoreError> {
    let store = links.store();
    links
        .cache()
        .get_or_load(code, || store.link_target(code))
        .await
}
