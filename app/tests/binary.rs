//! The `kadi` binary itself: it starts on the embedded default, says where it
//! listens, drains its click queue on SIGTERM, and imports CSV exports.

mod common;

use std::process::Command;

use kadi::store::{Backend, EventFilter, Page};
use serde_json::{json, Value};

fn kadi() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kadi"));
    command.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_queued_click() {
    let db = common::TestDb::new(Backend::Sqlite).await;
    let kadi = common::KadiProcess::start(&["--database-url", &db.url]);
    let base = kadi.base.clone();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let user: Value = client
        .post(format!("{base}/users"))
        .json(&json!({"username": "ann", "email": "ann@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url: Value = client
        .post(format!("{base}/urls"))
        .json(&json!({"user_id": user["id"], "original_url": "https://example.com/"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("{base}/{}", url["short_code"].as_str().unwrap());
    let mut served = 0;
    for _ in 0..300 {
        if client.get(&path).send().await.unwrap().status() == reqwest::StatusCode::FOUND {
            served += 1;
        }
    }
    assert_eq!(served, 300);

    let (exit, log) = kadi.terminate().await;
    assert!(exit.success(), "kadi exited with {exit}:\n{log}");
    assert!(log.contains("Click queue drained"), "{log}");

    let store = db.store().await;
    let filter = EventFilter {
        event_type: Some("click".into()),
        ..EventFilter::default()
    };
    let clicks = store
        .events(
            &filter,
            Page {
                offset: 0,
                limit: 1_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        clicks.len(),
        served,
        "every served redirect has its click stored"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_command_reports_and_is_safe_to_run_twice() {
    let db = common::TestDb::new(Backend::Sqlite).await;
    let data = common::seed_data_dir();
    let run = || {
        kadi()
            .args(["--database-url", &db.url, "--log-format", "text", "import"])
            .arg("--users")
            .arg(data.join("users.csv"))
            .arg("--urls")
            .arg(data.join("urls.csv"))
            .arg("--events")
            .arg(data.join("events.csv"))
            .output()
            .expect("run kadi import")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = String::from_utf8(first.stdout).unwrap();
    assert!(
        report.contains("users: 400 read, 399 imported, 0 already present, 1 skipped"),
        "{report}"
    );
    assert!(report.contains("line 274"), "{report}");
    assert!(
        report.contains("urls: 2000 read, 2000 imported"),
        "{report}"
    );
    assert!(
        report.contains("events: 3422 read, 3422 imported"),
        "{report}"
    );

    let second = run();
    assert!(second.status.success());
    let report = String::from_utf8(second.stdout).unwrap();
    assert!(
        report.contains("urls: 2000 read, 0 imported, 2000 already present"),
        "{report}"
    );

    let missing = kadi()
        .args([
            "--database-url",
            &db.url,
            "import",
            "--users",
            "/nonexistent.csv",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nonexistent.csv"));
}

#[test]
fn help_explains_every_option() {
    let output = kadi().arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--database-url",
        "--redis-url",
        "--public-url",
        "--worker-threads",
        "[env: KADI_WORKER_THREADS=",
        "[env: KADI_LISTEN=",
        "migrate",
        "import",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// Threads of the runtime named as tokio names its workers.
#[cfg(target_os = "linux")]
fn worker_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks of kadi")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_follow_the_option() {
    let output = kadi()
        .args(["--worker-threads", "0", "migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("--worker-threads") && error.contains("1..=1024"),
        "{error}"
    );

    let db = common::TestDb::new(Backend::Sqlite).await;
    let kadi = common::KadiProcess::start(&["--database-url", &db.url, "--worker-threads", "3"]);
    assert_eq!(worker_threads_of(kadi.pid()), 3);
    let (status, log) = kadi.terminate().await;
    assert!(status.success(), "{log}");
}

/// A SIGTERM that arrives as soon as start-up is announced is a graceful
/// shutdown, not a kill by the default signal action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_start_up_shuts_down_gracefully() {
    let db = common::TestDb::new(Backend::Sqlite).await;
    for _ in 0..5 {
        let kadi = common::KadiProcess::start(&["--database-url", &db.url]);
        let (exit, log) = kadi.terminate().await;
        assert!(exit.success(), "kadi exited with {exit}:\n{log}");
        assert!(log.contains("Click queue drained"), "{log}");
    }
}
