//! The load generator of the fault tests: a pool of tokio tasks sending a mix
//! of redirects and API calls to a `kadi` process, never following redirects,
//! each request bounded by a client timeout. Every outcome is tallied by
//! phase of the scenario and kind of request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Longest a single request may take before it counts as a `timeout` error:
/// well above the store's 5 s connection acquire timeout, so that a request
/// only times out when Kadi really hangs.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `GET /{code}` of a link that was requested before the fault.
    CachedRedirect,
    /// `GET /{code}` of a code no link has: always a database lookup.
    UnknownCode,
    /// `POST /users`.
    CreateUser,
    /// `POST /urls`.
    CreateLink,
    /// `GET /urls`.
    ListLinks,
}

impl Kind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CachedRedirect => "cached_redirect",
            Kind::UnknownCode => "unknown_code",
            Kind::CreateUser => "create_user",
            Kind::CreateLink => "create_link",
            Kind::ListLinks => "list_links",
        }
    }

    /// Whether this is a call of the resource API.
    pub fn is_api(self) -> bool {
        matches!(self, Kind::CreateUser | Kind::CreateLink | Kind::ListLinks)
    }
}

/// Outcomes of some requests.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Requests sent.
    pub requests: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a response, by kind of failure.
    pub errors: BTreeMap<&'static str, u64>,
    /// 503 responses without `Retry-After` or without the JSON error shape.
    pub malformed_unavailable: u64,
    /// The slowest answer, in milliseconds.
    pub max_latency_ms: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.malformed_unavailable += other.malformed_unavailable;
        self.max_latency_ms = self.max_latency_ms.max(other.max_latency_ms);
    }

    /// Responses with this status.
    pub fn status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Responses whose status is not in `allowed`.
    pub fn other_than(&self, allowed: &[u16]) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| !allowed.contains(status))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests without a response.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The counts as JSON for the report.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "statuses": self.statuses.iter()
                .map(|(s, n)| (s.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "errors": self.errors,
            "malformed_503": self.malformed_unavailable,
            "max_latency_ms": self.max_latency_ms,
        })
    }
}

/// Everything a load run saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Counts by phase, then by kind.
    pub phases: BTreeMap<&'static str, BTreeMap<Kind, Counts>>,
    /// Users whose creation was acknowledged with 201.
    pub created_users: Vec<i64>,
    /// Links whose creation was acknowledged with 201.
    pub created_links: Vec<i64>,
    /// The first message of each `other` error, to explain it.
    pub other_errors: Vec<String>,
}

impl Tally {
    /// Adds another run's outcomes to this one.
    pub fn merge(&mut self, other: Tally) {
        for (phase, by_kind) in other.phases {
            for (kind, counts) in by_kind {
                self.phases
                    .entry(phase)
                    .or_default()
                    .entry(kind)
                    .or_default()
                    .add(&counts);
            }
        }
        self.created_users.extend(other.created_users);
        self.created_links.extend(other.created_links);
        self.other_errors.extend(other.other_errors);
    }

    /// Counts of one kind over every phase.
    pub fn total(&self, kind: Kind) -> Counts {
        let mut total = Counts::default();
        for by_kind in self.phases.values() {
            if let Some(counts) = by_kind.get(&kind) {
                total.add(counts);
            }
        }
        total
    }

    /// Counts of one kind in one phase.
    pub fn in_phase(&self, phase: &str, kind: Kind) -> Counts {
        self.phases
            .get(phase)
            .and_then(|by_kind| by_kind.get(&kind))
            .cloned()
            .unwrap_or_default()
    }

    /// API counts (every API kind) in one phase.
    pub fn api_in_phase(&self, phase: &str) -> Counts {
        let mut total = Counts::default();
        if let Some(by_kind) = self.phases.get(phase) {
            for (_, counts) in by_kind.iter().filter(|(kind, _)| kind.is_api()) {
                total.add(counts);
            }
        }
        total
    }

    /// Redirects served: every 3xx answer, each of which queued a click.
    pub fn redirects_served(&self) -> u64 {
        let counts = self.total(Kind::CachedRedirect);
        counts
            .statuses
            .iter()
            .filter(|(status, _)| (300..400).contains(*status))
            .map(|(_, n)| n)
            .sum()
    }

    /// The tally as JSON for the report.
    pub fn to_json(&self) -> Value {
        let phases: serde_json::Map<String, Value> = self
            .phases
            .iter()
            .map(|(phase, by_kind)| {
                let kinds: serde_json::Map<String, Value> = by_kind
                    .iter()
                    .map(|(kind, counts)| (kind.name().to_owned(), counts.to_json()))
                    .collect();
                ((*phase).to_owned(), Value::Object(kinds))
            })
            .collect();
        json!({
            "phases": phases,
            "created_users": self.created_users.len(),
            "created_links": self.created_links.len(),
            "other_errors": self.other_errors,
        })
    }
}

/// Where requests go and what they use.
#[derive(Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT` of the `kadi` process.
    pub base: String,
    /// Codes of links that are in the cache.
    pub cached_codes: Arc<Vec<String>>,
    /// Owner of the links the load creates.
    pub user_id: i64,
}

/// A client that never follows redirects, with the request timeout.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// Workers of one kind: how many, and the pause each takes between requests.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    /// What they send.
    pub kind: Kind,
    /// How many tasks send it.
    pub count: usize,
    /// Pause between two requests of one task.
    pub pause: Duration,
}

/// A load run in progress.
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    target: Target,
    client: Client,
    phases: Vec<&'static str>,
    phase: AtomicUsize,
    sequence: AtomicU64,
    tally: Mutex<Tally>,
}

