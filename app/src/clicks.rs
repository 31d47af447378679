//! The click pipeline: redirects push clicks into a bounded in-memory queue
//! without waiting; a background writer stores them in batches.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{ClickRow, Store};

/// Most clicks stored in one transaction; bounds statement size and the time a
/// batch holds the database.
const MAX_BATCH: usize = 1_000;

/// First and longest pause between attempts to store a batch after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long shutdown keeps retrying a failing batch before counting it lost.
const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// The sending side, held by the redirect path. Cheap to clone.
#[derive(Clone)]
pub struct ClickQueue {
    sender: mpsc::Sender<ClickRow>,
    metrics: Metrics,
}

impl ClickQueue {
    /// Queues a click without waiting. A full queue drops it and counts it in
    /// `kadi_clicks_dropped_total`.
    pub fn push(&self, click: ClickRow) {
        if self.sender.try_send(click).is_err() {
            self.metrics.clicks_dropped.inc();
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
    let task = tokio::spawn(run_writer(store, receiver, stopped, metrics.clone()));
    (ClickQueue { sender, metrics }, ClickWriter { stop, task })
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
    mut receiver: mpsc::Receiver<ClickRow>,
    stopped: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stop_signal = stopped.clone();
    loop {
        tokio::select! {
            click = receiver.recv() => match click {
                Some(click) => batch.push(click),
                None => break,
            },
            _ = stop_signal.wait_for(|stop| *stop) => break,
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(click) => batch.push(click),
                Err(_) => break,
            }
        }
        metrics.click_queue_depth.set(receiver.len() as i64);
        store_batch(&store, &mut batch, &metrics, &stopped).await;
    }

    // Drain what is left once redirects have stopped.
    receiver.close();
    while let Some(click) = receiver.recv().await {
        batch.push(click);
        if batch.len() == MAX_BATCH {
            store_batch(&store, &mut batch, &metrics, &stopped).await;
        }
    }
    store_batch(&store, &mut batch, &metrics, &stopped).await;
    metrics.click_queue_depth.set(0);
}

/// Stores a batch, retrying with backoff until it succeeds. Once shutdown has
/// begun, retries stop after [`SHUTDOWN_RETRY_BUDGET`] and the clicks count as
/// dropped, so that a dead database cannot hold the process past its grace.
async fn store_batch(
    store: &Store,
    batch: &mut Vec<ClickRow>,
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
        match store.insert_clicks(batch).await {
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

    fn click() -> ClickRow {
        ClickRow {
            url_id: 1,
            timestamp: chrono::Utc::now(),
            details: serde_json::json!({}),
            counted: false,
        }
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
            metrics: metrics.clone(),
        };
        for _ in 0..5 {
            queue.push(click());
        }
        assert_eq!(queue.depth(), 2);
        assert_eq!(metrics.clicks_dropped.get(), 3);
    }
}
