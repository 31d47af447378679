//! Leader election over a `coordination.k8s.io` Lease: one replica holds the
//! Lease and reconciles; the others wait and take over once it is not renewed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;

use crate::clock::Clock;

/// Failures of one election round.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Reading the Lease failed.
    #[error("cannot read lease {0}")]
    ReadLease(String, #[source] kube::Error),
    /// Creating or updating the Lease failed for another reason than a race.
    #[error("cannot write lease {0}")]
    WriteLease(String, #[source] kube::Error),
}

/// One replica's view of the Lease.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    clock: Arc<dyn Clock>,
}

impl LeaseLock {
    /// A lock on Lease `name` in the namespace of `api`, held as `identity`
    /// for `duration` after each renewal.
    pub fn new(
        api: Api<Lease>,
        name: &str,
        identity: &str,
        duration: Duration,
        clock: Arc<dyn Clock>,
    ) -> LeaseLock {
        LeaseLock {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            clock,
        }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes the Lease when it is free or expired, renews it when held:
    /// `true` when this replica leads afterwards. Losing a write race is not
    /// an error; it means another replica leads.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let now = self.clock.now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| LeaderError::ReadLease(self.name.clone(), e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            return self.settle(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == Some(self.identity.as_str()) {
            let acquired = spec.acquire_time.map_or(now, |t| to_chrono(&t.0));
            self.held_spec(acquired, now, transitions)
        } else if holder.is_some() && !is_expired(&spec, now) {
            return Ok(false);
        } else {
            self.held_spec(now, now, transitions + 1)
        };
        lease.spec = Some(new_spec);
        // The resourceVersion read above makes this a compare-and-swap.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.settle(written)
    }

    /// Gives the Lease up, so that another replica takes over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| LeaderError::ReadLease(self.name.clone(), e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        self.settle(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
        .map(|_| ())
    }

    fn held_spec(
        &self,
        acquired: DateTime<Utc>,
        renewed: DateTime<Utc>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            acquire_time: Some(MicroTime(to_timestamp(acquired))),
            renew_time: Some(MicroTime(to_timestamp(renewed))),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn settle(&self, written: Result<Lease, kube::Error>) -> Result<bool, LeaderError> {
        match written {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(LeaderError::WriteLease(self.name.clone(), error)),
        }
    }
}

/// Whether the holder failed to renew within its lease duration.
fn is_expired(spec: &LeaseSpec, now: DateTime<Utc>) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| to_chrono(&t.0)) else {
        return true;
    };
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed + duration <= now
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp::new(time.timestamp(), time.timestamp_subsec_nanos() as i32)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_chrono(time: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(time.as_second(), time.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// Runs election rounds every `retry` until `shutdown` resolves, publishing
/// whether this replica leads. A leader that cannot renew steps down one
/// round before its Lease could expire. On shutdown a leader releases the
/// Lease.
// Limitation: a reconcile already running when the leader steps down still
// finishes; link writes are idempotent transactions, so a brief overlap with
// the next leader repeats work but never conflicts.
pub async fn run_election(
    lock: LeaseLock,
    retry: Duration,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_renewal: Option<DateTime<Utc>> = None;
    loop {
        let now = lock.clock.now();
        let leads = match lock.try_acquire_or_renew().await {
            Ok(true) => {
                last_renewal = Some(now);
                true
            }
            Ok(false) => false,
            Err(error) => {
                tracing::warn!(error = %kadi::error_chain(&error), "Leader election round failed");
                // Step down one round before the Lease can expire, so that
                // the next leader never starts while this one still runs.
                let deadline = lock.duration.saturating_sub(retry);
                let deadline = chrono::Duration::from_std(deadline).unwrap_or_default();
                last_renewal.is_some_and(|at| now - at < deadline)
            }
        };
        if !leads {
            last_renewal = None;
        }
        leading.send_if_modified(|was| {
            let changed = *was != leads;
            if changed {
                tracing::info!(identity = %lock.identity, leading = leads, "Leadership changed");
            }
            *was = leads;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if *leading.borrow() {
        if let Err(error) = lock.release().await {
            tracing::warn!(error = %kadi::error_chain(&error), "Cannot release the lease");
        }
        leading.send_replace(false);
    }
}
