//! The link service: the one place that creates, changes and deletes links,
//! and the one place that invalidates cached links after a change.

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use url::Url;

use crate::cache::LinkCache;
use crate::store::{ImportLink, Link, LinkPatch, NewLink, RowOutcome, Store, StoreError};

/// Length of generated short codes: 62^6 (about 57 billion) codes keep
/// collisions rare for billions of links.
pub const GENERATED_CODE_LEN: usize = 6;

/// Attempts at a free generated code before giving up; with a sparse code
/// space a second attempt is already rare.
const CODE_ATTEMPTS: usize = 8;

/// Bounds of custom short codes.
pub const CUSTOM_CODE_LEN: std::ops::RangeInclusive<usize> = 3..=64;

/// Longest target URL accepted, in bytes; browsers and proxies handle this
/// length everywhere.
pub const MAX_TARGET_LEN: usize = 2048;

/// Longest title accepted, in characters.
pub const MAX_TITLE_LEN: usize = 512;

/// Path names the service uses itself; no short code may take one of them.
pub const RESERVED_CODES: &[&str] = &[
    "health",
    "healthz",
    "livez",
    "readyz",
    "metrics",
    "users",
    "urls",
    "events",
    "openapi.json",
    "openapi",
    "docs",
    "api",
    "dashboard",
    "static",
    "assets",
    "login",
    "logout",
    "favicon.ico",
    "robots.txt",
];

/// Redirect statuses a link may use.
pub const REDIRECT_STATUSES: [i32; 4] = [301, 302, 307, 308];

/// Failures of the link service.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No live link has this id.
    #[error("url {0} does not exist")]
    NotFound(i64),
    /// No live user has this id.
    #[error("user {0} does not exist")]
    UserNotFound(i64),
    /// Another live link holds the short code.
    #[error("short code {0:?} is taken")]
    CodeTaken(String),
    /// A field failed validation.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The link belongs to a ShortLink resource and only changes through it.
    #[error("url is managed by ShortLink {0}; change the resource instead")]
    Managed(String),
    /// Every generated code was taken.
    #[error("no free short code after {CODE_ATTEMPTS} attempts")]
    CodesExhausted,
    /// The store failed.
    #[error("link store failed")]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LinkError {
    LinkError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A request to create a link, as a client sent it.
#[derive(Debug, Clone, Default)]
pub struct LinkRequest {
    /// Owner.
    pub user_id: Option<i64>,
    /// Target URL.
    pub original_url: String,
    /// Title.
    pub title: Option<String>,
    /// Custom short code; one is generated when absent.
    pub short_code: Option<String>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Visit limit.
    pub max_visits: Option<i64>,
    /// Redirect status; 302 when absent.
    pub redirect_status: Option<i32>,
    /// Active flag; true when absent.
    pub is_active: Option<bool>,
}

/// Which hosts links may not point at.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Kadi's own public hosts (lower case, with port when not the default).
    pub own_hosts: Vec<String>,
}

impl TargetPolicy {
    /// The policy for a service whose short URLs start with `public_url`.
    pub fn for_public_url(public_url: &Url) -> TargetPolicy {
        TargetPolicy {
            own_hosts: host_key(public_url).into_iter().collect(),
        }
    }

