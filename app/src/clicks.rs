//! The click pipeline: redirects push clicks into a bounded in-memory queue
//! without waiting; a background writer stores them in batches.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
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
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Starts the writer with a queue of `capacity` clicks.
pub fn start(store: Store, capacity: usize, metrics: Metrics) -> (ClickQueue, ClickWriter) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run_writer(store, receiver, stopped, metrics.clone()));
    (ClickQueue { sender, metrics }, ClickWriter { stop, task })
}

impl ClickWriter {
    /// Stores every click still queued, then stops. Call it once no redirect
    /// can push any more.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "Click writer task failed");
        }
    }
}

async fn run_writer(
    store: Store,
    mut receiver: mpsc::Receiver<ClickRow>,
    mut stopped: oneshot::Receiver<()>,
    metrics: Metrics,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            click = receiver.recv() => match click {
                Some(click) => batch.push(click),
                None => break,
            },
            _ = &mut stopped => break,
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(click) => batch.push(click),
                Err(_) => break,
            }
        }
        metrics.click_queue_depth.set(receiver.len() as i64);
        store_batch(&store, &mut batch, &metrics, None).await;
    }

    // Drain what is left once redirects have stopped.
    receiver.close();
    while let Some(click) = receiver.recv().await {
        batch.push(click);
        if batch.len() == MAX_BATCH {
            store_batch(&store, &mut batch, &metrics, Some(SHUTDOWN_RETRY_BUDGET)).await;
        }
    }
    store_batch(&store, &mut batch, &metrics, Some(SHUTDOWN_RETRY_BUDGET)).await;
    metrics.click_queue_depth.set(0);
}

/// Stores a batch, retrying with backoff until it succeeds or, when `budget`
/// is given, until the budget is spent (then the clicks count as dropped).
async fn store_batch(
    store: &Store,
    batch: &mut Vec<ClickRow>,
    metrics: &Metrics,
    budget: Option<Duration>,
) {
    if batch.is_empty() {
        return;
    }
    let started = tokio::time::Instant::now();
    let mut pause = RETRY_FIRST;
    loop {
        match store.insert_clicks(batch).await {
            Ok(()) => {
                metrics.clicks_written.inc_by(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(error) => {
                if budget.is_some_and(|b| started.elapsed() >= b) {
                    tracing::error!(
                        error = %crate::error_chain(&error),
                        clicks = batch.len(),
                        "Clicks lost: storing failed until shutdown"
                    );
                    metrics.clicks_dropped.inc_by(batch.len() as u64);
                    batch.clear();
                    return;
                }
                tracing::warn!(
                    error = %crate::error_chain(&error),
                    clicks = batch.len(),
                    retry_in_ms = pause.as_millis() as u64,
                    "Storing clicks failed"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
