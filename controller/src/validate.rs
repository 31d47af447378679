//! Validation of a `ShortLink`: turns the resource into the managed link it
//! declares, or says why it cannot. Pure: no I/O, time passed in.

use chrono::{DateTime, Duration, Utc};
use kadi::links::{check_custom_code, TargetPolicy, REDIRECT_STATUSES};
use kadi::managed::ManagedLink;

use crate::resource::ShortLink;

/// Longest time to live accepted: about a hundred years, far beyond any
/// campaign, and small enough that no date arithmetic overflows.
const MAX_TTL_SECS: i64 = 100 * 366 * 24 * 3600;

/// Why a spec cannot be applied. The message goes into the `Ready`
/// condition, so it names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    /// The resource has no namespace or no name.
    #[error("the resource has no namespace or name")]
    MissingObjectKey,
    /// The target URL is refused.
    #[error("spec.url {0}")]
    Url(String),
    /// The short code is refused.
    #[error("spec.shortCode (or metadata.name) {0}")]
    ShortCode(String),
    /// Both expiry fields are set.
    #[error("spec.ttl and spec.expiresAt are mutually exclusive")]
    TtlAndExpiresAt,
    /// The time to live does not parse or is out of bounds.
    #[error("spec.ttl {0}")]
    Ttl(String),
    /// A time to live needs the creation time it counts from.
    #[error("spec.ttl needs metadata.creationTimestamp")]
    NoCreationTime,
    /// The redirect status is not one of 301, 302, 307 and 308.
    #[error("spec.redirectStatus must be 301, 302, 307 or 308, not {0}")]
    RedirectStatus(i32),
    /// The visit limit is below one.
    #[error("spec.maxVisits must be at least 1")]
    MaxVisits,
    /// The resource already serves a link under another short code.
    #[error("the short code may not change once set (was {held:?}, now {declared:?})")]
    ShortCodeChanged {
        /// The code the resource's link holds.
        held: String,
        /// The code the spec declares now.
        declared: String,
    },
    /// The link service refused a field.
    #[error("{0}")]
    Refused(String),
}

/// The managed link `shortlink` declares. `policy` is the link service's
/// target policy, so that the resource learns at once what the API would
/// refuse.
pub fn declared_link(
    shortlink: &ShortLink,
    policy: &TargetPolicy,
) -> Result<ManagedLink, InvalidSpec> {
    let spec = &shortlink.spec;
    let owner = shortlink.owner().ok_or(InvalidSpec::MissingObjectKey)?;
    let short_code = shortlink
        .short_code()
        .ok_or(InvalidSpec::MissingObjectKey)?;
    check_custom_code(short_code).map_err(|e| InvalidSpec::ShortCode(reason_of(e)))?;
    let original_url = policy
        .check_target(&spec.url)
        .map_err(|e| InvalidSpec::Url(reason_of(e)))?;
    if !REDIRECT_STATUSES.contains(&spec.redirect_status) {
        return Err(InvalidSpec::RedirectStatus(spec.redirect_status));
    }
    if spec.max_visits.is_some_and(|max| max < 1) {
        return Err(InvalidSpec::MaxVisits);
    }
    Ok(ManagedLink {
        owner,
        short_code: short_code.to_owned(),
        original_url,
        redirect_status: spec.redirect_status,
        expires_at: expiry(shortlink)?,
        max_visits: spec.max_visits,
        is_active: spec.active,
    })
}

/// The absolute expiry: `spec.expiresAt`, or the creation time plus
/// `spec.ttl`, or none.
pub fn expiry(shortlink: &ShortLink) -> Result<Option<DateTime<Utc>>, InvalidSpec> {
    let spec = &shortlink.spec;
    match (&spec.ttl, spec.expires_at) {
        (Some(_), Some(_)) => Err(InvalidSpec::TtlAndExpiresAt),
        (None, expires_at) => Ok(expires_at),
        (Some(ttl), None) => {
            let ttl = parse_ttl(ttl).map_err(InvalidSpec::Ttl)?;
            let created = shortlink
                .metadata
                .creation_timestamp
                .as_ref()
                .ok_or(InvalidSpec::NoCreationTime)?;
            let created = DateTime::<Utc>::from_timestamp(
                created.0.as_second(),
                created.0.subsec_nanosecond().max(0) as u32,
            )
            .ok_or(InvalidSpec::NoCreationTime)?;
            Ok(Some(created + ttl))
        }
    }
}

