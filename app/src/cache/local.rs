//! The local tier: short code to link target, held in process, bounded in
//! bytes and time, with brief negative entries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::store::LinkTarget;

/// What the cache knows about a short code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// A live link (possibly inactive, expired or used up).
    Found(Arc<LinkTarget>),
    /// No live link has this code.
    Missing,
}

#[derive(Clone)]
struct Entry {
    value: Cached,
    stored: Instant,
}

/// Sizes and lifetimes of the local tier.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Upper bound of the bytes held by entries (keys and targets).
    pub max_bytes: u64,
    /// How long a found link stays cached. Invalidation is what keeps entries
    /// fresh; this bounds the damage should an invalidation ever be missed.
    pub ttl: Duration,
    /// How long an unknown code stays cached, so that scanners trying random
    /// codes reach the database once per code per interval.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

struct EntryLifetime(CacheConfig);

impl Expiry<String, Entry> for EntryLifetime {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(match entry.value {
            Cached::Found(_) => self.0.ttl,
            Cached::Missing => self.0.negative_ttl,
        })
    }
}

/// Bytes an entry costs beyond its strings: the map slot, the `Arc` and the
/// target's fixed fields, rounded up.
const ENTRY_OVERHEAD_BYTES: u32 = 160;

/// The local tier. Cheap to clone; clones share the entries.
#[derive(Clone)]
pub struct LocalTier {
    /// `None` when the tier is disabled (a budget of zero bytes).
    entries: Option<Cache<String, Entry>>,
    /// Bumped by every invalidation. A lookup that read the database before an
    /// invalidation must not store its (possibly stale) answer afterwards.
    generation: Arc<AtomicU64>,
}

impl LocalTier {
    /// An empty tier with these bounds; a budget of zero disables it.
    pub fn new(config: CacheConfig) -> LocalTier {
        let entries = (config.max_bytes > 0).then(|| Self::build(config));
        LocalTier {
            entries,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    fn build(config: CacheConfig) -> Cache<String, Entry> {
        Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|code: &String, entry: &Entry| {
                let target = match &entry.value {
                    Cached::Found(link) => link.original_url.len(),
                    Cached::Missing => 0,
                };
                let bytes = code.len() + target;
                u32::try_from(bytes)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD_BYTES)
            })
            .expire_after(EntryLifetime(config))
            .build()
    }

    /// The cached answer for a code, if any, and not older than `max_age`
    /// when given.
    pub fn get(&self, code: &str, max_age: Option<Duration>) -> Option<Cached> {
        let entry = self.entries.as_ref()?.get(code)?;
        match max_age {
            Some(max) if entry.stored.elapsed() > max => None,
            _ => Some(entry.value),
        }
    }

    /// The generation to pass to [`LocalTier::insert_if_current`] after a
    /// database read started now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores an answer read from the database, unless an invalidation happened
    /// since `generation` was taken (the answer may then be stale).
    pub fn insert_if_current(&self, code: &str, value: Cached, generation: u64) {
        let Some(entries) = &self.entries else {
            return;
        };
        if self.generation() == generation {
            let entry = Entry {
                value,
                stored: Instant::now(),
            };
            entries.insert(code.to_owned(), entry);
        }
    }

    /// Drops whatever is cached for a code.
    pub fn invalidate(&self, code: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate(code);
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }

    /// Number of entries (approximate, for metrics and tests).
    pub fn len(&self) -> u64 {
        let Some(entries) = &self.entries else {
            return 0;
        };
        entries.run_pending_tasks();
        entries.entry_count()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Cached {
        Cached::Found(Arc::new(LinkTarget {
            id: 1,
            original_url: url.to_owned(),
            is_active: true,
            redirect_status: 302,
            expires_at: None,
            max_visits: None,
        }))
    }

    #[test]
    fn invalidation_drops_the_entry() {
        let cache = LocalTier::new(CacheConfig::default());
        cache.insert_if_current("abc", target("https://example.com/"), cache.generation());
        assert!(cache.get("abc", None).is_some());
        cache.invalidate("abc");
        assert!(cache.get("abc", None).is_none());
    }

    #[test]
    fn answer_read_before_an_invalidation_is_not_stored() {
        let cache = LocalTier::new(CacheConfig::default());
        let generation = cache.generation();
        cache.invalidate("abc");
        cache.insert_if_current("abc", target("https://stale.example/"), generation);
        assert!(cache.get("abc", None).is_none());
    }

    #[test]
    fn entries_older_than_the_asked_age_are_misses() {
        let cache = LocalTier::new(CacheConfig::default());
        cache.insert_if_current("abc", target("https://example.com/"), cache.generation());
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.get("abc", Some(Duration::from_millis(5))).is_none());
        assert!(cache.get("abc", Some(Duration::from_secs(5))).is_some());
    }

    #[test]
    fn a_zero_budget_disables_the_tier() {
        let cache = LocalTier::new(CacheConfig {
            max_bytes: 0,
            ..CacheConfig::default()
        });
        cache.insert_if_current("abc", target("https://example.com/"), cache.generation());
        assert!(cache.get("abc", None).is_none());
    }

    #[test]
    fn byte_budget_bounds_the_entries() {
        let cache = LocalTier::new(CacheConfig {
            max_bytes: 10_000,
            ..CacheConfig::default()
        });
        let long = format!("https://example.com/{}", "x".repeat(800));
        for i in 0..100 {
            cache.insert_if_current(&format!("code{i}"), target(&long), cache.generation());
        }
        assert!(
            cache.len() <= 10,
            "{} entries exceed the budget",
            cache.len()
        );
    }
}
