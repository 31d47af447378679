//! Assembles a running Kadi from its configuration: store, caches, click
//! pipeline and listeners, with a graceful shutdown that drains clicks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use url::Url;

use crate::auth::AuthMode;
use crate::cache::{CacheConfig, LinkCache};
use crate::clicks::{self, ClickWriter};
use crate::config::{GlobalArgs, KeysCommand, ServeArgs};
use crate::http::access::Access;
use crate::http::connections::{self, ConnectionLimits};
use crate::http::public::PublicService;
use crate::http::{self, AppState, StateParts};
use crate::links::{LinkService, TargetPolicy};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::store::{Backend, Store};

/// API requests per second per key and per client in production: far above
/// what an integration does by hand, low enough that one client cannot keep
/// the database busy for everyone.
const DEFAULT_API_RATE_LIMIT: f64 = 50.0;

/// Redirects per second per client in production: a person clicks a few
/// links a minute; this leaves room for shared addresses (offices, carrier
/// NAT) while stopping one client from scanning codes at full speed.
const DEFAULT_REDIRECT_RATE_LIMIT: f64 = 200.0;

/// Rate-limit buckets kept when a service is built from [`Options::new`].
const DEFAULT_MAX_TRACKED_CLIENTS: u64 = 100_000;

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
    /// Whether the resource API requires an API key.
    pub auth: AuthMode,
    /// Rate limits of the API and of redirects.
    pub rate_limits: RateLimits,
    /// Deadlines of client connections.
    pub connections: ConnectionLimits,
}

/// Rate limits of a service; `None` is no limit.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// API requests, per key and per client.
    pub api: Option<RateLimit>,
    /// Redirects, per client.
    pub redirect: Option<RateLimit>,
    /// Most buckets each limiter keeps.
    pub max_tracked_clients: u64,
    /// Take the client from the first `X-Forwarded-For` hop.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            api: None,
            redirect: None,
            max_tracked_clients: DEFAULT_MAX_TRACKED_CLIENTS,
            trust_forwarded_for: false,
        }
    }
}

