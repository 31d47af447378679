//! The servers a run measures: `kadi` itself (the real binary, as a child
//! process), a baseline that answers every code with a fixed 302 from an
//! in-memory map, and a bare server that looks each code up in PostgreSQL.
//! All listen on 127.0.0.1 only.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// A child process serving HTTP on `address`; killed when dropped.
pub struct Server {
    /// Where it listens.
    pub address: SocketAddr,
    /// Where its metrics are, for `kadi`.
    pub metrics: Option<SocketAddr>,
    child: Child,
    /// Collected log lines, for diagnosis.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Process id, for reading its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes, from `/proc`.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Sends SIGTERM and waits for the process to exit (bounded).
    pub fn terminate(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    let log = self.log.lock().expect("log lock");
                    let tail = &log[log.len().saturating_sub(20)..];
                    bail!("server exited with {status}: {tail:?}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("server did not exit within 30 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `kadi` binary next to this one (both are built into the same folder).
pub fn kadi_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("kadi");
    if !path.exists() {
        bail!(
            "{} not found: build it with cargo build -p kadi (same profile)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `kadi` with `args` and waits until it listens.
pub fn start_kadi(
    database_url: &str,
    redis_url: Option<&str>,
    args: &[&str],
) -> anyhow::Result<Server> {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut command = Command::new(kadi_binary()?);
    command
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log",
            "warn,kadi::server=info",
        ])
        .args([
            "--database-url",
            database_url,
            "--metrics-listen",
            &metrics.to_string(),
        ])
        // The suite measures capacity, not the abuse limits; its mixed
        // scenario uses the API without a key.
        .args([
            "--auth",
            "off",
            "--api-rate-limit",
            "0",
            "--redirect-rate-limit",
            "0",
        ])
        .args(args);
    if let Some(redis) = redis_url {
        command.args(["--redis-url", redis]);
    }
    let mut server = spawn_and_wait(command, |line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        (entry["message"] == "Kadi is listening")
            .then(|| {
                entry["url"]
                    .as_str()?
                    .trim_start_matches("http://")
                    .parse()
                    .ok()
            })
            .flatten()
    })?;
    server.metrics = Some(metrics);
    Ok(server)
}

/// Starts this binary as a baseline server (`serve-baseline` or `serve-pk`).
pub fn start_self(args: &[&str]) -> anyhow::Result<Server> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(args);
    spawn_and_wait(command, |line| {
        line.strip_prefix("listening on ")?.trim().parse().ok()
    })
}

fn spawn_and_wait(
    mut command: Command,
    listening: impl Fn(&str) -> Option<SocketAddr>,
) -> anyhow::Result<Server> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start server")?;
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let (tx, log) = (tx.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                log.lock().expect("log lock").push(line);
            }
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(address) = listening(&line) {
                return Ok(Server {
                    address,
                    metrics: None,
                    child,
                    log,
                });
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "server exited with {status}: {:?}",
                log.lock().expect("log lock")
            );
        }
    }
    bail!("server did not start within 30 s")
}

/// Reads `code,url` lines.
pub fn read_codes(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once(','))
        .map(|(code, url)| (code.to_owned(), url.to_owned()))
        .collect())
}

/// The baseline: the same HTTP stack as `kadi`, answering each known code
/// with a fixed 302 from an in-memory map, and nothing else.
pub async fn serve_baseline(codes: HashMap<String, String>) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/{code}", get(baseline_redirect))
        .with_state(Arc::new(codes));
    serve(router).await
}

async fn baseline_redirect(
    State(codes): State<Arc<HashMap<String, String>>>,
    UrlPath(code): UrlPath<String>,
) -> Response {
    match codes.get(&code) {
        Some(url) => (StatusCode::FOUND, [(header::LOCATION, url.clone())]).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A bare server that reads the link of each code from PostgreSQL, with the
/// unique index `kadi` uses, on every request.
pub async fn serve_lookup(database_url: &str) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(database_url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let router = Router::new()
        .route("/{code}", get(lookup_redirect))
        .with_state(pool);
    serve(router).await
}

async fn lookup_redirect(
    State(pool): State<sqlx::PgPool>,
    UrlPath(code): UrlPath<String>,
) -> Response {
    let row: Result<Option<(String,)>, _> = sqlx::query_as(
        "SELECT original_url FROM links WHERE short_code = $1 AND deleted_at IS NULL",
    )
    .bind(&code)
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some((url,))) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn serve(router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

/// Reads one sample of a metric (by name and label text) from `kadi`'s
/// metrics listener.
pub async fn metric(address: SocketAddr, name_and_labels: &str) -> anyhow::Result<f64> {
    let text = fetch_metrics(address).await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == name_and_labels).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0))
}

async fn fetch_metrics(address: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}
