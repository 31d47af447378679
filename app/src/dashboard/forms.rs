//! Reading dashboard forms and query strings: urlencoded pairs into the link
//! service's requests, with a message naming the field for every bad value.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::error::PageError;
use crate::links::LinkRequest;
use crate::store::{LinkPatch, Page};

/// The fields of a urlencoded form or query string; the first value of each
/// name counts.
#[derive(Debug, Default, Clone)]
pub struct FormData(HashMap<String, String>);

impl FormData {
    /// Parses urlencoded bytes; malformed escapes are kept as they are.
    pub fn parse(bytes: &[u8]) -> FormData {
        let mut fields = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(bytes) {
            fields
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        FormData(fields)
    }

    /// The trimmed value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |value| value.trim())
    }

    /// The trimmed value of `name`, `None` when absent or blank.
    pub fn optional(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|value| !value.is_empty())
    }

    /// A positive page number, 1 when absent or not a number.
    pub fn page(&self) -> i64 {
        self.get("page")
            .parse::<i64>()
            .ok()
            .filter(|page| (1..=1_000_000).contains(page))
            .unwrap_or(1)
    }

    /// The page number and the rows of that page, `per_page` to a page.
    pub fn page_window(&self, per_page: i64) -> (i64, Page) {
        let page = self.page();
        let window = Page {
            offset: (page - 1) * per_page,
            limit: per_page,
        };
        (page, window)
    }
}

/// The query string of a request; never rejects.
pub struct QueryData(pub FormData);

impl<S: Send + Sync> FromRequestParts<S> for QueryData {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let query = parts.uri.query().unwrap_or("");
        Ok(QueryData(FormData::parse(query.as_bytes())))
    }
}

/// A numeric id in the path; anything else is a 404 page.
pub struct IdPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| PageError::bad_request("The address of this page is malformed."))?;
        raw.parse()
            .map(IdPath)
            .map_err(|_| PageError::not_found(format!("Nothing has the id {raw:?}.")))
    }
}

/// What a person typed into a link form, kept to show the form again after
/// an error.
#[derive(Debug, Default, Clone)]
pub struct LinkInput {
    /// Custom short code (creation only).
    pub short_code: String,
    /// Target URL.
    pub original_url: String,
    /// Title.
    pub title: String,
    /// Owner's id (creation only).
    pub user_id: String,
    /// Expiry, `YYYY-MM-DDTHH:MM` in UTC.
    pub expires_at: String,
    /// Visit limit.
    pub max_visits: String,
    /// Redirect status.
    pub redirect_status: String,
    /// Whether the link starts active (creation only).
    pub is_active: bool,
}

impl LinkInput {
    /// The input of a submitted form.
    pub fn from_form(form: &FormData) -> LinkInput {
        LinkInput {
            short_code: form.get("short_code").to_owned(),
            original_url: form.get("original_url").to_owned(),
            title: form.get("title").to_owned(),
            user_id: form.get("user_id").to_owned(),
            expires_at: form.get("expires_at").to_owned(),
            max_visits: form.get("max_visits").to_owned(),
            redirect_status: form.get("redirect_status").to_owned(),
            is_active: !form.get("is_active").is_empty(),
        }
    }

    /// The request that creates the link.
    pub fn to_request(&self) -> Result<LinkRequest, String> {
        Ok(LinkRequest {
            user_id: parse_optional(&self.user_id, "user_id")?,
            original_url: self.original_url.clone(),
            title: Some(self.title.clone()).filter(|title| !title.is_empty()),
            short_code: Some(self.short_code.clone()).filter(|code| !code.is_empty()),
            expires_at: parse_expiry(&self.expires_at)?,
            max_visits: parse_optional(&self.max_visits, "max_visits")?,
            redirect_status: parse_optional(&self.redirect_status, "redirect_status")?,
            is_active: Some(self.is_active),
        })
    }

    /// The patch that makes the link match the form: every editable field is
    /// set, and a blank optional field clears it.
    pub fn to_patch(&self) -> Result<LinkPatch, String> {
        Ok(LinkPatch {
            original_url: Some(self.original_url.clone()),
            title: Some(Some(self.title.clone()).filter(|title| !title.is_empty())),
            is_active: None,
            redirect_status: Some(
                parse_optional(&self.redirect_status, "redirect_status")?.unwrap_or(302),
            ),
            expires_at: Some(parse_expiry(&self.expires_at)?),
            max_visits: Some(parse_optional(&self.max_visits, "max_visits")?),
        })
    }
}

fn parse_optional<T: std::str::FromStr>(
    text: &str,
    field: &'static str,
) -> Result<Option<T>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{}: {text:?} is not a whole number", field_label(field)))
}

/// Reads an expiry: `YYYY-MM-DDTHH:MM[:SS]` (what a `datetime-local` input
/// sends) taken as UTC, or a full RFC 3339 time.
pub fn parse_expiry(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| Some(naive.and_utc()))
        .ok_or_else(|| {
            format!(
                "{}: {text:?} is not a time like 2030-01-31T18:00",
                field_label("expires_at")
            )
        })
}

/// The value a `datetime-local` input shows for a time, in UTC.
pub fn expiry_value(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

/// The label a form shows for a field the link service names.
pub fn field_label(field: &str) -> &'static str {
    match field {
        "original_url" => "Target URL",
        "short_code" => "Short code",
        "title" => "Title",
        "user_id" => "Owner",
        "expires_at" => "Expires at",
        "max_visits" => "Visit limit",
        "redirect_status" => "Redirect status",
        "username" => "Username",
        "email" => "E-mail address",
        _ => "Field",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_the_first_value_and_trim() {
        let form = FormData::parse(b"a=+x+&a=y&b=");
        assert_eq!(form.get("a"), "x");
        assert_eq!(form.optional("b"), None);
        assert_eq!(form.get("missing"), "");
    }

    #[test]
    fn expiry_reads_datetime_local_as_utc() {
        let at = parse_expiry("2030-01-31T18:00").unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2030-01-31T18:00:00+00:00");
        let at = parse_expiry("2030-01-31T18:00:00+02:00").unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2030-01-31T16:00:00+00:00");
        assert!(parse_expiry("tomorrow").unwrap_err().contains("Expires at"));
        assert_eq!(parse_expiry("").unwrap(), None);
    }

    #[test]
    fn blank_fields_clear_and_bad_numbers_are_named() {
        let input = LinkInput {
            original_url: "https://example.com".into(),
            redirect_status: "307".into(),
            ..LinkInput::default()
        };
        let patch = input.to_patch().unwrap();
        assert_eq!(patch.title, Some(None));
        assert_eq!(patch.max_visits, Some(None));
        assert_eq!(patch.redirect_status, Some(307));
        let bad = LinkInput {
            max_visits: "ten".into(),
            ..input
        };
        assert!(bad.to_request().unwrap_err().starts_with("Visit limit"));
    }
}