impl Options {
    /// Defaults for a service whose short URLs start with `public_url`: no API
    /// keys and no rate limits, as the original contract had.
    pub fn new(public_url: Url) -> Options {
        Options {
            public_url,
            cache: CacheConfig::default(),
            click_queue_capacity: 65_536,
            redis: None,
            auth: AuthMode::Off,
            rate_limits: RateLimits::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// A service with its background click writer.
pub struct Service {
    /// The state handlers share.
    pub state: AppState,
    writer: ClickWriter,
    connections: ConnectionLimits,
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
        let limits = &options.rate_limits;
        let limiter = |limit: Option<RateLimit>| {
            limit.map(|limit| RateLimiter::new(limit, limits.max_tracked_clients))
        };
        let access = Access {
            auth: options.auth,
            api_limiter: limiter(limits.api),
            redirect_limiter: limiter(limits.redirect),
            trust_forwarded_for: limits.trust_forwarded_for,
        };
        Service {
            state: AppState::new(StateParts {
                links,
                clicks: queue,
                metrics,
                public_base,
                access: Arc::new(access),
            }),
            writer,
            connections: options.connections,
        }
    }

    /// The public router.
    pub fn router(&self) -> Router {
        http::app(self.state.clone())
    }

    /// The service of the public listener: the router, and the direct path
    /// of redirects.
    pub fn public(&self) -> PublicService {
        PublicService::new(self.state.clone())
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
        let server = connections::serve(listener, self.public(), self.connections, async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
        let mut server = tokio::spawn(server);
        tokio::select! {
            result = &mut server => result.context("server task failed")?,
            _ = stopping_rx => {
                tracing::info!(grace_secs = grace.as_secs(), "Shutting down");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result.context("server task failed")?,
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
    register_bootstrap_key(&store).await?;
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
    let local = is_local_setup(store.backend(), address.ip());
    let auth = args.auth.unwrap_or(if local {
        AuthMode::Off
    } else {
        AuthMode::Required
    });
    let production_rate =
        |flag: Option<f64>, default: f64| flag.unwrap_or(if local { 0.0 } else { default });
    let options = Options {
        public_url: public_url.clone(),
        cache: CacheConfig {
            max_bytes: args.cache_bytes,
            ttl: Duration::from_secs(args.cache_ttl_secs),
            negative_ttl: Duration::from_secs(args.negative_cache_ttl_secs),
        },
        click_queue_capacity: args.click_queue_capacity,
        redis,
        auth,
        rate_limits: RateLimits {
            api: RateLimit::new(
                production_rate(args.api_rate_limit, DEFAULT_API_RATE_LIMIT),
                args.api_rate_burst,
            ),
            redirect: RateLimit::new(
                production_rate(args.redirect_rate_limit, DEFAULT_REDIRECT_RATE_LIMIT),
                args.redirect_rate_burst,
            ),
            max_tracked_clients: args.rate_limit_max_clients,
            trust_forwarded_for: args.trust_forwarded_for,
        },
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs.max(1)),
        },
    };
    log_access_policy(&options, local);
    let service = Service::start(store, options);
    if let Some(metrics_address) = args.metrics_listen {
        let metrics_listener = TcpListener::bind(metrics_address)
            .await
            .with_context(|| format!("cannot listen on {metrics_address}"))?;
        let router = http::metrics_app(service.state.clone());
        tracing::info!(address = %metrics_address, "Metrics listening");
        tokio::spawn(async move { axum::serve(metrics_listener, router).await });
    }
    let shutdown = shutdown_signal();
    tracing::info!(
        url = %format!("http://{address}"),
        public_url = %public_url,
        database = ?service.state.store().backend(),
        redis = args.redis_url.is_some(),
        auth = %auth,
        "Kadi is listening"
    );
    service
        .run(
            listener,
            shutdown,
            Duration::from_secs(args.shutdown_grace_secs),
        )
        .await
}

/// Whether this is the embedded default on loopback: someone trying Kadi on
/// their own machine. Anything else may face other people, so it starts with
/// API keys required and rate limits on.
pub fn is_local_setup(backend: Backend, listen: std::net::IpAddr) -> bool {
    backend == Backend::Sqlite && listen.is_loopback()
}

/// Says at start-up how the service is guarded, and warns when it is open.
fn log_access_policy(options: &Options, local: bool) {
    let limits = &options.rate_limits;
    let rate = |limit: Option<RateLimit>| limit.map_or(0.0, |limit| limit.per_second);
    tracing::info!(
        auth = %options.auth,
        api_rate_limit = rate(limits.api),
        redirect_rate_limit = rate(limits.redirect),
        trust_forwarded_for = limits.trust_forwarded_for,
        "Access policy"
    );
    match (options.auth, local) {
        (AuthMode::Off, true) => tracing::info!(
            "API keys are off: the embedded default on loopback is for local use; \
             use --auth required before exposing it"
        ),
        (AuthMode::Off, false) => {
            tracing::warn!("API keys are off: anyone who reaches this listener can change links")
        }
        (AuthMode::Required, _) => {}
    }
}

/// `kadi keys …`: creates, lists and revokes API keys.
pub async fn keys(global: &GlobalArgs, command: &KeysCommand) -> anyhow::Result<()> {
    let store = connect(global).await?;
    match command {
        KeysCommand::Create { name } => {
            if name.trim().is_empty() {
                anyhow::bail!("name the key after what will use it: --name must not be empty");
            }
            let created = crate::auth::create_key(&store, name)
                .await
                .context("cannot create the key")?;
            println!("id: {}", created.key.id);
            println!("name: {}", created.key.name);
            println!("key: {}", created.secret);
            eprintln!("Store the key now: it is not shown again.");
        }
        KeysCommand::List => {
            let keys = store.api_keys().await.context("cannot list the keys")?;
            println!(
                "{:<6} {:<14} {:<26} {:<26} NAME",
                "ID", "PREFIX", "CREATED", "REVOKED"
            );
            for key in keys {
                let revoked = key
                    .revoked_at
                    .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339());
                println!(
                    "{:<6} {:<14} {:<26} {:<26} {}",
                    key.id,
                    key.prefix,
                    key.created_at.to_rfc3339(),
                    revoked,
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = store
                .revoke_api_key(*id)
                .await
                .context("cannot revoke the key")?;
            let Some(key) = key else {
                anyhow::bail!("no API key has id {id}");
            };
            println!("revoked: {} ({})", key.id, key.name);
        }
    }
    store.close().await;
    Ok(())
}

/// Environment variable holding a key that a deployment hands to Kadi (a
/// Kubernetes Secret), so that automation such as `helm test` can use the API
/// without a person running `kadi keys create` first. Environment only: it is
/// a secret.
pub const BOOTSTRAP_KEY_ENV: &str = "KADI_BOOTSTRAP_API_KEY";

/// Stores the bootstrap key, when one is given, under the name `bootstrap`.
async fn register_bootstrap_key(store: &Store) -> anyhow::Result<()> {
    let Ok(secret) = std::env::var(BOOTSTRAP_KEY_ENV) else {
        return Ok(());
    };
    let secret = secret.trim();
    if secret.is_empty() {
        return Ok(());
    }
    let added = crate::auth::ensure_key(store, "bootstrap", secret)
        .await
        .with_context(|| {
            format!("{BOOTSTRAP_KEY_ENV} is not a usable key (kadi_ and 64 hex digits)")
        })?;
    if added {
        tracing::info!("Bootstrap API key registered");
    }
    Ok(())
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
        .context("cannot open the database")?
        .with_deadline(Duration::from_secs(global.database_timeout_secs));
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

/// Resolves on SIGTERM or Ctrl-C; the shutdown trigger of `kadi` and
/// `kadi-controller`. The handlers are installed by this call, not when the
/// future is first polled: a signal that arrives in between (say, right after
/// start-up is announced) still shuts down gracefully instead of killing the
/// process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        /// Resolves on the first delivery; never when the handler failed.
        async fn delivered(signal: std::io::Result<Signal>) {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        let terminate = delivered(signal(SignalKind::terminate()));
        let interrupt = delivered(signal(SignalKind::interrupt()));
        async move {
            tokio::select! {
                _ = terminate => {},
                _ = interrupt => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_embedded_default_on_loopback_is_local() {
        let loopback = "127.0.0.1".parse().unwrap();
        let loopback_v6 = "::1".parse().unwrap();
        let any = "0.0.0.0".parse().unwrap();
        assert!(is_local_setup(Backend::Sqlite, loopback));
        assert!(is_local_setup(Backend::Sqlite, loopback_v6));
        assert!(!is_local_setup(Backend::Sqlite, any));
        assert!(!is_local_setup(Backend::Postgres, loopback));
    }
}
