//! The click pipeline: redirects push clicks into a bounded in-memory queue
//! without waiting; a background writer stores them in batches.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{ClickRow, Pace, Store};

/// Most clicks stored in one transaction; bounds statement size and the time a
/// batch holds the database.
pub const MAX_BATCH: usize = 5_000;

/// How long the writer keeps collecting after the first click of a batch
/// before it stores what it has. Each batch costs a transaction, a commit and
/// one update per link clicked, whatever its size: without the window a busy
/// writer stored a batch as soon as the previous one finished, and under a
/// steady load of a hundred hot links half of all clicks cost a row update of
/// their own. Clicks reach the database this much later at most (plus the
/// write itself).
pub const BATCH_WINDOW: Duration = Duration::from_millis(25);

/// First and longest pause between attempts to store a batch after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long shutdown keeps retrying a failing batch before counting it lost.
const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Longest referrer or user agent kept with a click, in bytes.
const MAX_CLICK_HEADER_LEN: usize = 512;

/// A copy of a header value for a queued click, cut to the length a click
/// keeps. A value parsed by hyper shares the connection's whole read buffer:
/// queued clicks holding such values would keep kilobytes alive each while the
/// writer is behind. Values that are not visible ASCII are never stored, so
/// they are dropped here already.
pub fn detach(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    if value.to_str().is_err() {
        return None;
    }
    HeaderValue::from_bytes(&bytes[..bytes.len().min(MAX_CLICK_HEADER_LEN)]).ok()
}

/// A served redirect as the redirect path records it: the raw header values,
/// turned into an event by the writer, off the hot path.
#[derive(Debug, Clone)]
pub struct Click {
    /// The link that was clicked.
    pub url_id: i64,
    /// When the redirect was served.
    pub at: DateTime<Utc>,
    /// The `Referer` header.
    pub referrer: Option<HeaderValue>,
    /// The `User-Agent` header.
    pub user_agent: Option<HeaderValue>,
    /// The client's address; stored only anonymised.
    pub client: Option<IpAddr>,
    /// Whether the link's click count already includes this click.
    pub counted: bool,
}

impl Click {
    /// The event row: referrer and user agent cut to a bounded length, the
    /// client address anonymised.
    pub fn into_row(self) -> ClickRow {
        fn text(value: &Option<HeaderValue>) -> Option<&str> {
            value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(|s| truncate(s, MAX_CLICK_HEADER_LEN))
        }
        let referrer = text(&self.referrer);
        let user_agent = text(&self.user_agent);
        let mut details = String::with_capacity(
            64 + referrer.map_or(0, str::len) + user_agent.map_or(0, str::len),
        );
        details.push_str("{\"referrer\":");
        push_json_string(&mut details, referrer);
        details.push_str(",\"user_agent\":");
        push_json_string(&mut details, user_agent);
        details.push_str(",\"client\":");
        match self.client {
            Some(ip) => {
                details.push('"');
                push_anonymised(&mut details, ip);
                details.push('"');
            }
            None => details.push_str("null"),
        }
        details.push('}');
        ClickRow {
            url_id: self.url_id,
            timestamp: self.at,
            details,
            counted: self.counted,
        }
    }
}

/// Appends `value` as a JSON string, or `null`. The writer builds the details
/// of every click, so it writes this one JSON object by hand, not with serde.
fn push_json_string(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    let mut plain = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[plain..at]);
        plain = at + 1;
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&value[plain..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Drops the host part of an address: the last octet of IPv4, all but the
/// first 48 bits of IPv6, so that a click never stores who clicked.
pub fn anonymise(ip: IpAddr) -> String {
    let mut out = String::with_capacity(16);
    push_anonymised(&mut out, ip);
    out
}

/// Appends [`anonymise`]'s text for `ip`; IPv4, by far the most common, is
/// written without the formatting machinery.
fn push_anonymised(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_anonymised_v4(out, v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => push_anonymised_v4(out, v4),
            None => {
                use std::fmt::Write;
                let s = v6.segments();
                let network = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                let _ = write!(out, "{network}");
            }
        },
    }
}

fn push_anonymised_v4(out: &mut String, ip: std::net::Ipv4Addr) {
    let [a, b, c, _] = ip.octets();
    for octet in [a, b, c] {
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
        out.push('.');
    }
    out.push('0');
}

/// The sending side, held by the redirect path. Cheap to clone.
#[derive(Clone)]
pub struct ClickQueue {
    sender: mpsc::Sender<Click>,
    /// Wakes the writer out of its batch window once the queue is half full.
    pressure: Arc<Notify>,
    metrics: Metrics,
}

