//! The reconciler: validate the `ShortLink`, upsert its managed link through
//! the link service, write status when it changes, and requeue at the expiry
//! or the resync interval. Deletion releases the link through a finalizer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kadi::links::LinkService;
use kadi::managed::{ManagedLink, ManagedOutcome};
use kadi::store::Link;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::clock::Clock;
use crate::error::{Error, Recovery};
use crate::metrics::Metrics;
use crate::resource::{Phase, ShortLink, FINALIZER};
use crate::status::{self, Observation};
use crate::validate::{self, InvalidSpec};

/// The name Events are reported under.
pub const CONTROLLER_NAME: &str = "kadi-controller";

/// Intervals of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of short URLs, such as `https://sho.rt`.
    pub public_url: url::Url,
    /// Longest time between two reconciles of a resource; clicks in status
    /// are refreshed this often.
    pub resync: Duration,
    /// How soon a resource whose short code is taken looks again.
    pub conflict_retry: Duration,
    /// First delay after a transient failure; it doubles with each failure.
    pub backoff_base: Duration,
    /// Longest delay after transient failures.
    pub backoff_max: Duration,
}

impl Settings {
    /// Defaults for short URLs under `public_url`.
    pub fn new(public_url: url::Url) -> Settings {
        Settings {
            public_url,
            resync: Duration::from_secs(300),
            conflict_retry: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }

    fn public_base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The link service, the one writer of links.
    pub links: LinkService,
    /// The clock reconciles read.
    pub clock: Arc<dyn Clock>,
    /// Intervals.
    pub settings: Settings,
    /// Metric handles.
    pub metrics: Metrics,
    recorder: Recorder,
    /// Transient failures in a row, per resource (`namespace/name`).
    failures: Mutex<HashMap<String, u32>>,
    /// When each resource last took fresh clicks into its status.
    clicks_refreshed: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Context {
    /// A context reporting Events as `instance` of [`CONTROLLER_NAME`].
    pub fn new(
        client: Client,
        links: LinkService,
        clock: Arc<dyn Clock>,
        settings: Settings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Context {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            links,
            clock,
            settings,
            metrics,
            failures: Mutex::default(),
            clicks_refreshed: Mutex::default(),
        }
    }

    /// The delay before the next try after a transient failure of `owner`.
    fn next_backoff(&self, owner: &str) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(owner.to_owned()).or_insert(0);
        let factor = 2u32.saturating_pow(*count);
        *count = count.saturating_add(1);
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }

    fn forget(&self, owner: &str) {
        self.failures.lock().expect("failures lock").remove(owner);
        self.clicks_refreshed
            .lock()
            .expect("clicks lock")
            .remove(owner);
    }

    /// The clicks to report: fresh ones once per resync interval, else the
    /// ones already in status, so that clicks alone never rewrite status
    /// between resyncs.
    fn clicks_to_report(
        &self,
        owner: &str,
        link: &Link,
        shown: Option<i64>,
        now: DateTime<Utc>,
    ) -> i64 {
        let mut refreshed = self.clicks_refreshed.lock().expect("clicks lock");
        let resync =
            chrono::Duration::from_std(self.settings.resync).unwrap_or(chrono::Duration::MAX);
        let due = refreshed.get(owner).is_none_or(|at| now - *at >= resync);
        match shown {
            Some(shown) if !due => shown,
            _ => {
                refreshed.insert(owner.to_owned(), now);
                link.click_count
            }
        }
    }
}

/// Reconciles one `ShortLink`, counting the outcome in the metrics.
pub async fn reconcile(shortlink: Arc<ShortLink>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_with_finalizer(shortlink, &ctx).await;
    match &result {
        Ok(_) => ctx
            .metrics
            .record_reconcile(true, "Reconciled", started.elapsed()),
        Err(error) => ctx
            .metrics
            .record_reconcile(false, error.reason(), started.elapsed()),
    }
    result
}

async fn reconcile_with_finalizer(
    shortlink: Arc<ShortLink>,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = shortlink
        .namespace()
        .ok_or(Error::InvalidSpec(InvalidSpec::MissingObjectKey))?;
    let api: Api<ShortLink> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, shortlink, |event| async {
        match event {
            FinalizerEvent::Apply(shortlink) => apply(&shortlink, ctx, &api).await,
            FinalizerEvent::Cleanup(shortlink) => cleanup(&shortlink, ctx).await,
        }
    })
    .await;
    result.map_err(|error| match error {
        FinalizerError::ApplyFailed(error) | FinalizerError::CleanupFailed(error) => error,
        FinalizerError::AddFinalizer(error) | FinalizerError::RemoveFinalizer(error) => {
            Error::Finalizer(error)
        }
        FinalizerError::UnnamedObject | FinalizerError::InvalidFinalizer => {
            Error::InvalidSpec(InvalidSpec::MissingObjectKey)
        }
    })
}

