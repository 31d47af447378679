//! Managed links: how the ShortLink operator changes links, through the link
//! service like every other writer, so that each change invalidates caches.

use chrono::{DateTime, SubsecRound, Utc};

use crate::links::{
    check_custom_code, check_max_visits, check_redirect_status, LinkError, LinkService,
};
use crate::store::Link;
pub use crate::store::{ManagedLink, ManagedOutcome, ReclaimPolicy};

/// Digits of a second the databases keep; expiry times are cut to this so that
/// a stored time compares equal to the declared one on both backends.
const STORED_SUBSEC_DIGITS: u16 = 6;

impl LinkService {
    /// Validates `link` and makes the stored link match it at time `now`:
    /// creates it, updates it, deactivates it once its expiry has passed, or
    /// reports that another link holds its short code. Caches drop the code
    /// after every write.
    pub async fn apply_managed(
        &self,
        link: &ManagedLink,
        now: DateTime<Utc>,
    ) -> Result<ManagedOutcome, LinkError> {
        let link = self.check_managed(link)?;
        let outcome = self.store().apply_managed(&link, now).await;
        let wrote = !matches!(
            outcome,
            Ok(ManagedOutcome::Unchanged(_) | ManagedOutcome::CodeTaken { .. })
        );
        if wrote {
            self.cache().invalidate(&link.short_code);
        }
        Ok(outcome?)
    }

    /// Releases the links `owner` manages, because its ShortLink is gone:
    /// deactivates or deletes them per `policy`. Returns the changed links.
    pub async fn release_managed(
        &self,
        owner: &str,
        policy: ReclaimPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<Link>, LinkError> {
        let released = self.store().release_managed(owner, policy, now).await?;
        for link in &released {
            self.cache().invalidate(&link.short_code);
        }
        Ok(released)
    }

    /// The live links `owner` manages, with their click counts.
    pub async fn managed_links(&self, owner: &str) -> Result<Vec<Link>, LinkError> {
        Ok(self.store().managed_links(owner).await?)
    }

    /// Applies the same rules as the HTTP API, and returns the form to store.
    fn check_managed(&self, link: &ManagedLink) -> Result<ManagedLink, LinkError> {
        if link
            .owner
            .split('/')
            .filter(|part| !part.is_empty())
            .count()
            != 2
        {
            return Err(LinkError::Invalid {
                field: "managed_by",
                reason: "must be namespace/name".to_owned(),
            });
        }
        check_custom_code(&link.short_code)?;
        check_redirect_status(link.redirect_status)?;
        if let Some(max_visits) = link.max_visits {
            check_max_visits(max_visits)?;
        }
        Ok(ManagedLink {
            original_url: self.policy().check_target(&link.original_url)?,
            expires_at: link
                .expires_at
                .map(|at| at.trunc_subsecs(STORED_SUBSEC_DIGITS)),
            ..link.clone()
        })
    }
}
