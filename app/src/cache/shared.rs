//! The shared tier: Redis, in front of the database for every replica, and the
//! channel through which replicas tell each other to drop a changed link.
//!
//! Redis is optional and may fail at any time: every command has a short
//! timeout, a circuit breaker skips Redis after repeated failures, and lookups
//! then go to the database. Clients never see a Redis error.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::local::{Cached, LocalTier};
use crate::metrics::Metrics;
use crate::store::LinkTarget;

/// Longest a Redis command may take before the lookup goes to the database;
/// a loopback or same-zone Redis answers in well under a millisecond.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// Consecutive failures that open the circuit breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// How long an open breaker skips Redis before trying it again.
const BREAKER_OPEN: Duration = Duration::from_secs(2);

/// First and longest pause between attempts to (re)connect.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// A second invalidation follows the first after this delay, to remove an
/// entry that a concurrent lookup may have written back from a read that
/// started before the change committed.
const SECOND_INVALIDATION_DELAY: Duration = Duration::from_millis(250);

/// The channel that carries invalidated short codes.
pub const INVALIDATION_CHANNEL: &str = "kadi:invalidate";

/// Prefix of link keys in Redis.
const KEY_PREFIX: &str = "kadi:link:";

/// Stored for a code that no live link has.
const MISSING_MARKER: &str = "-";

/// What the shared tier answered.
#[derive(Debug)]
pub enum SharedLookup {
    /// Redis had an answer.
    Hit(Cached),
    /// Redis had nothing for the code.
    Miss,
    /// Redis was not asked (breaker open, not connected) or failed.
    Unavailable,
}

/// Lifetimes of shared entries.
#[derive(Debug, Clone, Copy)]
pub struct SharedConfig {
    /// How long a found link stays in Redis.
    pub ttl: Duration,
    /// How long an unknown code stays in Redis.
    pub negative_ttl: Duration,
}

/// The Redis tier. Cheap to clone.
#[derive(Clone)]
pub struct SharedTier {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: OnceLock<ConnectionManager>,
    breaker: Breaker,
    config: SharedConfig,
    metrics: Metrics,
    subscribed: AtomicBool,
}

impl SharedTier {
    /// Starts connecting to Redis in the background, and subscribes to
    /// invalidations, which evict entries of `local`. Kadi serves meanwhile.
    pub fn start(
        client: redis::Client,
        config: SharedConfig,
        metrics: Metrics,
        local: LocalTier,
    ) -> SharedTier {
        let tier = SharedTier {
            inner: Arc::new(Inner {
                client,
                connection: OnceLock::new(),
                breaker: Breaker::new(),
                config,
                metrics,
                subscribed: AtomicBool::new(false),
            }),
        };
        tokio::spawn(tier.clone().connect());
        tokio::spawn(tier.clone().subscribe(local));
        tier
    }