/// Makes the managed link match the resource and reports the result.
async fn apply(
    shortlink: &ShortLink,
    ctx: &Context,
    api: &Api<ShortLink>,
) -> Result<Action, Error> {
    let now = ctx.clock.now();

    // Validate: an invalid spec is reported and waits for a change.
    let declared = match validate::declared_link(shortlink, ctx.links.policy()) {
        Ok(declared) => declared,
        Err(invalid) => return Err(report_invalid(shortlink, ctx, api, invalid, now).await),
    };
    if let Some(held) = code_held_under_another_name(ctx, &declared).await? {
        let invalid = InvalidSpec::ShortCodeChanged {
            held,
            declared: declared.short_code.clone(),
        };
        return Err(report_invalid(shortlink, ctx, api, invalid, now).await);
    }

    // Upsert the managed link through the link service.
    let link = upsert(shortlink, ctx, api, &declared, now).await?;

    // Write status when it changes.
    let owner = declared.owner.clone();
    let shown = shortlink.status.as_ref().and_then(|s| s.clicks);
    let observation = Observation::Linked {
        phase: phase_of(&declared, now),
        short_code: declared.short_code.clone(),
        expires_at: declared.expires_at,
        clicks: ctx.clicks_to_report(&owner, &link, shown, now),
    };
    report(shortlink, ctx, api, &observation, now).await?;
    ctx.failures.lock().expect("failures lock").remove(&owner);
    Ok(Action::requeue(next_wake(
        declared.expires_at,
        now,
        ctx.settings.resync,
    )))
}

/// Creates or updates the managed link, announcing what changed; a taken
/// code is reported and returned as an error.
async fn upsert(
    shortlink: &ShortLink,
    ctx: &Context,
    api: &Api<ShortLink>,
    declared: &ManagedLink,
    now: DateTime<Utc>,
) -> Result<Link, Error> {
    let outcome = match ctx.links.apply_managed(declared, now).await {
        Ok(outcome) => outcome,
        Err(error) => match Error::from(error) {
            Error::InvalidSpec(invalid) => {
                return Err(report_invalid(shortlink, ctx, api, invalid, now).await)
            }
            other => return Err(other),
        },
    };
    let (reason, note, link) = match outcome {
        ManagedOutcome::CodeTaken { holder } => {
            let observation = Observation::Conflict {
                short_code: declared.short_code.clone(),
                holder: holder.clone(),
            };
            report(shortlink, ctx, api, &observation, now).await?;
            return Err(Error::CodeTaken {
                code: declared.short_code.clone(),
                holder,
            });
        }
        ManagedOutcome::Unchanged(link) => return Ok(link),
        ManagedOutcome::Created(link) => ("LinkCreated", "created link", link),
        ManagedOutcome::Updated(link) => ("LinkUpdated", "updated link", link),
        ManagedOutcome::Expired(link) => ("LinkExpired", "expired and deactivated link", link),
    };
    announce(
        shortlink,
        ctx,
        reason,
        format!("{note} {:?}", link.short_code),
    )
    .await;
    Ok(link)
}

/// The code of a serving link the resource already holds under another short
/// code: the short code may not change once set. The CRD refuses such a
/// change; this guards clusters that do not run its CEL rules.
async fn code_held_under_another_name(
    ctx: &Context,
    declared: &ManagedLink,
) -> Result<Option<String>, Error> {
    // Limitation: only serving links count, so a resource whose link is
    // inactive or expired can still move to a new code and leave the old link
    // behind, inactive; clusters that evaluate the CRD's CEL rules refuse that.
    let held = ctx.links.managed_links(&declared.owner).await?;
    Ok(held
        .into_iter()
        .find(|link| link.is_active && link.short_code != declared.short_code)
        .map(|link| link.short_code))
}

/// Releases the managed link of a deleted resource, per its reclaim policy.
async fn cleanup(shortlink: &ShortLink, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let owner = shortlink
        .owner()
        .ok_or(Error::InvalidSpec(InvalidSpec::MissingObjectKey))?;
    let policy = shortlink.spec.reclaim_policy;
    let released = ctx
        .links
        .release_managed(&owner, policy.into(), now)
        .await?;
    for link in &released {
        let note = format!("released link {:?} ({policy:?})", link.short_code);
        announce(shortlink, ctx, "LinkReleased", note).await;
    }
    tracing::info!(shortlink = %owner, released = released.len(), reclaim_policy = ?policy, "Links released");
    ctx.metrics.set_phase(&owner, None);
    ctx.forget(&owner);
    Ok(Action::await_change())
}

