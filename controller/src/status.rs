//! What a ShortLink reports: its status, written only when it changes (by
//! server-side apply under the controller's own field manager), and the
//! Kubernetes Events a person should see.

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde_json::json;

use crate::resource::{Condition, Phase, ShortLink, ShortLinkStatus};
use crate::validate::InvalidSpec;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "kadi-controller";

/// The condition that tells whether the stored link matches the resource.
pub const READY: &str = "Ready";

/// What a reconcile found, from which the status follows.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The stored link matches the resource.
    Linked {
        /// `Active`, `Inactive` or `Expired`.
        phase: Phase,
        /// The short code.
        short_code: String,
        /// The absolute expiry.
        expires_at: Option<DateTime<Utc>>,
        /// Clicks to report.
        clicks: i64,
    },
    /// Another link holds the short code.
    Conflict {
        /// The short code.
        short_code: String,
        /// The ShortLink holding it, `None` for a link made through the API.
        holder: Option<String>,
    },
    /// The spec cannot be applied.
    Invalid(InvalidSpec),
}

impl Observation {
    fn ready(&self) -> (&'static str, &'static str, String) {
        match self {
            Observation::Linked {
                phase, expires_at, ..
            } => {
                let message = match (phase, expires_at) {
                    (Phase::Expired, Some(at)) => format!(
                        "the link expired at {}; it is kept, inactive, with its analytics",
                        at.to_rfc3339()
                    ),
                    (Phase::Inactive, _) => "the link exists and is inactive".to_owned(),
                    _ => "the link serves redirects".to_owned(),
                };
                ("True", phase.as_str(), message)
            }
            Observation::Conflict { short_code, holder } => {
                let holder = match holder {
                    Some(owner) => format!("ShortLink {owner}"),
                    None => "a link created through the API".to_owned(),
                };
                (
                    "False",
                    "ShortCodeTaken",
                    format!("short code {short_code:?} is taken by {holder}; nothing was changed"),
                )
            }
            Observation::Invalid(invalid) => ("False", "InvalidSpec", invalid.to_string()),
        }
    }

    /// The phase this observation shows.
    pub fn phase(&self) -> Phase {
        match self {
            Observation::Linked { phase, .. } => *phase,
            Observation::Conflict { .. } => Phase::Conflict,
            Observation::Invalid(_) => Phase::Invalid,
        }
    }
}

/// The status `shortlink` should show after `observation` at `now`. Fields
/// that did not change keep their values, so that an unchanged observation
/// gives an equal status and nothing is written.
pub fn desired_status(
    shortlink: &ShortLink,
    observation: &Observation,
    public_base: &str,
    now: DateTime<Utc>,
) -> ShortLinkStatus {
    let previous = shortlink.status.as_ref();
    let generation = shortlink.metadata.generation;
    let (status, reason, message) = observation.ready();
    let last_transition_time = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.status == status)
        .map_or(now, |c| c.last_transition_time);
    let ready = Condition {
        type_: READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    };
    let (short_code, expires_at, clicks) = match observation {
        Observation::Linked {
            short_code,
            expires_at,
            clicks,
            ..
        } => (Some(short_code.clone()), *expires_at, Some(*clicks)),
        Observation::Conflict { short_code, .. } => (Some(short_code.clone()), None, None),
        Observation::Invalid(_) => (shortlink.short_code().map(str::to_owned), None, None),
    };
    let short_url = match observation {
        Observation::Linked { short_code, .. } => Some(format!("{public_base}/{short_code}")),
        _ => None,
    };
    ShortLinkStatus {
        observed_generation: generation,
        phase: Some(observation.phase()),
        conditions: vec![ready],
        short_code,
        short_url,
        expires_at,
        clicks,
    }
}

/// Writes `status` by server-side apply, forcing ownership of its fields.
pub async fn write_status(
    api: &Api<ShortLink>,
    name: &str,
    status: &ShortLinkStatus,
) -> Result<(), kube::Error> {
    let patch = json!({
        "apiVersion": ShortLink::api_version(&()),
        "kind": ShortLink::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Publishes a Kubernetes Event about `shortlink`; a failure is logged and
/// otherwise ignored, since Events are informative.
pub async fn publish(
    recorder: &Recorder,
    shortlink: &ShortLink,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &shortlink.object_ref(&())).await {
        tracing::warn!(
            error = %kadi::error_chain(&error),
            reason,
            "Cannot publish Kubernetes Event"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ShortLinkSpec;

    fn shortlink() -> ShortLink {
        let spec: ShortLinkSpec =
            serde_json::from_value(json!({"url": "https://example.com/"})).unwrap();
        let mut shortlink = ShortLink::new("launch", spec);
        shortlink.metadata.generation = Some(3);
        shortlink
    }

    fn linked(phase: Phase, clicks: i64) -> Observation {
        Observation::Linked {
            phase,
            short_code: "launch".into(),
            expires_at: None,
            clicks,
        }
    }

    #[test]
    fn an_unchanged_observation_gives_an_equal_status() {
        let t0: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut resource = shortlink();
        let first = desired_status(&resource, &linked(Phase::Active, 4), "https://sho.rt", t0);
        resource.status = Some(first.clone());
        let later = t0 + chrono::Duration::hours(1);
        let second = desired_status(
            &resource,
            &linked(Phase::Active, 4),
            "https://sho.rt",
            later,
        );
        assert_eq!(first, second);
        assert_eq!(first.short_url.as_deref(), Some("https://sho.rt/launch"));
        assert_eq!(first.observed_generation, Some(3));
    }

    #[test]
    fn the_transition_time_moves_only_when_ready_flips() {
        let t0: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut resource = shortlink();
        resource.status = Some(desired_status(
            &resource,
            &linked(Phase::Active, 0),
            "https://sho.rt",
            t0,
        ));
        let t1 = t0 + chrono::Duration::hours(1);
        let expired = desired_status(&resource, &linked(Phase::Expired, 0), "https://sho.rt", t1);
        assert_eq!(expired.conditions[0].last_transition_time, t0);
        assert_eq!(expired.conditions[0].reason, "Expired");
        let conflict = Observation::Conflict {
            short_code: "launch".into(),
            holder: Some("sales/launch".into()),
        };
        let taken = desired_status(&resource, &conflict, "https://sho.rt", t1);
        assert_eq!(taken.conditions[0].last_transition_time, t1);
        assert_eq!(taken.conditions[0].status, "False");
        assert_eq!(taken.conditions[0].reason, "ShortCodeTaken");
        assert!(taken.conditions[0].message.contains("sales/launch"));
        assert_eq!(taken.phase, Some(Phase::Conflict));
        assert_eq!(taken.short_url, None);
    }
}