impl ClickQueue {
    /// Queues a click without waiting. A full queue drops it and counts it in
    /// `kadi_clicks_dropped_total`.
    pub fn push(&self, click: Click) {
        if self.sender.try_send(click).is_err() {
            self.metrics.clicks_dropped.inc();
        }
        if self.sender.capacity() < self.sender.max_capacity() / 2 {
            self.pressure.notify_one();
        }
    }

    /// Clicks waiting in the queue.
    pub fn depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

/// The background writer; [`ClickWriter::shutdown`] stores what is queued.
pub struct ClickWriter {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the writer with a queue of `capacity` clicks.
pub fn start(store: Store, capacity: usize, metrics: Metrics) -> (ClickQueue, ClickWriter) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let (stop, stopped) = watch::channel(false);
    let pressure = Arc::new(Notify::new());
    let task = tokio::spawn(run_writer(
        store,
        receiver,
        stopped,
        pressure.clone(),
        metrics.clone(),
    ));
    let queue = ClickQueue {
        sender,
        pressure,
        metrics,
    };
    (queue, ClickWriter { stop, task })
}

impl ClickWriter {
    /// Stores every click still queued, then stops. Call it once no redirect
    /// can push any more.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "Click writer task failed");
        }
    }
}

async fn run_writer(
    store: Store,
    mut receiver: mpsc::Receiver<Click>,
    stopped: watch::Receiver<bool>,
    pressure: Arc<Notify>,
    metrics: Metrics,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stop_signal = stopped.clone();
    loop {
        tokio::select! {
            click = receiver.recv() => match click {
                Some(click) => batch.push(click.into_row()),
                None => break,
            },
            _ = stop_signal.wait_for(|stop| *stop) => break,
        }
        if receiver.len() + 1 < MAX_BATCH {
            // Shutdown and a filling queue cut the window short; either way
            // the loop below takes what has arrived.
            tokio::select! {
                _ = tokio::time::sleep(BATCH_WINDOW) => {}
                _ = pressure.notified() => {}
                _ = stop_signal.wait_for(|stop| *stop) => {}
            }
        }
        let pace = if receiver.len() + 1 >= MAX_BATCH {
            Pace::CatchUp
        } else {
            Pace::Steady
        };
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(click) => batch.push(click.into_row()),
                Err(_) => break,
            }
            if pace == Pace::Steady {
                // Turning thousands of clicks into rows takes a while: give
                // the redirects sharing this worker their turn now and then.
                tokio::task::consume_budget().await;
            }
        }
        metrics.click_queue_depth.set(receiver.len() as i64);
        store_batch(&store, &mut batch, pace, &metrics, &stopped).await;
    }

    // Drain what is left once redirects have stopped.
    receiver.close();
    while let Some(click) = receiver.recv().await {
        batch.push(click.into_row());
        if batch.len() == MAX_BATCH {
            store_batch(&store, &mut batch, Pace::CatchUp, &metrics, &stopped).await;
        }
    }
    store_batch(&store, &mut batch, Pace::CatchUp, &metrics, &stopped).await;
    metrics.click_queue_depth.set(0);
}

