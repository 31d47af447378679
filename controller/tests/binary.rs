//! The real `kadi-controller` binary, two replicas of it, against the fake
//! API server (through a kubeconfig) and a fresh PostgreSQL database: one
//! leads and reconciles, the other waits, and takes over when the leader
//! stops. Logs are JSON lines.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::apiserver::FakeApiServer;
use harness::database::TestDb;
use harness::{shortlink, NAMESPACE};
use kadi_controller::resource::{Phase, ShortLink};
use kube::api::PostParams;
use kube::Api;

struct Replica {
    child: Child,
    metrics: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Replica {
    fn start(name: &str, kubeconfig: &std::path::Path, database_url: &str) -> Replica {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kadi-controller"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("DATABASE_URL", database_url)
            .env("KADI_PUBLIC_URL", "http://sho.rt.test")
            .env(
                "KADI_CONTROLLER_METRICS_LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .env("KADI_CONTROLLER_LEASE_DURATION_SECS", "3")
            .env("POD_NAMESPACE", "kadi-system")
            .env("POD_NAME", name)
            .env("KADI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kadi-controller");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Replica {
            child,
            metrics: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("{}{path}", self.metrics)).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    async fn leads(&self) -> bool {
        self.get("/metrics")
            .await
            .is_some_and(|(_, text)| text.lines().any(|l| l == "kadi_controller_leader 1"))
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kadi-controller did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_that_reconciles_and_hand_over_on_sigterm() {
    let apiserver = FakeApiServer::start().await;
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!(
        "kadi_ctl_kubeconfig_{}_{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"http://{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: default}}}}]\n",
            apiserver.address
        ),
    )
    .unwrap();

    let mut first = Replica::start("replica-1", &kubeconfig, &db.url);
    eventually("replica-1 leads", || first.leads()).await;
    let mut second = Replica::start("replica-2", &kubeconfig, &db.url);
    eventually("replica-2 is healthy", || async {
        second.get("/healthz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    assert_eq!(second.get("/readyz").await.map(|r| r.0), Some(200));

    // The leader reconciles a new ShortLink.
    let api: Api<ShortLink> = Api::namespaced(apiserver.client(), NAMESPACE);
    api.create(
        &PostParams::default(),
        &shortlink("launch-notes", serde_json::json!({})),
    )
    .await
    .unwrap();
    eventually("the ShortLink is Active", || async {
        let object = api.get("launch-notes").await.unwrap();
        object.status.and_then(|s| s.phase) == Some(Phase::Active)
    })
    .await;
    let lease = apiserver
        .object("leases", "kadi-system", "kadi-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-1");
    assert!(!second.leads().await, "two leaders at once");

    // SIGTERM: the leader releases the Lease and the standby takes over.
    assert!(first.terminate().success());
    eventually("replica-2 leads", || second.leads()).await;
    let lease = apiserver
        .object("leases", "kadi-system", "kadi-controller")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-2");
    assert!(second.terminate().success());

    let log = first.log.lock().unwrap().clone();
    assert!(!log.is_empty());
    for line in &log {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
