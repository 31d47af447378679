//! The link cache of the redirect path: a local tier in every process and,
//! when Redis is configured, a shared tier that also carries invalidations
//! between replicas. The link service invalidates through [`LinkCache`] after
//! every committed change.

mod local;
mod shared;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use local::{CacheConfig, Cached, LocalTier};
pub use shared::{SharedConfig, SharedLookup, SharedTier, INVALIDATION_CHANNEL};

use crate::metrics::Metrics;
use crate::store::{LinkTarget, StoreError};

/// While a replica with Redis does not hear invalidations (Redis down or the
/// subscription lost), it trusts local entries only this long, so that it
/// never serves a changed link for more than about a second.
pub const UNSUBSCRIBED_MAX_AGE: Duration = Duration::from_secs(1);

/// The two cache tiers. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct LinkCache {
    local: LocalTier,
    shared: Option<SharedTier>,
    metrics: Metrics,
}

impl LinkCache {
    /// A local-only cache with metrics of its own (for tools and tests).
    pub fn new(config: CacheConfig) -> LinkCache {
        LinkCache::with_metrics(config, Metrics::new(), None)
    }

    /// A cache recording into `metrics`, with a Redis tier when a client is
    /// given. Must be called inside a Tokio runtime when Redis is used.
    pub fn with_metrics(
        config: CacheConfig,
        metrics: Metrics,
        redis: Option<redis::Client>,
    ) -> LinkCache {
        let local = LocalTier::new(config);
        let shared = redis.map(|client| {
            let shared_config = SharedConfig {
                ttl: config.ttl.saturating_mul(5),
                negative_ttl: config.negative_ttl,
            };
            SharedTier::start(client, shared_config, metrics.clone(), local.clone())
        });
        LinkCache {
            local,
            shared,
            metrics,
        }
    }

    /// The local tier.
    pub fn local(&self) -> &LocalTier {
        &self.local
    }

    /// The shared tier, when Redis is configured.
    pub fn shared(&self) -> Option<&SharedTier> {
        self.shared.as_ref()
    }

    /// The answer for `code`: from the local tier, else Redis, else `load`
    /// (the database), filling the tiers on the way back.
    pub async fn get_or_load<F, Fut>(&self, code: &str, load: F) -> Result<Cached, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<LinkTarget>, StoreError>>,
    {
        let counters = &self.metrics.cache;
        let max_age = match &self.shared {
            Some(shared) if !shared.is_subscribed() => Some(UNSUBSCRIBED_MAX_AGE),
            _ => None,
        };
        if let Some(hit) = self.local.get(code, max_age) {
            match hit {
                Cached::Found(_) => counters.local_hit.inc(),
                Cached::Missing => counters.local_negative_hit.inc(),
            }
            return Ok(hit);
        }
        counters.local_miss.inc();
        let generation = self.local.generation();
        if let Some(shared) = &self.shared {
            if let SharedLookup::Hit(hit) = shared.get(code).await {
                self.local.insert_if_current(code, hit.clone(), generation);
                return Ok(hit);
            }
        }
        let found = match load().await? {
            Some(target) => Cached::Found(Arc::new(target)),
            None => Cached::Missing,
        };
        if self.local.generation() == generation {
            self.local
                .insert_if_current(code, found.clone(), generation);
            if let Some(shared) = &self.shared {
                shared.put(code, &found);
            }
        }
        Ok(found)
    }

    /// Drops a code everywhere: here at once, in Redis and in every other
    /// replica through the invalidation channel.
    pub fn invalidate(&self, code: &str) {
        self.local.invalidate(code);
        if let Some(shared) = &self.shared {
            shared.invalidate(code);
        }
    }

    /// What the local tier holds for a code, whatever its age.
    pub fn get(&self, code: &str) -> Option<Cached> {
        self.local.get(code, None)
    }

    /// The local tier's invalidation generation; see
    /// [`LocalTier::insert_if_current`].
    pub fn generation(&self) -> u64 {
        self.local.generation()
    }

    /// Stores an answer in the local tier unless an invalidation happened
    /// since `generation` was taken.
    pub fn insert_if_current(&self, code: &str, value: Cached, generation: u64) {
        self.local.insert_if_current(code, value, generation);
    }

    /// Drops every local entry.
    pub fn clear(&self) {
        self.local.clear();
    }

    /// Entries in the local tier.
    pub fn len(&self) -> u64 {
        self.local.len()
    }

    /// Whether the local tier is empty.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }
}
