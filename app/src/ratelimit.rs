//! In-process token buckets that bound how fast one client or one API key may
//! send requests, in bounded memory.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sustained rate with a burst on top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell: the bucket's size.
    pub burst: u32,
}

impl RateLimit {
    /// A limit, or `None` (no limit) when `per_second` is 0 or less. A burst of
    /// 0 is taken as 1, so that a limit never refuses everything.
    pub fn new(per_second: f64, burst: u32) -> Option<RateLimit> {
        (per_second > 0.0 && per_second.is_finite()).then(|| RateLimit {
            per_second,
            burst: burst.max(1),
        })
    }

    /// How long an empty bucket takes to fill up again.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.per_second)
    }
}

/// What a bucket said about one request, with what the `RateLimit-*` and
/// `Retry-After` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The bucket's size.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds (rounded up) until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds (rounded up, at least 1) until a refused request may be
    /// retried; `None` when the request was allowed.
    pub retry_after_secs: Option<u64>,
}

impl Quota {
    /// Whether the request was allowed.
    pub fn allowed(&self) -> bool {
        self.retry_after_secs.is_none()
    }
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A client address (an IPv6 client by its /64 network).
    Client(IpAddr),
    /// An API key, by id.
    Key(i64),
}

impl Subject {
    /// The subject for a client address. An IPv6 host usually holds a whole
    /// /64, so one bucket covers the network; IPv4-mapped addresses count as
    /// the IPv4 address.
    pub fn client(ip: IpAddr) -> Subject {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1_u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            },
            v4 => v4,
        };
        Subject::Client(ip)
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets for many subjects, sharing one [`RateLimit`].
///
/// Memory is bounded: at most `max_tracked` buckets are kept, and a bucket
/// left alone long enough to fill up again is forgotten, which changes
/// nothing because a new bucket starts full.
#[derive(Clone)]
pub struct RateLimiter<K = Subject> {
    limit: RateLimit,
    buckets: moka::sync::Cache<K, Arc<Mutex<Bucket>>>,
}

impl<K> RateLimiter<K>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
{
    /// Buckets for at most `max_tracked` subjects.
    pub fn new(limit: RateLimit, max_tracked: u64) -> RateLimiter<K> {
        let buckets = moka::sync::Cache::builder()
            .max_capacity(max_tracked.max(1))
            // After this long untouched, a bucket is full again: forgetting
            // it loses nothing.
            .time_to_idle(limit.refill_time() + Duration::from_secs(1))
            .build();
        RateLimiter { limit, buckets }
    }

    /// The limit every bucket applies.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token from `subject`'s bucket, if there is one.
    pub fn check(&self, subject: K) -> Quota {
        let now = Instant::now();
        let bucket = self.buckets.get_with(subject, || {
            Arc::new(Mutex::new(Bucket {
                tokens: f64::from(self.limit.burst),
                updated: now,
            }))
        });
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        take_token(&mut bucket, self.limit, now)
    }

    /// Subjects with a bucket right now (approximate).
    pub fn tracked(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

/// Refills `bucket` for the time passed since its last use, then takes a
/// token when one is there.
fn take_token(bucket: &mut Bucket, limit: RateLimit, now: Instant) -> Quota {
    let burst = f64::from(limit.burst);
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
    bucket.updated = now;
    let retry_after_secs = if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        None
    } else {
        let wait = (1.0 - bucket.tokens) / limit.per_second;
        Some((wait.ceil() as u64).max(1))
    };
    Quota {
        limit: limit.burst,
        remaining: bucket.tokens.floor() as u32,
        reset_secs: ((burst - bucket.tokens) / limit.per_second).ceil() as u64,
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(tokens: f64, at: Instant) -> Bucket {
        Bucket {
            tokens,
            updated: at,
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused() {
        let limit = RateLimit::new(1.0, 3).unwrap();
        let start = Instant::now();
        let mut b = bucket(3.0, start);
        let quotas: Vec<Quota> = (0..4).map(|_| take_token(&mut b, limit, start)).collect();
        assert!(quotas[..3].iter().all(Quota::allowed));
        assert_eq!(quotas[2].remaining, 0);
        assert_eq!(quotas[3].retry_after_secs, Some(1));
        assert_eq!(quotas[3].reset_secs, 3);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let limit = RateLimit::new(2.0, 4).unwrap();
        let start = Instant::now();
        let mut b = bucket(0.0, start);
        assert!(!take_token(&mut b, limit, start).allowed());
        let later = start + Duration::from_millis(600);
        assert!(take_token(&mut b, limit, later).allowed());
        let much_later = later + Duration::from_secs(60);
        let quota = take_token(&mut b, limit, much_later);
        assert_eq!(quota.remaining, 3, "refill stops at the burst");
    }

    #[test]
    fn zero_rate_means_no_limit() {
        assert_eq!(RateLimit::new(0.0, 10), None);
        assert_eq!(RateLimit::new(5.0, 0).unwrap().burst, 1);
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Subject::client(a), Subject::client(b));
        assert_ne!(Subject::client(a), Subject::client(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            Subject::client(mapped),
            Subject::Client("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn limiter_keeps_a_bucket_per_subject() {
        let limiter = RateLimiter::new(RateLimit::new(0.001, 1).unwrap(), 100);
        assert!(limiter.check(Subject::Key(1)).allowed());
        assert!(!limiter.check(Subject::Key(1)).allowed());
        assert!(limiter.check(Subject::Key(2)).allowed());
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1).unwrap(), 50);
        for id in 0..1_000 {
            limiter.check(Subject::Key(id));
        }
        assert!(limiter.tracked() <= 50, "{}", limiter.tracked());
    }
}