impl Load {
    /// Starts the workers in the first of `phases`.
    pub fn start(target: &Target, workers: &[Workers], phases: &[&'static str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            target: target.clone(),
            client: client(),
            phases: phases.to_vec(),
            phase: AtomicUsize::new(0),
            sequence: AtomicU64::new(0),
            tally: Mutex::new(Tally::default()),
        });
        let mut tasks = Vec::new();
        for group in workers {
            for _ in 0..group.count {
                let (stop, shared, group) = (stop.clone(), shared.clone(), *group);
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        shared.send(group.kind).await;
                        tokio::time::sleep(group.pause).await;
                    }
                }));
            }
        }
        Load {
            stop,
            shared,
            tasks,
        }
    }

    /// Counts requests sent from now on under `phase`.
    pub fn enter(&self, phase: &'static str) {
        let index = self
            .shared
            .phases
            .iter()
            .position(|p| *p == phase)
            .unwrap_or_else(|| panic!("unknown phase {phase}"));
        self.shared.phase.store(index, Ordering::Relaxed);
    }

    /// Stops the workers, lets their last requests finish, and returns the
    /// tally.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load worker");
        }
        std::mem::take(&mut *self.shared.tally.lock().unwrap())
    }
}

/// Sends `count` requests of each kind all at once, and tallies them under
/// `phase` once every one is answered.
pub async fn burst(target: &Target, mix: &[(Kind, usize)], phase: &'static str) -> Tally {
    let shared = Arc::new(Shared {
        target: target.clone(),
        client: client(),
        phases: vec![phase],
        phase: AtomicUsize::new(0),
        sequence: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
    });
    let start = Arc::new(tokio::sync::Barrier::new(
        mix.iter().map(|(_, n)| n).sum::<usize>(),
    ));
    let mut tasks = Vec::new();
    for (kind, count) in mix {
        for _ in 0..*count {
            let (shared, start, kind) = (shared.clone(), start.clone(), *kind);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                shared.send(kind).await;
            }));
        }
    }
    for task in tasks {
        task.await.expect("burst request");
    }
    let tally = std::mem::take(&mut *shared.tally.lock().unwrap());
    tally
}

impl Shared {
    async fn send(&self, kind: Kind) {
        let phase = self.phases[self.phase.load(Ordering::Relaxed)];
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let base = &self.target.base;
        let unique = format!("{n}x{:08x}", rand::random::<u32>());
        let request = match kind {
            Kind::CachedRedirect => {
                let codes = &self.target.cached_codes;
                let code = &codes[n as usize % codes.len()];
                self.client.get(format!("{base}/{code}"))
            }
            Kind::UnknownCode => self.client.get(format!("{base}/nx{unique}")),
            Kind::CreateUser => self.client.post(format!("{base}/users")).json(&json!({
                "username": format!("load{unique}"),
                "email": format!("load{unique}@example.com"),
            })),
            Kind::CreateLink => self.client.post(format!("{base}/urls")).json(&json!({
                "user_id": self.target.user_id,
                "original_url": format!("https://example.com/load/{unique}"),
            })),
            Kind::ListLinks => self.client.get(format!("{base}/urls?per_page=5")),
        };
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => Ok(read_response(kind, response).await),
            Err(error) => Err(classify(&error)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;

        let mut tally = self.tally.lock().unwrap();
        let counts = tally
            .phases
            .entry(phase)
            .or_default()
            .entry(kind)
            .or_default();
        counts.requests += 1;
        counts.max_latency_ms = counts.max_latency_ms.max(latency_ms);
        match outcome {
            Ok(answer) => {
                *counts.statuses.entry(answer.status.as_u16()).or_default() += 1;
                if answer.malformed_unavailable {
                    counts.malformed_unavailable += 1;
                }
                if let Some(id) = answer.created {
                    match kind {
                        Kind::CreateUser => tally.created_users.push(id),
                        _ => tally.created_links.push(id),
                    }
                }
            }
            Err((kind, message)) => {
                *counts.errors.entry(kind).or_default() += 1;
                if kind == "other" && tally.other_errors.len() < 5 {
                    tally.other_errors.push(message);
                }
            }
        }
    }
}

struct Answer {
    status: StatusCode,
    malformed_unavailable: bool,
    created: Option<i64>,
}

async fn read_response(kind: Kind, response: reqwest::Response) -> Answer {
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    // Reading the whole body keeps the connection reusable.
    let body: Option<Value> = response
        .bytes()
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let malformed_unavailable = status == StatusCode::SERVICE_UNAVAILABLE
        && !(retry_after && body.as_ref().is_some_and(is_error_shape));
    let created = (status == StatusCode::CREATED && kind.is_api())
        .then(|| body.as_ref().and_then(|b| b["id"].as_i64()))
        .flatten();
    Answer {
        status,
        malformed_unavailable,
        created,
    }
}

/// Whether a body has Kadi's JSON error shape.
pub fn is_error_shape(body: &Value) -> bool {
    body["error"].is_string() && body["code"].is_string() && body["status"].is_u64()
}

/// Sorts a failed request: `connect` (refused or unreachable), `timeout`,
/// `reset` (the connection ended before the response), or `other`.
fn classify(error: &reqwest::Error) -> (&'static str, String) {
    let message = kadi::error_chain(error);
    if error.is_timeout() {
        return ("timeout", message);
    }
    if error.is_connect() {
        return ("connect", message);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return ("reset", message);
            }
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return ("reset", message);
            }
        }
        source = cause.source();
    }
    ("other", message)
}
