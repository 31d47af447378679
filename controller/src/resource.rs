//! The `ShortLink` custom resource: its spec, its status, and the CRD that is
//! generated from them, validation and printer columns included.

use chrono::{DateTime, Utc};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the resource.
pub const GROUP: &str = "kadi.dev";

/// The finalizer that holds a deleted ShortLink until its link is released.
pub const FINALIZER: &str = "kadi.dev/link";

/// Declares a managed link: a short code that redirects to a target URL.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kadi.dev",
    version = "v1alpha1",
    kind = "ShortLink",
    plural = "shortlinks",
    singular = "shortlink",
    shortname = "sl",
    category = "kadi",
    namespaced,
    status = "ShortLinkStatus",
    doc = "A managed Kadi link: a short code bound to a target URL",
    printcolumn(name = "Code", type_ = "string", json_path = ".status.shortCode"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Clicks", type_ = "integer", json_path = ".status.clicks"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Short URL",
        type_ = "string",
        json_path = ".status.shortUrl",
        priority = 1
    ),
    validation = Rule::new(
        "has(self.spec.shortCode) || self.metadata.name.matches('^[A-Za-z0-9_-]{3,64}$')"
    )
    .message("metadata.name is not a valid short code; set spec.shortCode"),
    validation = Rule::new(
        "(has(self.spec.shortCode) ? self.spec.shortCode : self.metadata.name) == \
         (has(oldSelf.spec.shortCode) ? oldSelf.spec.shortCode : oldSelf.metadata.name)"
    )
    .message("the short code may not change once set")
)]
#[x_kube(
    validation = Rule::new("!(has(self.ttl) && has(self.expiresAt))")
        .message("set ttl or expiresAt, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct ShortLinkSpec {
    /// Target URL: an absolute http or https URL, where the short code
    /// redirects.
    #[schemars(length(min = 8, max = 2048), extend("format" = "uri"))]
    #[x_kube(
        validation = Rule::new("self.matches('^https?://[^/?#@ ]+([/?#][^ ]*)?$')")
            .message("url must be an absolute http or https URL")
    )]
    pub url: String,

    /// Short code, the path segment after the host; defaults to
    /// `metadata.name`. It may not change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub short_code: Option<String>,

    /// Time to live, counted from the resource's creation: whole numbers
    /// with units `d`, `h`, `m` and `s`, such as `72h` or `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+[dhms])+$"))]
    pub ttl: Option<String>,

    /// Absolute expiry (RFC 3339). Not together with `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,

    /// HTTP status of the redirect: 301, 302, 307 or 308.
    #[serde(default = "default_redirect_status")]
    #[schemars(extend("enum" = [301, 302, 307, 308]))]
    pub redirect_status: i32,

    /// The link serves this many redirects, then answers 410 Gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_visits: Option<i64>,

    /// Whether the link serves redirects; an inactive link answers 404.
    #[serde(default = "default_active")]
    pub active: bool,

    /// What happens to the link when the resource is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

fn default_redirect_status() -> i32 {
    302
}

fn default_active() -> bool {
    true
}

/// What happens to the link when its ShortLink is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReclaimPolicy {
    /// Keep the link, inactive, with its analytics (the default).
    #[default]
    Deactivate,
    /// Delete the link and free its short code.
    Delete,
}

impl From<ReclaimPolicy> for kadi::managed::ReclaimPolicy {
    fn from(policy: ReclaimPolicy) -> Self {
        match policy {
            ReclaimPolicy::Deactivate => kadi::managed::ReclaimPolicy::Deactivate,
            ReclaimPolicy::Delete => kadi::managed::ReclaimPolicy::Delete,
        }
    }
}

/// What the controller observed and did, as `kubectl` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortLinkStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A one-word summary: `Active`, `Inactive`, `Expired`, `Conflict` or
    /// `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Conditions of the resource; `Ready` tells whether the link matches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The short code the resource declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_code: Option<String>,

    /// The public short URL, such as `https://sho.rt/launch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_url: Option<String>,

    /// When the link expires, as an absolute time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,

    /// Clicks served so far, refreshed at each resync (not on each click).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicks: Option<i64>,
}

/// A readable summary of where the link stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// The link serves redirects.
    Active,
    /// The link exists but `spec.active` is false.
    Inactive,
    /// The expiry has passed; the link is kept, inactive, with its analytics.
    Expired,
    /// Another link holds the short code; nothing was written.
    Conflict,
    /// The spec cannot be applied; the message says why.
    Invalid,
}

impl Phase {
    /// Every phase, for metrics.
    pub const ALL: [Phase; 5] = [
        Phase::Active,
        Phase::Inactive,
        Phase::Expired,
        Phase::Conflict,
        Phase::Invalid,
    ];

    /// The phase as it is written in status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "Active",
            Phase::Inactive => "Inactive",
            Phase::Expired => "Expired",
            Phase::Conflict => "Conflict",
            Phase::Invalid => "Invalid",
        }
    }
}

/// One condition of the resource, following the Kubernetes API conventions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's name, such as `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A `PascalCase` word saying why.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML, as committed in `manifests/crd.yaml`.
pub fn crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&ShortLink::crd()).expect("the CRD serialises");
    format!("# Generated by `kadi-controller crd`; do not edit.\n{yaml}")
}

impl ShortLink {
    /// `namespace/name`: the owner written into a managed link's `managed_by`.
    pub fn owner(&self) -> Option<String> {
        let namespace = self.metadata.namespace.as_deref()?;
        let name = self.metadata.name.as_deref()?;
        Some(format!("{namespace}/{name}"))
    }

    /// The short code the resource declares: `spec.shortCode`, else its name.
    pub fn short_code(&self) -> Option<&str> {
        self.spec
            .short_code
            .as_deref()
            .or(self.metadata.name.as_deref())
    }
}
