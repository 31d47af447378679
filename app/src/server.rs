//! Assembles a running Kadi from its configuration: store, caches, click
//! pipeline and listeners, with a graceful shutdown that drains clicks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use url::Url;

use crate::cache::{CacheConfig, LinkCache};
use crate::clicks::{self, ClickWriter};
use crate::config::{GlobalArgs, ServeArgs};
use crate::http::{self, AppState};
use crate::links::{LinkService, TargetPolicy};
use crate::metrics::Metrics;
use crate::store::Store;

/// What a service needs besides its store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base of short URLs.
    pub public_url: Url,
    /// Local cache bounds.
    pub cache: CacheConfig,
    /// Capacity of the click queue.
    pub click_queue_capacity: usize,
    /// Redis for the shared cache tier and invalidations between replicas.
    pub redis: Option<redis::Client>,
}

impl Options {
    /// Defaults for a service whose short URLs start with `public_url`.
    pub fn new(public_url: Url) -> Options {
        Options {
            public_url,
            cache: CacheConfig::default(),
            click_queue_capacity: 65_536,
            redis: None,
        }
    }
}

/// A service with its background click writer.
pub struct Service {
    /// The state handlers share.
    pub state: AppState,
    writer: ClickWriter,
}

impl Service {
    /// Starts the click writer and wires the service around `store`.
    pub fn start(store: Store, options: Options) -> Service {
        let metrics = Metrics::new();
        let cache = LinkCache::with_metrics(options.cache, metrics.clone(), options.redis);
        metrics
            .click_queue_capacity
            .set(options.click_queue_capacity as i64);
        tokio::spawn(probe_database(store.clone(), metrics.clone()));
        let links = LinkService::new(
            store.clone(),
            cache,
            TargetPolicy::for_public_url(&options.public_url),
        );
        let (queue, writer) = clicks::start(store, options.click_queue_capacity, metrics.clone());
        let public_base: Arc<str> = options.public_url.as_str().trim_end_matches('/').into();
        Service {
            state: AppState {
                links,
                clicks: queue,
                metrics,
                public_base,
            },
            writer,
        }
    }

    /// The public router.
    pub fn router(&self) -> Router {
        http::app(self.state.clone())
    }

    /// Serves `listener` until `shutdown` resolves, lets in-flight requests
    /// finish for up to `grace`, then stores every queued click.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            result = &mut server => result.context("server task failed")?.context("serving failed")?,
            _ = stopping_rx => {
                tracing::info!(grace_secs = grace.as_secs(), "Shutting down");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result.context("server task failed")?.context("serving failed")?,
                    Err(_) => {
                        tracing::warn!("Grace period over; closing open connections");
                        server.abort();
                    }
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stores every queued click and closes the store.
    pub async fn shutdown(self) {
        let store = self.state.store().clone();
        drop(self.state);
        self.writer.shutdown().await;
        store.close().await;
        tracing::info!("Click queue drained");
    }
}

/// `kadi serve`.
pub async fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let store = connect(global).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("listener has no address")?;
    let public_url = match args.public_url {
        Some(url) => url,
        None => Url::parse(&format!("http://{address}")).context("listen address is no URL")?,
    };
    let redis = match &args.redis_url {
        Some(url) => {
            Some(redis::Client::open(url.as_str()).context("REDIS_URL is not a Redis URL")?)
        }
        None => None,
    };
    let options = Options {
        public_url: public_url.clone(),
        cache: CacheConfig {
            max_bytes: args.cache_bytes,
            ttl: Duration::from_secs(args.cache_ttl_secs),
            negative_ttl: Duration::from_secs(args.negative_cache_ttl_secs),
        },
        click_queue_capacity: args.click_queue_capacity,
        redis,
    };
    let service = Service::start(store, options);
    if let Some(metrics_address) = args.metrics_listen {
        let metrics_listener = TcpListener::bind(metrics_address)
            .await
            .with_context(|| format!("cannot listen on {metrics_address}"))?;
        let router = http::metrics_app(service.state.clone());
        tracing::info!(address = %metrics_address, "Metrics listening");
        tokio::spawn(async move { axum::serve(metrics_listener, router).await });
    }
    tracing::info!(
        url = %format!("http://{address}"),
        public_url = %public_url,
        database = ?service.state.store().backend(),
        redis = args.redis_url.is_some(),
        "Kadi is listening"
    );
    service
        .run(
            listener,
            shutdown_signal(),
            Duration::from_secs(args.shutdown_grace_secs),
        )
        .await
}

/// `kadi migrate`.
pub async fn migrate(global: &GlobalArgs) -> anyhow::Result<()> {
    connect(global).await?;
    tracing::info!("Migrations applied");
    Ok(())
}

/// `kadi import`.
pub async fn import(global: &GlobalArgs, args: &crate::config::ImportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if args.users.is_none() && args.urls.is_none() && args.events.is_none() {
        anyhow::bail!("name at least one of --users, --urls and --events");
    }
    let store = connect(global).await?;
    let links = LinkService::new(
        store.clone(),
        LinkCache::new(CacheConfig::default()),
        TargetPolicy::default(),
    );
    let files = crate::import::ImportFiles {
        users: args.users.as_deref(),
        urls: args.urls.as_deref(),
        events: args.events.as_deref(),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let report = crate::import::import(&links, files)
        .await
        .context("import failed")?;
    print!("{report}");
    store.close().await;
    Ok(())
}

async fn connect(global: &GlobalArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&global.database_url, global.database_max_connections)
        .await
        .context("cannot open the database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

/// How often the database is probed for `kadi_db_up`.
const DATABASE_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps `kadi_db_up` current, so that an outage shows in metrics even when
/// no request touches the database (redirects served from cache).
async fn probe_database(store: Store, metrics: Metrics) {
    let mut interval = tokio::time::interval(DATABASE_PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = true;
    loop {
        interval.tick().await;
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
            Ok(Ok(()))
        );
        metrics.db_up.set(i64::from(up));
        if up != was_up {
            if up {
                tracing::info!("Database reachable again");
            } else {
                tracing::error!("Database unreachable");
            }
            was_up = up;
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