    /// Whether this replica currently hears invalidations from the others.
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire)
    }

    /// Looks a code up in Redis.
    pub async fn get(&self, code: &str) -> SharedLookup {
        let metrics = &self.inner.metrics.cache;
        let Some(mut connection) = self.usable_connection() else {
            metrics.redis_skipped.inc();
            return SharedLookup::Unavailable;
        };
        let command = redis::cmd("GET").arg(key(code)).clone();
        let answer: Option<Option<String>> = self
            .run(command.query_async::<Option<String>>(&mut connection))
            .await;
        match answer {
            None => {
                metrics.redis_error.inc();
                SharedLookup::Unavailable
            }
            Some(None) => {
                metrics.redis_miss.inc();
                SharedLookup::Miss
            }
            Some(Some(text)) if text == MISSING_MARKER => {
                metrics.redis_negative_hit.inc();
                SharedLookup::Hit(Cached::Missing)
            }
            Some(Some(text)) => match serde_json::from_str::<LinkTarget>(&text) {
                Ok(target) => {
                    metrics.redis_hit.inc();
                    SharedLookup::Hit(Cached::Found(Arc::new(target)))
                }
                // An entry of another format (an older version): treat as a miss.
                Err(_) => {
                    metrics.redis_miss.inc();
                    SharedLookup::Miss
                }
            },
        }
    }

    /// Stores an answer in Redis without waiting for it.
    pub fn put(&self, code: &str, value: &Cached) {
        let Some(mut connection) = self.usable_connection() else {
            return;
        };
        let (text, ttl) = match value {
            Cached::Found(target) => match serde_json::to_string(target.as_ref()) {
                Ok(text) => (text, self.inner.config.ttl),
                Err(_) => return,
            },
            Cached::Missing => (MISSING_MARKER.to_owned(), self.inner.config.negative_ttl),
        };
        let command = redis::cmd("SET")
            .arg(key(code))
            .arg(text)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .clone();
        let tier = self.clone();
        tokio::spawn(async move {
            tier.run(command.query_async::<()>(&mut connection)).await;
        });
    }

    /// Deletes a code's entry and tells every replica to drop it, now and once
    /// more shortly after.
    pub fn invalidate(&self, code: &str) {
        let tier = self.clone();
        let code = code.to_owned();
        tokio::spawn(async move {
            tier.delete_and_publish(&code).await;
            tokio::time::sleep(SECOND_INVALIDATION_DELAY).await;
            tier.delete_and_publish(&code).await;
        });
    }

    async fn delete_and_publish(&self, code: &str) {
        // Invalidations ignore the breaker: they matter more than lookups.
        let Some(mut connection) = self.inner.connection.get().cloned() else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(key(code))
            .ignore()
            .cmd("PUBLISH")
            .arg(INVALIDATION_CHANNEL)
            .arg(code)
            .ignore();
        self.run(pipe.query_async::<()>(&mut connection)).await;
    }

    fn usable_connection(&self) -> Option<ConnectionManager> {
        if !self.inner.breaker.allows() {
            return None;
        }
        self.inner.connection.get().cloned()
    }

    /// Runs a command with the timeout, feeding the breaker and metrics.
    async fn run<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => {
                self.inner.breaker.succeeded();
                self.inner.metrics.redis_up.set(1);
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(&error.to_string());
                None
            }
            Err(_) => {
                self.failed("timed out");
                None
            }
        }
    }

    fn failed(&self, error: &str) {
        self.inner.metrics.redis_errors.inc();
        if self.inner.breaker.failed() {
            self.inner.metrics.redis_up.set(0);
            tracing::warn!(error, "Redis failing; lookups skip it for a while");
        }
    }

    async fn connect(self) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let mut pause = RECONNECT_FIRST;
        loop {
            match self
                .inner
                .client
                .get_connection_manager_with_config(config.clone())
                .await
            {
                Ok(connection) => {
                    let _ = self.inner.connection.set(connection);
                    self.inner.metrics.redis_up.set(1);
                    tracing::info!("Redis connected");
                    return;
                }
                Err(error) => {
                    self.inner.metrics.redis_up.set(0);
                    self.inner.metrics.redis_errors.inc();
                    tracing::warn!(error = %error, "Cannot connect to Redis; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    /// Keeps a subscription to invalidations. Whenever it (re)connects the
    /// local tier is cleared, since messages may have been missed meanwhile.
    async fn subscribe(self, local: LocalTier) {
        let mut pause = RECONNECT_FIRST;
        loop {
            match self.inner.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(INVALIDATION_CHANNEL).await {
                    Ok(()) => {
                        local.clear();
                        self.set_subscribed(true);
                        pause = RECONNECT_FIRST;
                        tracing::info!("Subscribed to cache invalidations");
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(code) = message.get_payload::<String>() {
                                local.invalidate(&code);
                            }
                        }
                        self.set_subscribed(false);
                        local.clear();
                        tracing::warn!("Lost the cache invalidation subscription");
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Cannot subscribe to cache invalidations");
                    }
                },
                Err(error) => {
                    tracing::debug!(error = %error, "Cannot connect for cache invalidations");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    }

    fn set_subscribed(&self, subscribed: bool) {
        self.inner.subscribed.store(subscribed, Ordering::Release);
        self.inner
            .metrics
            .invalidation_subscribed
            .set(i64::from(subscribed));
    }
}

fn key(code: &str) -> String {
    format!("{KEY_PREFIX}{code}")
}

/// Opens after [`BREAKER_THRESHOLD`] consecutive failures and stays open for
/// [`BREAKER_OPEN`]; the first command after that probes Redis again.
struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn allows(&self) -> bool {
        self.now_ms() >= self.open_until_ms.load(Ordering::Acquire)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Release);
    }

    /// Records a failure; true when it opened the breaker.
    fn failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= BREAKER_THRESHOLD {
            let until = self.now_ms() + BREAKER_OPEN.as_millis() as u64;
            self.open_until_ms.store(until, Ordering::Release);
            self.failures.store(0, Ordering::Release);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_only() {
        let breaker = Breaker::new();
        assert!(!breaker.failed());
        breaker.succeeded();
        assert!(!breaker.failed());
        assert!(!breaker.failed());
        assert!(breaker.allows());
        assert!(breaker.failed());
        assert!(!breaker.allows());
    }
}
