//! Reconcile errors, sorted by what the controller does about them: wait for
//! a change of the resource, retry later, or back off and retry.

use kadi::links::LinkError;
use kadi::store::StoreError;

use crate::validate::InvalidSpec;

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be applied.
    #[error("invalid spec")]
    InvalidSpec(#[from] InvalidSpec),
    /// Another link holds the short code.
    #[error("short code {code:?} is taken by {}", holder.as_deref().unwrap_or("a link created through the API"))]
    CodeTaken {
        /// The short code.
        code: String,
        /// The ShortLink holding it, `None` for a link created through the API.
        holder: Option<String>,
    },
    /// The database cannot be reached.
    #[error("link store is unavailable")]
    StoreUnavailable(#[source] LinkError),
    /// The database failed otherwise.
    #[error("link store failed")]
    Store(#[source] LinkError),
    /// Writing the status failed.
    #[error("status patch failed")]
    PatchStatus(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer update failed")]
    Finalizer(#[source] kube::Error),
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing helps until the resource changes.
    AwaitChange,
    /// Something outside the resource must change; look again later.
    RetryLater,
    /// A transient failure; retry with backoff.
    Backoff,
}

impl Error {
    /// A fixed `PascalCase` word for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::CodeTaken { .. } => "ShortCodeTaken",
            Error::StoreUnavailable(_) => "StoreUnavailable",
            Error::Store(_) => "StoreFailed",
            Error::PatchStatus(_) => "StatusPatchFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }

    /// How the controller recovers from this error.
    pub fn recovery(&self) -> Recovery {
        match self {
            Error::InvalidSpec(_) => Recovery::AwaitChange,
            Error::CodeTaken { .. } => Recovery::RetryLater,
            Error::StoreUnavailable(_)
            | Error::Store(_)
            | Error::PatchStatus(_)
            | Error::Finalizer(_) => Recovery::Backoff,
        }
    }
}

impl From<LinkError> for Error {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::Invalid { field, reason } => {
                Error::InvalidSpec(InvalidSpec::Refused(format!("{field}: {reason}")))
            }
            LinkError::CodeTaken(code) => Error::CodeTaken { code, holder: None },
            LinkError::Store(StoreError::Unavailable(_)) => Error::StoreUnavailable(error),
            other => Error::Store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_recoveries_are_fixed() {
        let invalid = Error::InvalidSpec(InvalidSpec::MaxVisits);
        assert_eq!(
            (invalid.reason(), invalid.recovery()),
            ("InvalidSpec", Recovery::AwaitChange)
        );
        let taken = Error::CodeTaken {
            code: "launch".into(),
            holder: Some("sales/launch".into()),
        };
        assert_eq!(
            (taken.reason(), taken.recovery()),
            ("ShortCodeTaken", Recovery::RetryLater)
        );
        assert!(taken.to_string().contains("sales/launch"));
        let down = Error::from(LinkError::Store(StoreError::Unavailable(
            sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(
            (down.reason(), down.recovery()),
            ("StoreUnavailable", Recovery::Backoff)
        );
        let refused = Error::from(LinkError::Invalid {
            field: "original_url",
            reason: "must not point at this shortener".into(),
        });
        assert_eq!(refused.reason(), "InvalidSpec");
    }
}
