//! Leader election over a Lease against the fake API server: one replica
//! leads, the other waits and takes over when the leader stops renewing or
//! releases the Lease.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use harness::apiserver::FakeApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use kadi_controller::clock::ManualClock;
use kadi_controller::leader::{run_election, LeaseLock};
use kube::Api;
use tokio::sync::watch;

const LEASE: &str = "kadi-controller";
const DURATION: Duration = Duration::from_secs(15);

fn locks(server: &FakeApiServer, clock: &Arc<ManualClock>) -> (LeaseLock, LeaseLock) {
    let api: Api<Lease> = Api::namespaced(server.client(), "kadi-system");
    (
        LeaseLock::new(api.clone(), LEASE, "replica-a", DURATION, clock.clone()),
        LeaseLock::new(api, LEASE, "replica-b", DURATION, clock.clone()),
    )
}

fn holder(server: &FakeApiServer) -> (Option<String>, i64) {
    let lease = server
        .object("leases", "kadi-system", LEASE)
        .expect("lease");
    (
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned),
        lease["spec"]["leaseTransitions"]
            .as_i64()
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops_renewing() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, b) = locks(&server, &clock);

    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&server), (Some("replica-a".into()), 0));

    // A renewing leader keeps the Lease past its first duration.
    clock.advance(Span::seconds(10));
    assert!(a.try_acquire_or_renew().await.unwrap());
    clock.advance(Span::seconds(10));
    assert!(!b.try_acquire_or_renew().await.unwrap());

    // The leader dies: no renewal for a whole duration.
    clock.advance(Span::seconds(6));
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&server), (Some("replica-b".into()), 1));
    assert!(
        !a.try_acquire_or_renew().await.unwrap(),
        "the old leader must not lead again"
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, b) = locks(&server, &clock);
    assert!(a.try_acquire_or_renew().await.unwrap());
    b.release().await.unwrap();
    assert_eq!(
        holder(&server).0.as_deref(),
        Some("replica-a"),
        "only the holder releases"
    );
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&server), (Some("replica-b".into()), 1));
}

#[tokio::test]
async fn replicas_racing_for_a_new_lease_elect_one() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, b) = locks(&server, &clock);
    let (won_a, won_b) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    assert_ne!(won_a.unwrap(), won_b.unwrap(), "exactly one replica leads");
}

async fn wait_for(leading: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l == want))
        .await
        .expect("leadership change")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_process_dies() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, b) = locks(&server, &clock);
    let retry = Duration::from_millis(20);
    let (_stop_tx, stop) = watch::channel(false);

    let (a_tx, mut a_leads) = watch::channel(false);
    let a_task = tokio::spawn(run_election(a, retry, a_tx, stop.clone()));
    wait_for(&mut a_leads, true).await;
    let (b_tx, b_leads) = watch::channel(false);
    let _b_task = tokio::spawn(run_election(b, retry, b_tx, stop.clone()));
    tokio::time::sleep(retry * 5).await;
    assert!(!*b_leads.borrow(), "two leaders at once");

    // The leader dies without releasing; the standby waits out the lease.
    a_task.abort();
    clock.advance(Span::seconds(16));
    let started = Instant::now();
    let mut b_leads = b_leads;
    wait_for(&mut b_leads, true).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(holder(&server).0.as_deref(), Some("replica-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_hands_over_without_waiting() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, b) = locks(&server, &clock);
    let retry = Duration::from_millis(20);
    let (stop_a, stop_a_rx) = watch::channel(false);
    let (_stop_b, stop_b_rx) = watch::channel(false);
    let (a_tx, mut a_leads) = watch::channel(false);
    let a_task = tokio::spawn(run_election(a, retry, a_tx, stop_a_rx));
    wait_for(&mut a_leads, true).await;
    let (b_tx, mut b_leads) = watch::channel(false);
    let _b_task = tokio::spawn(run_election(b, retry, b_tx, stop_b_rx));

    stop_a.send(true).unwrap();
    a_task.await.unwrap();
    assert!(!*a_leads.borrow());
    // The clock does not move: only the release lets the standby in.
    wait_for(&mut b_leads, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_expires() {
    let server = FakeApiServer::start().await;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (a, _) = locks(&server, &clock);
    let retry = Duration::from_millis(20);
    let (_stop, stop_rx) = watch::channel(false);
    let (a_tx, mut a_leads) = watch::channel(false);
    let _a_task = tokio::spawn(run_election(a, retry, a_tx, stop_rx));
    wait_for(&mut a_leads, true).await;

    server.set_unavailable(true);
    tokio::time::sleep(retry * 5).await;
    clock.advance(Span::seconds(14));
    tokio::time::sleep(retry * 5).await;
    assert!(*a_leads.borrow(), "stepped down while the lease still held");
    clock.advance(Span::seconds(1));
    wait_for(&mut a_leads, false).await;
}
