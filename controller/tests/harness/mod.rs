//! Test harness of the controller: a fake Kubernetes API server, a fresh
//! PostgreSQL database, a real `kadi` service sharing the link service with
//! the reconciler, and a clock the test moves.

#![allow(dead_code)]

pub mod apiserver;
pub mod database;
pub mod outage;
pub mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kadi::cache::{CacheConfig, LinkCache};
use kadi::links::{LinkService, TargetPolicy};
use kadi::server::{Options, Service};
use kadi::store::Store;
use kadi_controller::clock::ManualClock;
use kadi_controller::error::Error;
use kadi_controller::metrics::Metrics;
use kadi_controller::reconcile::{self, Context, Settings};
use kadi_controller::resource::{ShortLink, ShortLinkSpec};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::Api;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use apiserver::FakeApiServer;
use database::TestDb;
use outage::FlakyProxy;

/// The namespace fixtures live in.
pub const NAMESPACE: &str = "marketing";

/// The public base of short URLs in tests.
pub const PUBLIC_URL: &str = "http://sho.rt.test";

/// Everything one test talks to.
pub struct World {
    pub apiserver: FakeApiServer,
    pub client: kube::Client,
    pub store: Store,
    pub links: LinkService,
    pub clock: Arc<ManualClock>,
    pub ctx: Arc<Context>,
    pub metrics: Metrics,
    pub proxy: FlakyProxy,
    kadi_base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    kadi: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    db: TestDb,
}

/// A ShortLink fixture: `spec` merged over a target URL.
pub fn shortlink(name: &str, spec: Value) -> ShortLink {
    let mut full = json!({"url": format!("https://example.com/{name}")});
    json_patch::merge(&mut full, &spec);
    let spec: ShortLinkSpec = serde_json::from_value(full).expect("fixture spec");
    ShortLink::new(name, spec)
}

impl World {
    pub async fn new() -> World {
        World::with_settings(|_| {}).await
    }

    pub async fn with_settings(adjust: impl FnOnce(&mut Settings)) -> World {
        World::build(adjust, None).await
    }

    /// The production topology: the reconciler and the kadi service have
    /// caches of their own and share only PostgreSQL and Redis, whose
    /// channel carries invalidations.
    pub async fn with_redis(redis_url: &str) -> World {
        World::build(|_| {}, Some(redis_url)).await
    }

    async fn build(adjust: impl FnOnce(&mut Settings), redis_url: Option<&str>) -> World {
        let db = TestDb::new().await;
        // The reconciler and the kadi service reach PostgreSQL through a
        // proxy that a test can take down.
        let url = url::Url::parse(&db.url).expect("db url");
        let target = format!(
            "{}:{}",
            url.host_str().expect("db host"),
            url.port().unwrap_or(5432)
        );
        let proxy = FlakyProxy::start(target).await;
        let mut proxied = url.clone();
        proxied.set_host(Some("127.0.0.1")).expect("host");
        proxied.set_port(Some(proxy.address.port())).expect("port");
        let store = db.store_at(proxied.as_str()).await;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let redis = redis_url.map(|url| redis::Client::open(url).expect("redis url"));
        let mut options = Options::new(PUBLIC_URL.parse().unwrap());
        options.redis = redis.clone();
        let service = Service::start(store.clone(), options);
        let links = match redis {
            None => service.state.links.clone(),
            Some(client) => LinkService::new(
                store.clone(),
                LinkCache::with_metrics(
                    CacheConfig::default(),
                    kadi::metrics::Metrics::new(),
                    Some(client),
                ),
                TargetPolicy::for_public_url(&PUBLIC_URL.parse().unwrap()),
            ),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let kadi = tokio::spawn(service.run(
            listener,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));

        let apiserver = FakeApiServer::start().await;
        let client = apiserver.client();
        let clock = Arc::new(ManualClock::new(Utc::now().trunc_subsecs(0)));
        let mut settings = Settings::new(PUBLIC_URL.parse().unwrap());
        settings.backoff_base = Duration::from_millis(100);
        settings.backoff_max = Duration::from_secs(2);
        adjust(&mut settings);
        let metrics = Metrics::new();
        let ctx = Arc::new(Context::new(
            client.clone(),
            links.clone(),
            clock.clone(),
            settings,
            metrics.clone(),
            Some("test-replica".into()),
        ));
        World {
            apiserver,
            client,
            store,
            links,
            clock,
            ctx,
            metrics,
            proxy,
            kadi_base: format!("http://{address}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            stop: Some(stop),
            kadi: Some(kadi),
            db,
        }
    }

    pub fn api(&self) -> Api<ShortLink> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The time the test clock shows.
    pub fn now(&self) -> DateTime<Utc> {
        use kadi_controller::clock::Clock;
        self.clock.now()
    }

    /// Creates a ShortLink, created "now" by the test clock.
    pub async fn create(&self, mut shortlink: ShortLink) -> ShortLink {
        let created = self.now();
        shortlink.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                created.to_rfc3339().parse().expect("timestamp"),
            ));
        self.api()
            .create(&PostParams::default(), &shortlink)
            .await
            .expect("create ShortLink")
    }

    pub async fn get(&self, name: &str) -> ShortLink {
        self.api().get(name).await.expect("get ShortLink")
    }

    /// Changes the spec by a merge patch (the generation moves on).
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch ShortLink");
    }

    pub async fn delete(&self, name: &str) {
        self.api()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete ShortLink");
    }

    /// One reconcile of the stored object, as the controller would run it.
    pub async fn reconcile(&self, name: &str) -> Result<Action, Error> {
        let object = self.get(name).await;
        reconcile::reconcile(Arc::new(object), self.ctx.clone()).await
    }

    /// Reconciles until the finalizer is in place and the link applied.
    pub async fn settle(&self, name: &str) -> Result<Action, Error> {
        let first = self.reconcile(name).await;
        if self
            .get(name)
            .await
            .metadata
            .finalizers
            .is_some_and(|f| !f.is_empty())
            && matches!(&first, Ok(action) if *action == Action::await_change())
        {
            return self.reconcile(name).await;
        }
        first
    }

    /// `GET /{code}` on the kadi service: status and `Location`.
    pub async fn follow(&self, code: &str) -> (StatusCode, Option<String>) {
        let response = self
            .http
            .get(format!("{}/{code}", self.kadi_base))
            .send()
            .await
            .expect("redirect request");
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    /// The Kubernetes Events recorded in the fixtures' namespace, as
    /// `(type, reason)`.
    pub fn kube_events(&self) -> Vec<(String, String)> {
        self.apiserver
            .objects("events", NAMESPACE)
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Status patches sent for a resource.
    pub fn status_writes(&self, name: &str) -> usize {
        self.apiserver.count(
            reqwest::Method::PATCH,
            &format!("/shortlinks/{name}/status"),
        )
    }

    /// Event types stored for a link, oldest first, clicks left out.
    pub async fn link_events(&self, url_id: i64) -> Vec<String> {
        let filter = kadi::store::EventFilter {
            url_id: Some(url_id),
            ..Default::default()
        };
        let page = kadi::store::Page {
            offset: 0,
            limit: 100,
        };
        self.store
            .events(&filter, page)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.event_type)
            .filter(|t| t != "click")
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.kadi.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}
