//! A small stateful Kubernetes API server on 127.0.0.1:0, enough for the
//! controller and its leader election: LIST and WATCH, GET, POST, PUT with
//! resourceVersion checks, PATCH (JSON, merge and apply patches, `/status`
//! included), DELETE that waits for finalizers, and a log of every request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
struct Change {
    resource_version: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// (group/version, plural, namespace, name)
type Key = (String, String, String, String);

#[derive(Default)]
struct Inner {
    resource_version: u64,
    next_uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    requests: Vec<Recorded>,
}

struct Shared {
    inner: Mutex<Inner>,
    unavailable: std::sync::atomic::AtomicBool,
    changes: broadcast::Sender<Change>,
}

/// The running server.
pub struct FakeApiServer {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The parsed path of a request.
struct Target {
    group_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match *parts.first()? {
        "apis" if parts.len() >= 3 => (format!("{}/{}", parts[1], parts[2]), &parts[3..]),
        "api" if parts.len() >= 2 => (parts[1].to_owned(), &parts[2..]),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some(namespace.to_string()), rest)
        }
        rest => (None, rest),
    };
    Some(Target {
        group_version,
        plural: rest.first()?.to_string(),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "shortlinks" => "ShortLink",
        "leases" => "Lease",
        "events" => "Event",
        _ => "Object",
    }
}

fn status_response(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

impl FakeApiServer {
    pub async fn start() -> FakeApiServer {
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            unavailable: Default::default(),
            changes,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeApiServer {
            address,
            shared,
            task,
        }
    }

    /// A client talking to this server, with `default` as its namespace.
    pub fn client(&self) -> kube::Client {
        let url: axum::http::Uri = format!("http://{}", self.address).parse().expect("uri");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Answers every request with 500 while `down`, like an API server in
    /// trouble (503 would make the client retry on its own).
    pub fn set_unavailable(&self, down: bool) {
        self.shared
            .unavailable
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Requests with this method whose path ends with `suffix`.
    pub fn count(&self, method: Method, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    /// A stored object.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .find(|((_, p, ns, n), _)| p == plural && ns == namespace && n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every stored object of a kind in a namespace.
    pub fn objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|((_, p, ns, _), _)| p == plural && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        }
    };
    shared.inner.lock().unwrap().requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    if shared.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
        return status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the API server is down".into(),
        );
    }
    let Some(target) = parse_path(&path) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route {path}"),
        );
    };
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (&method, &target.name) {
        (&Method::GET, None) if watching => watch(&shared, &target, &params),
        (&Method::GET, None) => list(&shared, &target),
        (&Method::GET, Some(name)) => get(&shared, &target, name),
        (&Method::POST, None) => create(&shared, &target, body),
        (&Method::PUT, Some(name)) => replace(&shared, &target, name, body),
        (&Method::PATCH, Some(name)) => patch(&shared, &target, name, &content_type, body),
        (&Method::DELETE, Some(name)) => delete(&shared, &target, name),
        _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", path),
    }
}

fn key(target: &Target, name: &str) -> Key {
    (
        target.group_version.clone(),
        target.plural.clone(),
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    )
}

fn not_found(target: &Target, name: &str) -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {name:?} not found", target.plural),
    )
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Inner {
    fn commit(
        &mut self,
        shared_tx: &broadcast::Sender<Change>,
        key: &Key,
        kind: &'static str,
        mut object: Value,
    ) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        if kind == "DELETED" {
            self.objects.remove(key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let change = Change {
            resource_version: self.resource_version,
            collection: format!("{}/{}", key.0, key.1),
            namespace: key.2.clone(),
            kind,
            object: object.clone(),
        };
        self.history.push(change.clone());
        let _ = shared_tx.send(change);
        object
    }
}

fn list(shared: &Shared, target: &Target) -> Response {
    let inner = shared.inner.lock().unwrap();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((gv, p, ns, _), _)| {
            *gv == target.group_version
                && *p == target.plural
                && target.namespace.as_ref().is_none_or(|want| want == ns)
        })
        .map(|(_, v)| v.clone())
        .collect();
    axum::Json(json!({
        "apiVersion": target.group_version,
        "kind": format!("{}List", kind_of(&target.plural)),
        "metadata": {"resourceVersion": inner.resource_version.to_string()},
        "items": items,
    }))
    .into_response()
}