/// Parses a time to live such as `72h`, `1h30m` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let mut total: i64 = 0;
    let mut number: Option<i64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .filter(|n| *n <= MAX_TTL_SECS)
                    .ok_or("is too long")?,
            );
            continue;
        }
        let unit = match c {
            'd' => 24 * 3600,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("has an unknown unit {c:?}; use d, h, m or s")),
        };
        let n = number.take().ok_or("needs a number before each unit")?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .filter(|secs| *secs <= MAX_TTL_SECS)
            .ok_or("is too long")?;
    }
    if number.is_some() {
        return Err("needs a unit after each number, such as 72h".to_owned());
    }
    if total == 0 {
        return Err("must be longer than zero".to_owned());
    }
    Ok(Duration::seconds(total))
}

fn reason_of(error: kadi::links::LinkError) -> String {
    match error {
        kadi::links::LinkError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ShortLinkSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn policy() -> TargetPolicy {
        TargetPolicy::for_public_url(&"https://sho.rt".parse().unwrap())
    }

    fn shortlink(spec: serde_json::Value) -> ShortLink {
        let spec: ShortLinkSpec = serde_json::from_value(spec).unwrap();
        let mut shortlink = ShortLink::new("launch-notes", spec);
        shortlink.metadata.namespace = Some("marketing".into());
        shortlink.metadata.creation_timestamp = Some(Time("2026-06-01T00:00:00Z".parse().unwrap()));
        shortlink
    }

    #[test]
    fn ttl_counts_from_creation() {
        let link = declared_link(
            &shortlink(serde_json::json!({"url": "https://example.com/", "ttl": "72h"})),
            &policy(),
        )
        .unwrap();
        assert_eq!(
            link.expires_at,
            Some("2026-06-04T00:00:00Z".parse().unwrap())
        );
        assert_eq!(link.owner, "marketing/launch-notes");
        assert_eq!(link.short_code, "launch-notes");
        assert_eq!(link.redirect_status, 302);
        assert!(link.is_active);
    }

    #[test]
    fn ttl_takes_several_units() {
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::seconds(90));
        for bad in ["", "0s", "72", "h", "3w", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bad_specs_name_their_field() {
        let cases = [
            (
                serde_json::json!({"url": "javascript:alert(1)"}),
                "spec.url",
            ),
            (
                serde_json::json!({"url": "https://sho.rt/loop"}),
                "spec.url",
            ),
            (
                serde_json::json!({"url": "https://example.com/", "shortCode": "users"}),
                "spec.shortCode",
            ),
            (
                serde_json::json!({"url": "https://example.com/", "ttl": "1h",
                    "expiresAt": "2026-12-31T23:59:59Z"}),
                "spec.ttl and spec.expiresAt",
            ),
            (
                serde_json::json!({"url": "https://example.com/", "redirectStatus": 303}),
                "spec.redirectStatus",
            ),
            (
                serde_json::json!({"url": "https://example.com/", "maxVisits": 0}),
                "spec.maxVisits",
            ),
        ];
        for (spec, field) in cases {
            let error = declared_link(&shortlink(spec.clone()), &policy()).unwrap_err();
            assert!(error.to_string().starts_with(field), "{spec}: {error}");
        }
    }

    #[test]
    fn a_name_with_a_dot_needs_a_short_code() {
        let mut resource = shortlink(serde_json::json!({"url": "https://example.com/"}));
        resource.metadata.name = Some("launch.notes".into());
        assert!(matches!(
            declared_link(&resource, &policy()),
            Err(InvalidSpec::ShortCode(_))
        ));
        resource.spec.short_code = Some("launch".into());
        assert_eq!(
            declared_link(&resource, &policy()).unwrap().short_code,
            "launch"
        );
    }
}