/// Sorts a failed reconcile: wait for a change, look again later, or back off.
pub fn error_policy(shortlink: Arc<ShortLink>, error: &Error, ctx: Arc<Context>) -> Action {
    let owner = shortlink.owner().unwrap_or_default();
    let chain = kadi::error_chain(error);
    match error.recovery() {
        Recovery::AwaitChange => {
            tracing::warn!(shortlink = %owner, reason = error.reason(), error = %chain, "ShortLink waits for a change");
            Action::await_change()
        }
        Recovery::RetryLater => {
            tracing::warn!(shortlink = %owner, reason = error.reason(), error = %chain, "ShortLink waits for its short code");
            Action::requeue(ctx.settings.conflict_retry)
        }
        Recovery::Backoff => {
            let delay = ctx.next_backoff(&owner);
            tracing::warn!(
                shortlink = %owner,
                reason = error.reason(),
                error = %chain,
                retry_ms = delay.as_millis() as u64,
                "Reconcile failed; backing off"
            );
            Action::requeue(delay)
        }
    }
}

/// Runs the controller over ShortLinks in every namespace (or the one `api`
/// is scoped to) until `shutdown` resolves.
pub async fn run(
    api: Api<ShortLink>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(shortlink = %object, "Reconciled"),
                // Failed reconciles were logged by `error_policy` already.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => {
                    tracing::warn!(error = %kadi::error_chain(&error), "Controller stream error")
                }
            }
        })
        .await;
}

/// The phase of a link that matches its resource at `now`.
fn phase_of(declared: &ManagedLink, now: DateTime<Utc>) -> Phase {
    if declared.is_expired(now) {
        Phase::Expired
    } else if !declared.is_active {
        Phase::Inactive
    } else {
        Phase::Active
    }
}

/// When to look again: at the expiry when it comes before the next resync.
pub fn next_wake(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    resync: Duration,
) -> Duration {
    match expires_at.map(|at| at - now) {
        Some(left) if left > chrono::Duration::zero() => {
            left.to_std().unwrap_or(resync).min(resync)
        }
        _ => resync,
    }
}

/// Writes the status that follows from `observation` when it differs from
/// the current one, with a Warning Event when the resource newly needs a
/// person's attention.
async fn report(
    shortlink: &ShortLink,
    ctx: &Context,
    api: &Api<ShortLink>,
    observation: &Observation,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let desired = status::desired_status(shortlink, observation, ctx.settings.public_base(), now);
    if let Some(owner) = shortlink.owner() {
        ctx.metrics.set_phase(&owner, desired.phase);
    }
    let current = shortlink.status.as_ref();
    if current == Some(&desired) {
        return Ok(());
    }
    status::write_status(api, &shortlink.name_any(), &desired)
        .await
        .map_err(Error::PatchStatus)?;
    let ready = &desired.conditions[0];
    let was = current.and_then(|s| s.conditions.first());
    let news = was.is_none_or(|c| c.reason != ready.reason || c.message != ready.message);
    if ready.status == "False" && news {
        status::publish(
            &ctx.recorder,
            shortlink,
            EventType::Warning,
            &ready.reason,
            ready.message.clone(),
        )
        .await;
    }
    tracing::info!(
        shortlink = %shortlink.owner().unwrap_or_default(),
        phase = observation.phase().as_str(),
        reason = %ready.reason,
        "Status updated"
    );
    Ok(())
}

async fn report_invalid(
    shortlink: &ShortLink,
    ctx: &Context,
    api: &Api<ShortLink>,
    invalid: InvalidSpec,
    now: DateTime<Utc>,
) -> Error {
    let observation = Observation::Invalid(invalid.clone());
    match report(shortlink, ctx, api, &observation, now).await {
        Ok(()) => Error::InvalidSpec(invalid),
        Err(error) => error,
    }
}

async fn announce(shortlink: &ShortLink, ctx: &Context, reason: &str, note: String) {
    status::publish(&ctx.recorder, shortlink, EventType::Normal, reason, note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_comes_at_the_expiry_when_it_is_sooner() {
        let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let resync = Duration::from_secs(300);
        let soon = now + chrono::Duration::seconds(42);
        assert_eq!(next_wake(Some(soon), now, resync), Duration::from_secs(42));
        let later = now + chrono::Duration::hours(2);
        assert_eq!(next_wake(Some(later), now, resync), resync);
        let past = now - chrono::Duration::hours(2);
        assert_eq!(next_wake(Some(past), now, resync), resync);
        assert_eq!(next_wake(None, now, resync), resync);
    }
}