fn watch(shared: &Shared, target: &Target, params: &BTreeMap<String, String>) -> Response {
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let collection = format!("{}/{}", target.group_version, target.plural);
    let namespace = target.namespace.clone();
    let matches = move |change: &Change| {
        change.collection == collection
            && namespace.as_ref().is_none_or(|ns| *ns == change.namespace)
            && change.resource_version > since
    };
    // Subscribe under the lock, so that no change falls between the replayed
    // history and the live feed.
    let (backlog, live) = {
        let inner = shared.inner.lock().unwrap();
        let live = shared.changes.subscribe();
        let backlog: Vec<Change> = inner
            .history
            .iter()
            .filter(|c| matches(c))
            .cloned()
            .collect();
        (backlog, live)
    };
    let live = BroadcastStream::new(live).filter_map(move |change| {
        let keep = change.ok().filter(|c| matches(c));
        async move { keep }
    });
    let lines = futures::stream::iter(backlog).chain(live).map(|change| {
        let line = json!({"type": change.kind, "object": change.object});
        Ok::<_, Infallible>(format!("{line}\n"))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(lines))
        .expect("watch response")
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response {
    let inner = shared.inner.lock().unwrap();
    match inner.objects.get(&key(target, name)) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => not_found(target, name),
    }
}

fn create(shared: &Shared, target: &Target, mut object: Value) -> Response {
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name is required".into(),
        );
    };
    let key = key(target, &name);
    let mut inner = shared.inner.lock().unwrap();
    if inner.objects.contains_key(&key) {
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{name:?} already exists"),
        );
    }
    inner.next_uid += 1;
    let metadata = &mut object["metadata"];
    metadata["uid"] = json!(format!("uid-{}", inner.next_uid));
    metadata["generation"] = json!(1);
    if let Some(namespace) = &target.namespace {
        metadata["namespace"] = json!(namespace);
    }
    if metadata.get("creationTimestamp").is_none_or(Value::is_null) {
        metadata["creationTimestamp"] = json!(now_text());
    }
    let created = inner.commit(&shared.changes, &key, "ADDED", object);
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

fn replace(shared: &Shared, target: &Target, name: &str, mut object: Value) -> Response {
    let key = key(target, name);
    let mut inner = shared.inner.lock().unwrap();
    let Some(stored) = inner.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    if object["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
        return status_response(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{name:?} was modified; read it again"),
        );
    }
    for field in ["uid", "creationTimestamp", "namespace", "deletionTimestamp"] {
        object["metadata"][field] = stored["metadata"][field].clone();
    }
    let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
    let bump = i64::from(object.get("spec") != stored.get("spec"));
    object["metadata"]["generation"] = json!(generation + bump);
    let replaced = inner.commit(&shared.changes, &key, "MODIFIED", object);
    axum::Json(replaced).into_response()
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    content_type: &str,
    body: Value,
) -> Response {
    let key = key(target, name);
    let mut inner = shared.inner.lock().unwrap();
    let Some(stored) = inner.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    let mut patched = stored.clone();
    if content_type.starts_with("application/json-patch+json") {
        // A missing list reads as null to the API server's `test` operation.
        if patched["metadata"].get("finalizers").is_none() {
            patched["metadata"]["finalizers"] = Value::Null;
        }
        let operations: json_patch::Patch = match serde_json::from_value(body) {
            Ok(p) => p,
            Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        };
        if let Err(e) = json_patch::patch(&mut patched, &operations) {
            return status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
        }
        if patched["metadata"]["finalizers"].is_null() {
            patched["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("finalizers");
        }
    } else if content_type.starts_with("application/apply-patch") && target.subresource.is_some() {
        // This controller is the only manager of status: applying its
        // status replaces the whole stanza.
        patched["status"] = body["status"].clone();
    } else {
        json_patch::merge(&mut patched, &body);
    }
    let mut updated = stored.clone();
    if target.subresource.as_deref() == Some("status") {
        updated["status"] = patched["status"].clone();
    } else {
        let status = stored.get("status").cloned();
        updated = patched;
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "generation",
        ] {
            updated["metadata"][field] = stored["metadata"][field].clone();
        }
        match status {
            Some(status) => updated["status"] = status,
            None => {
                updated.as_object_mut().unwrap().remove("status");
            }
        }
        if updated.get("spec") != stored.get("spec") {
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
            updated["metadata"]["generation"] = json!(generation + 1);
        }
    }
    let deleting = !updated["metadata"]["deletionTimestamp"].is_null();
    let finalizers_left = updated["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let kind = if deleting && !finalizers_left {
        "DELETED"
    } else {
        "MODIFIED"
    };
    let committed = inner.commit(&shared.changes, &key, kind, updated);
    axum::Json(committed).into_response()
}

fn delete(shared: &Shared, target: &Target, name: &str) -> Response {
    let key = key(target, name);
    let mut inner = shared.inner.lock().unwrap();
    let Some(mut stored) = inner.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    let finalizers_left = stored["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !finalizers_left {
        let deleted = inner.commit(&shared.changes, &key, "DELETED", stored);
        return axum::Json(deleted).into_response();
    }
    if stored["metadata"]["deletionTimestamp"].is_null() {
        stored["metadata"]["deletionTimestamp"] = json!(now_text());
        let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
        stored["metadata"]["generation"] = json!(generation + 1);
        stored = inner.commit(&shared.changes, &key, "MODIFIED", stored);
    }
    (StatusCode::OK, axum::Json(stored)).into_response()
}