    /// Checks a target URL and returns the form to store: the text as given
    /// when it is plain visible ASCII, else its normalised ASCII form.
    pub fn check_target(&self, raw: &str) -> Result<String, LinkError> {
        if raw.is_empty() {
            return Err(invalid("original_url", "must not be empty"));
        }
        if raw.len() > MAX_TARGET_LEN {
            return Err(invalid(
                "original_url",
                format!("must be at most {MAX_TARGET_LEN} bytes"),
            ));
        }
        let url =
            Url::parse(raw).map_err(|e| invalid("original_url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("original_url", "must be an http or https URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("original_url", "must have a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("original_url", "must not carry user credentials"));
        }
        if let Some(key) = host_key(&url) {
            if self.own_hosts.contains(&key) {
                return Err(invalid("original_url", "must not point at this shortener"));
            }
        }
        let stored = if raw.bytes().all(|b| b.is_ascii_graphic()) {
            raw.to_owned()
        } else {
            url.as_str().to_owned()
        };
        if stored.len() > MAX_TARGET_LEN {
            return Err(invalid(
                "original_url",
                format!("must be at most {MAX_TARGET_LEN} bytes once encoded"),
            ));
        }
        Ok(stored)
    }
}

fn host_key(url: &Url) -> Option<String> {
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Whether `code` could be a short code at all (charset and length), which
/// the redirect path checks before any lookup.
pub fn is_code_shaped(code: &str) -> bool {
    (1..=*CUSTOM_CODE_LEN.end()).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a custom short code.
pub fn check_custom_code(code: &str) -> Result<(), LinkError> {
    if !CUSTOM_CODE_LEN.contains(&code.len()) {
        return Err(invalid(
            "short_code",
            format!(
                "must be {} to {} characters long",
                CUSTOM_CODE_LEN.start(),
                CUSTOM_CODE_LEN.end()
            ),
        ));
    }
    if !is_code_shaped(code) {
        return Err(invalid(
            "short_code",
            "may only contain A-Z, a-z, 0-9, _ and -",
        ));
    }
    if is_reserved(code) {
        return Err(invalid("short_code", "is reserved by the service"));
    }
    Ok(())
}

/// Whether `code` is one of [`RESERVED_CODES`], in any case.
pub fn is_reserved(code: &str) -> bool {
    RESERVED_CODES.iter().any(|r| r.eq_ignore_ascii_case(code))
}

/// A random code of [`GENERATED_CODE_LEN`] characters of `[A-Za-z0-9]`, never a
/// reserved name.
pub fn generate_code() -> String {
    loop {
        let code = Alphanumeric.sample_string(&mut rand::rng(), GENERATED_CODE_LEN);
        if !is_reserved(&code) {
            return code;
        }
    }
}

/// Checks a redirect status.
pub fn check_redirect_status(status: i32) -> Result<i32, LinkError> {
    if REDIRECT_STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(invalid("redirect_status", "must be 301, 302, 307 or 308"))
    }
}

/// Checks a visit limit.
pub fn check_max_visits(max_visits: i64) -> Result<i64, LinkError> {
    if max_visits >= 1 {
        Ok(max_visits)
    } else {
        Err(invalid("max_visits", "must be at least 1"))
    }
}

/// Checks a title.
pub fn check_title(title: &str) -> Result<(), LinkError> {
    if title.chars().count() > MAX_TITLE_LEN {
        return Err(invalid(
            "title",
            format!("must be at most {MAX_TITLE_LEN} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(invalid("title", "must not contain control characters"));
    }
    Ok(())
}

/// Creates, changes and deletes links, keeping caches in step.
#[derive(Clone)]
pub struct LinkService {
    store: Store,
    cache: LinkCache,
    policy: TargetPolicy,
}

impl LinkService {
    /// A service writing to `store` and invalidating `cache`.
    pub fn new(store: Store, cache: LinkCache, policy: TargetPolicy) -> LinkService {
        LinkService {
            store,
            cache,
            policy,
        }
    }

    /// The store behind the service.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The local cache tier.
    pub fn cache(&self) -> &LinkCache {
        &self.cache
    }

    /// The target policy.
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// Validates and creates a link with its `created` event.
    pub async fn create_link(&self, request: LinkRequest) -> Result<Link, LinkError> {
        let original_url = self.policy.check_target(&request.original_url)?;
        if let Some(title) = &request.title {
            check_title(title)?;
        }
        if let Some(code) = &request.short_code {
            check_custom_code(code)?;
        }
        let redirect_status = check_redirect_status(request.redirect_status.unwrap_or(302))?;
        let max_visits = request.max_visits.map(check_max_visits).transpose()?;
        if let Some(user_id) = request.user_id {
            if self.store.user(user_id).await?.is_none() {
                return Err(LinkError::UserNotFound(user_id));
            }
        }
        let mut new = NewLink {
            id: None,
            user_id: request.user_id,
            short_code: String::new(),
            original_url,
            title: request.title,
            is_active: request.is_active.unwrap_or(true),
            redirect_status,
            expires_at: request.expires_at,
            max_visits,
            managed_by: None,
            created_at: None,
            updated_at: None,
        };
        match request.short_code {
            Some(code) => {
                new.short_code = code;
                self.insert(&new).await
            }
            None => {
                for _ in 0..CODE_ATTEMPTS {
                    new.short_code = generate_code();
                    match self.insert(&new).await {
                        Err(LinkError::CodeTaken(_)) => continue,
                        other => return other,
                    }
                }
                Err(LinkError::CodesExhausted)
            }
        }
    }

    /// Inserts a validated link (imports use this directly to keep ids and
    /// times) and drops any negative cache entry for its code.
    pub async fn insert(&self, new: &NewLink) -> Result<Link, LinkError> {
        let result = self.store.insert_link(new).await;
        self.cache.invalidate(&new.short_code);
        match result {
            Ok(link) => Ok(link),
            Err(StoreError::Conflict(_)) => Err(LinkError::CodeTaken(new.short_code.clone())),
            Err(StoreError::MissingReference(source)) => match new.user_id {
                Some(user_id) => Err(LinkError::UserNotFound(user_id)),
                None => Err(StoreError::MissingReference(source).into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Applies a client's patch to a link that is not managed.
    pub async fn update_link(&self, id: i64, patch: LinkPatch) -> Result<Link, LinkError> {
        let current = self.unmanaged_link(id).await?;
        if patch.is_empty() {
            return Ok(current);
        }
        let mut patch = patch;
        if let Some(url) = &patch.original_url {
            patch.original_url = Some(self.policy.check_target(url)?);
        }
        if let Some(Some(title)) = &patch.title {
            check_title(title)?;
        }
        if let Some(status) = patch.redirect_status {
            check_redirect_status(status)?;
        }
        if let Some(Some(max)) = patch.max_visits {
            check_max_visits(max)?;
        }
        let updated = self.store.update_link(id, &patch, current.user_id).await;
        self.cache.invalidate(&current.short_code);
        updated?.ok_or(LinkError::NotFound(id))
    }

    /// Deletes a link that is not managed; it stays stored for its analytics.
    pub async fn delete_link(&self, id: i64) -> Result<Link, LinkError> {
        let current = self.unmanaged_link(id).await?;
        let deleted = self.store.delete_link(id).await;
        self.cache.invalidate(&current.short_code);
        deleted?.ok_or(LinkError::NotFound(id))
    }

    /// Deletes a user and every link it owns.
    pub async fn delete_user(&self, user_id: i64) -> Result<(), LinkError> {
        let codes = self.store.delete_user(user_id).await?;
        let codes = codes.ok_or(LinkError::UserNotFound(user_id))?;
        for code in &codes {
            self.cache.invalidate(code);
        }
        Ok(())
    }

    /// Inserts links of an export, keeping their ids, and drops their codes
    /// from the caches.
    pub async fn import_links(&self, rows: &[ImportLink]) -> Result<Vec<RowOutcome>, LinkError> {
        let outcome = self.store.import_links(rows).await;
        for row in rows {
            self.cache.invalidate(&row.short_code);
        }
        Ok(outcome?)
    }

    async fn unmanaged_link(&self, id: i64) -> Result<Link, LinkError> {
        let link = self.store.link(id).await?.ok_or(LinkError::NotFound(id))?;
        match &link.managed_by {
            Some(owner) => Err(LinkError::Managed(owner.clone())),
            None => Ok(link),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy::for_public_url(&Url::parse("https://sho.rt").unwrap())
    }

    #[test]
    fn plain_targets_are_stored_as_given() {
        let stored = policy().check_target("https://example.com").unwrap();
        assert_eq!(stored, "https://example.com");
    }

    #[test]
    fn hostile_and_malformed_targets_are_refused() {
        for raw in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://example.com/x",
            "https://",
            "example.com/no-scheme",
            "https://SHO.RT/abc",
            "https://user:pw@example.com/",
            "",
        ] {
            assert!(policy().check_target(raw).is_err(), "{raw} was accepted");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_TARGET_LEN));
        assert!(policy().check_target(&long).is_err());
    }

    #[test]
    fn international_targets_are_stored_encoded() {
        let stored = policy().check_target("https://bücher.example/ü").unwrap();
        assert_eq!(stored, "https://xn--bcher-kva.example/%C3%BC");
    }

    #[test]
    fn custom_codes_follow_the_rules() {
        assert!(check_custom_code("my-launch_2026").is_ok());
        assert!(check_custom_code("ab").is_err());
        assert!(check_custom_code(&"a".repeat(65)).is_err());
        assert!(check_custom_code("has space").is_err());
        assert!(check_custom_code("Users").is_err());
        assert!(check_custom_code("openapi.json").is_err());
    }

    #[test]
    fn generated_codes_have_six_alphanumerics() {
        for _ in 0..1000 {
            let code = generate_code();
            assert_eq!(code.len(), GENERATED_CODE_LEN);
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(!is_reserved(&code));
        }
    }
}