/// Stores a batch, retrying with backoff until it succeeds. Once shutdown has
/// begun, retries stop after [`SHUTDOWN_RETRY_BUDGET`] and the clicks count as
/// dropped, so that a dead database cannot hold the process past its grace.
async fn store_batch(
    store: &Store,
    batch: &mut Vec<ClickRow>,
    pace: Pace,
    metrics: &Metrics,
    stopped: &watch::Receiver<bool>,
) {
    if batch.is_empty() {
        return;
    }
    let mut stop_signal = stopped.clone();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut pause = RETRY_FIRST;
    loop {
        match store.insert_clicks(batch, pace).await {
            Ok(()) => {
                metrics.clicks_written.inc_by(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(error) => {
                if *stopped.borrow() {
                    let now = tokio::time::Instant::now();
                    let deadline = *deadline.get_or_insert(now + SHUTDOWN_RETRY_BUDGET);
                    if now >= deadline {
                        tracing::error!(
                            error = %crate::error_chain(&error),
                            clicks = batch.len(),
                            "Clicks lost: storing failed until shutdown"
                        );
                        metrics.clicks_dropped.inc_by(batch.len() as u64);
                        batch.clear();
                        return;
                    }
                }
                tracing::warn!(
                    error = %crate::error_chain(&error),
                    clicks = batch.len(),
                    retry_in_ms = pause.as_millis() as u64,
                    "Storing clicks failed"
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop_signal.wait_for(|stop| *stop), if !*stopped.borrow() => {}
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click() -> Click {
        Click {
            url_id: 1,
            at: chrono::Utc::now(),
            referrer: None,
            user_agent: Some(HeaderValue::from_static("test")),
            client: None,
            counted: false,
        }
    }

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(anonymise("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(
            anonymise("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::"
        );
        assert_eq!(
            anonymise("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0"
        );
    }

    #[test]
    fn every_ipv4_network_is_written_as_the_formatter_would() {
        for a in (0..=255u8).step_by(3) {
            for b in [0u8, 7, 10, 99, 100, 199, 255] {
                let ip = std::net::Ipv4Addr::new(a, b, 255 - a, 42);
                assert_eq!(anonymise(IpAddr::V4(ip)), format!("{a}.{b}.{}.0", 255 - a));
            }
        }
    }

    #[test]
    fn details_are_json_whatever_the_headers_hold() {
        for text in [
            "plain",
            "",
            "quote \" and backslash \\",
            "tab\there",
            "ctl \u{1} \u{1f} del \u{7f}",
            "ünïcödé ✓",
        ] {
            let mut json = String::new();
            push_json_string(&mut json, Some(text));
            let parsed: String = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed, text);
        }
        let row = Click {
            referrer: None,
            user_agent: Some(HeaderValue::from_static("a \"b\" \\c\td")),
            client: Some("2001:db8:abcd:12::1".parse().unwrap()),
            ..click()
        }
        .into_row();
        let details: serde_json::Value = serde_json::from_str(&row.details).unwrap();
        assert_eq!(
            details,
            serde_json::json!({
                "referrer": null,
                "user_agent": "a \"b\" \\c\td",
                "client": "2001:db8:abcd::",
            })
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn detached_values_are_short_owned_copies() {
        let long = "y".repeat(2_000);
        let value = HeaderValue::from_str(&long).unwrap();
        let copy = detach(&value).unwrap();
        assert_eq!(copy.len(), MAX_CLICK_HEADER_LEN);
        assert_ne!(copy.as_bytes().as_ptr(), value.as_bytes().as_ptr());
        let short = HeaderValue::from_static("Mozilla/5.0");
        assert_eq!(detach(&short).unwrap(), short);
        let binary = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(detach(&binary), None);
    }

    #[test]
    fn rows_keep_bounded_headers_and_no_full_address() {
        let long = "x".repeat(2_000);
        let row = Click {
            referrer: Some(HeaderValue::from_str(&long).unwrap()),
            client: Some("192.0.2.44".parse().unwrap()),
            ..click()
        }
        .into_row();
        let details: serde_json::Value = serde_json::from_str(&row.details).unwrap();
        assert_eq!(
            details["referrer"].as_str().unwrap().len(),
            MAX_CLICK_HEADER_LEN
        );
        assert_eq!(details["client"], "192.0.2.0");
        assert_eq!(details["user_agent"], "test");
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_dead_database_within_its_budget() {
        let path = std::env::temp_dir().join(format!("kadi-clicks-{}.db", std::process::id()));
        let store = Store::connect(&format!("sqlite:{}", path.display()), 1)
            .await
            .unwrap();
        // A closed pool fails every statement, like an unreachable database.
        store.close().await;
        // Virtual time from here on: retries and budgets pass instantly.
        tokio::time::pause();
        let metrics = Metrics::new();
        let (queue, writer) = start(store, 10, metrics.clone());
        for _ in 0..3 {
            queue.push(click());
        }
        // Let the writer take the batch and start retrying before the stop.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let started = tokio::time::Instant::now();
        writer.shutdown().await;
        assert!(started.elapsed() <= SHUTDOWN_RETRY_BUDGET + RETRY_MAX);
        assert_eq!(metrics.clicks_dropped.get(), 3);
        assert_eq!(metrics.clicks_written.get(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (sender, _receiver) = mpsc::channel(2);
        let metrics = Metrics::new();
        let queue = ClickQueue {
            sender,
            pressure: Arc::new(Notify::new()),
            metrics: metrics.clone(),
        };
        for _ in 0..5 {
            queue.push(click());
        }
        assert_eq!(queue.depth(), 2);
        assert_eq!(metrics.clicks_dropped.get(), 3);
    }

    #[tokio::test]
    async fn a_half_full_queue_wakes_the_writer() {
        let (sender, _receiver) = mpsc::channel(4);
        let queue = ClickQueue {
            sender,
            pressure: Arc::new(Notify::new()),
            metrics: Metrics::new(),
        };
        queue.push(click());
        let woken = tokio::time::timeout(Duration::from_millis(50), queue.pressure.notified());
        assert!(woken.await.is_err(), "one click of four is no pressure");
        queue.push(click());
        queue.push(click());
        let woken = tokio::time::timeout(Duration::from_secs(5), queue.pressure.notified());
        assert!(
            woken.await.is_ok(),
            "three clicks of four must wake the writer"
        );
    }
}
