//! Start-up of the operator: database, link service, probes, leader election,
//! and the controller, which runs only while this replica leads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kadi::cache::{CacheConfig, LinkCache};
use kadi::links::{LinkService, TargetPolicy};
use kadi::store::Store;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::clock::SystemClock;
use crate::config::RunArgs;
use crate::http::{self, ProbeState};
use crate::leader::{self, LeaseLock};
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, Settings};

/// Runs the operator until SIGTERM or SIGINT. Returns an error when this
/// replica loses the Lease while leading, so that it restarts as a standby
/// with no reconcile in flight.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (store, links) = open_link_service(&args).await?;
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client")?;
    let metrics = Metrics::new();

    // Probes and metrics serve from the start, on leaders and standbys alike.
    let listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let probes = http::router(ProbeState {
        metrics: metrics.clone(),
        store: store.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, probes).await });
    tracing::info!(address = %args.metrics_listen, "Metrics and probes listening");

    let (stop_tx, stop) = watch::channel(false);
    let signal = kadi::server::shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });

    // Lead through the Lease, or wait for it.
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("kadi-controller-{:08x}", rand::random::<u32>()));
    let clock = Arc::new(SystemClock);
    let lease_duration = Duration::from_secs(args.lease_duration_secs.max(3));
    let lock = LeaseLock::new(
        Api::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        lease_duration,
        clock.clone(),
    );
    let (leading_tx, mut leading) = watch::channel(false);
    let election = tokio::spawn(leader::run_election(
        lock,
        lease_duration / 3,
        leading_tx,
        stop.clone(),
    ));
    tracing::info!(identity = %identity, lease = %args.lease_name, "Waiting for leadership");
    let mut stopping = stop.clone();
    tokio::select! {
        _ = leading.wait_for(|leads| *leads) => {}
        _ = stopping.wait_for(|stop| *stop) => {
            let _ = election.await;
            return Ok(());
        }
    }
    metrics.leader.set(1);

    // Reconcile until shutdown or until the Lease is lost.
    let settings = Settings {
        resync: Duration::from_secs(args.resync_secs.max(1)),
        conflict_retry: Duration::from_secs(args.conflict_retry_secs.max(1)),
        ..Settings::new(args.public_url.clone())
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        links,
        clock,
        settings,
        metrics.clone(),
        Some(identity),
    ));
    let api = match &args.watch_namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let (trigger_tx, trigger) = oneshot::channel::<()>();
    let mut lost = leading.clone();
    let mut stopping = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = lost.wait_for(|leads| !*leads) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        let _ = trigger_tx.send(());
    });
    tracing::info!("Leading; reconciling ShortLinks");
    reconcile::run(api, ctx, async move {
        let _ = trigger.await;
    })
    .await;
    metrics.leader.set(0);
    if *stop.borrow() {
        let _ = election.await;
        store.close().await;
        tracing::info!("Stopped");
        return Ok(());
    }
    anyhow::bail!("lost the leader lease; restarting as a standby")
}

/// The database, migrated, and the link service over it, with the Redis tier
/// when configured.
async fn open_link_service(args: &RunArgs) -> anyhow::Result<(Store, LinkService)> {
    let store = Store::connect(&args.database_url, args.database_max_connections)
        .await
        .context("cannot open the database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    // With Redis, every invalidation also reaches the `kadi` replicas through
    // the shared tier's invalidation channel.
    let redis = match &args.redis_url {
        Some(url) => {
            Some(redis::Client::open(url.as_str()).context("REDIS_URL is not a Redis URL")?)
        }
        None => {
            // Limitation: without Redis, `kadi` replicas learn of a change
            // only when their local cache entry ends (60 s by default);
            // expiry is exact regardless, since every redirect checks
            // `expires_at`.
            tracing::warn!("No REDIS_URL: kadi replicas will not hear link invalidations");
            None
        }
    };
    let links = LinkService::new(
        store.clone(),
        LinkCache::with_metrics(CacheConfig::default(), kadi::metrics::Metrics::new(), redis),
        TargetPolicy::for_public_url(&args.public_url),
    );
    Ok((store, links))
}
