//! Test harness: a real `kadi` service on 127.0.0.1 (port 0) over a fresh
//! database, SQLite or PostgreSQL, and helpers to talk to it.

#![allow(dead_code)]

pub mod postgres;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kadi::server::{Options, Service};
use kadi::store::{Backend, Store};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A fresh, empty database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database { admin_url: String, name: String },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "kadi_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// The PostgreSQL server tests use. The test command starts a throwaway one
/// when none is configured; running the PostgreSQL half without it is an
/// error, never a silent skip.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
        .expect(
            "DATABASE_URL must name a PostgreSQL server for the PostgreSQL tests; \
             run ./scripts/test.sh, which starts a throwaway one",
        )
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let name = unique_name();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.sqlite"));
                TestDb {
                    url: format!("sqlite:{}", path.display()),
                    backend,
                    cleanup: Some(Cleanup::File(path)),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let store = Store::connect(&admin_url, 1)
                    .await
                    .expect("admin connection");
                store
                    .execute_admin(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                store.close().await;
                let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    backend,
                    cleanup: Some(Cleanup::Database { admin_url, name }),
                }
            }
        }
    }

    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, 8).await.expect("connect test db");
        store.migrate().await.expect("migrate test db");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.cleanup.take() {
            Some(Cleanup::File(path)) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Some(Cleanup::Database { admin_url, name }) => {
                // Drop runs outside async code: use a thread with its own runtime.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async {
                        if let Ok(store) = Store::connect(&admin_url, 1).await {
                            let _ = store
                                .execute_admin(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                            store.close().await;
                        }
                    });
                })
                .join();
            }
            None => {}
        }
    }
}

/// A running service and an HTTP client that never follows redirects.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub store: Store,
    pub state: kadi::http::AppState,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Options)) -> TestApp {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let mut options = Options::new("http://sho.rt.test".parse().expect("url"));
    adjust(&mut options);
    let service = Service::start(store.clone(), options);
    let state = service.state.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(service.run(
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    TestApp {
        base: format!("http://{address}"),
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        store,
        state,
        db,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None).await
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &'static [u8],
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, name: &str) -> i64 {
        let response = self
            .post(
                "/users",
                json!({"username": name, "email": format!("{name}@example.com")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Creates a link with extra fields merged into the body and returns it.
    pub async fn create_url(&self, user_id: i64, target: &str, extra: Value) -> Value {
        let mut body = json!({"user_id": user_id, "original_url": target});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self.post("/urls", body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        response.json().await.unwrap()
    }

    /// Events matching a query, waiting up to five seconds for at least
    /// `at_least` of them (clicks are stored by a background writer).
    pub async fn wait_for_events(&self, query: &str, at_least: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let events: Vec<Value> = self
                .get(&format!("/events?per_page=100&{query}"))
                .await
                .json()
                .await
                .unwrap();
            if events.len() >= at_least || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the service, draining its click queue.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server");
        }
    }
}

/// Asserts a JSON error response: the status, and the stable error shape.
pub async fn assert_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    assert!(body["error"].is_string(), "error message in {body}");
    assert!(body["code"].is_string(), "error code in {body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Declares each test twice: once on SQLite, once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = common::spawn(kadi::store::Backend::Sqlite).await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = common::spawn(kadi::store::Backend::Postgres).await;
                    $body
                }
            )*
        }
    };
}

/// A private `redis-server` on a free loopback port, for tests that stop and
/// start Redis; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH (./scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, as with a Redis stuck on a slow command. [`Self::stop`]
    /// ends a frozen server too.
    pub fn freeze(&self) {
        let child = self.child.as_ref().expect("redis-server is running");
        let sent = std::process::Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -STOP redis-server");
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `kadi` process of the real binary, on a free loopback port.
pub struct KadiProcess {
    pub base: String,
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Reads the process's standard error into `log`; ends with the process.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl KadiProcess {
    /// Starts `kadi` with these extra arguments and waits until it listens.
    pub fn start(args: &[&str]) -> KadiProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kadi"))
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            // Clients of the original contract: no API keys, no rate limits,
            // unless a test passes flags that say otherwise.
            .env("KADI_AUTH", "off")
            .env("KADI_API_RATE_LIMIT", "0")
            .env("KADI_REDIRECT_RATE_LIMIT", "0")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--log",
                "info",
            ])
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start kadi");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    if entry["message"] == "Kadi is listening" {
                        let _ = url_tx.send(entry["url"].as_str().unwrap_or("").to_owned());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let base = url_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kadi did not start: {:?}", log.lock().unwrap()));
        KadiProcess {
            base,
            child,
            log,
            reader: Some(reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a log line contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(text)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {text:?}: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit; returns the exit
    /// status and the whole log.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let signal = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signal.success());
        let started = std::time::Instant::now();
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                break exit;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "kadi did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The log reader ends with the process's stderr: every line is read
        // once it has finished, however busy the machine is.
        if let Some(reader) = self.reader.take() {
            tokio::task::spawn_blocking(move || reader.join())
                .await
                .expect("join the log reader")
                .expect("log reader");
        }
        let log = self.log.lock().unwrap().join("\n");
        (exit, log)
    }

    /// How many log lines contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        self.log_lines(text).len()
    }

    /// The log lines that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }
}

impl Drop for KadiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The original service's seed CSVs: `KADI_SEED_DATA` when set, else the
/// `shared/data` folder beside the repository (where CI puts it).
pub fn seed_data_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("KADI_SEED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
        });
    assert!(
        dir.join("users.csv").exists(),
        "seed data missing at {}; set KADI_SEED_DATA to the folder with users.csv",
        dir.display()
    );
    dir
}
