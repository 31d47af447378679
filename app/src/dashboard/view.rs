//! The page shell every dashboard page shares (head, navigation, notices) and
//! the small pieces pages show alike: times, link states, pagination. Markup
//! is built with maud, which escapes every interpolated string.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::session::Session;
use crate::store::Link;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Analytics of every link.
    Overview,
    /// The link listing and link pages.
    Links,
    /// The form that creates a link.
    NewLink,
    /// Users.
    Users,
    /// Pages outside the navigation (sign-in, errors).
    None,
}

/// A message at the top of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Something worked.
    Success(String),
    /// Something failed; announced to screen readers at once.
    Error(String),
}

/// What a page shows around its content.
pub struct Shell<'a> {
    /// The page title, also its heading.
    pub title: &'a str,
    /// The signed-in session; `None` shows no navigation.
    pub session: Option<&'a Session>,
    /// The navigation entry to mark as current.
    pub section: Section,
    /// A message above the content.
    pub notice: Option<Notice>,
}

/// A whole HTML page.
pub fn page(shell: Shell<'_>, content: Markup) -> Markup {
    let css = assets::url("app.css");
    let js = assets::url("app.js");
    let icon = assets::url("icon.svg");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (shell.title) " · Kadi" }
                link rel="icon" href=(icon) type="image/svg+xml";
                link rel="stylesheet" href=(css);
                script src=(js) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/dashboard" { "Kadi" }
                    @if let Some(session) = shell.session {
                        (navigation(shell.section))
                        form class="sign-out" method="post" action="/dashboard/sign-out" {
                            (csrf_field(session))
                            span class="who" { "Key: " (session.key_name) }
                            button type="submit" class="secondary" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (shell.title) }
                    @if let Some(notice) = &shell.notice {
                        (notice_box(notice))
                    }
                    (content)
                }
            }
        }
    }
}

fn navigation(current: Section) -> Markup {
    let entries = [
        (Section::Overview, "/dashboard", "Overview"),
        (Section::Links, "/dashboard/links", "Links"),
        (Section::NewLink, "/dashboard/links/new", "New link"),
        (Section::Users, "/dashboard/users", "Users"),
    ];
    html! {
        nav aria-label="Main" {
            ul {
                @for (section, href, label) in entries {
                    li {
                        @if section == current {
                            a href=(href) aria-current="page" { (label) }
                        } @else {
                            a href=(href) { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// A notice box.
pub fn notice_box(notice: &Notice) -> Markup {
    match notice {
        Notice::Success(text) => html! { div class="notice ok" role="status" { (text) } },
        Notice::Error(text) => html! { div class="notice error" role="alert" { (text) } },
    }
}

/// The hidden field that carries the session's CSRF token in a form.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(super::CSRF_FIELD) value=(session.csrf_token); }
}

/// A time as a `<time>` element, shown in UTC to the minute.
pub fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) }
    }
}

/// Where a link stands, as the listing shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Redirects.
    Active,
    /// Switched off; answers 404.
    Deactivated,
    /// Past its expiry; answers 410.
    Expired,
    /// Served all its visits; answers 410.
    Exhausted,
}

impl LinkState {
    /// The state of `link` at `now`. Expiry and exhausted visits show even on
    /// a deactivated link, since they decide what reactivating it would do.
    pub fn of(link: &Link, now: DateTime<Utc>) -> LinkState {
        if link.expires_at.is_some_and(|at| at <= now) {
            LinkState::Expired
        } else if link.max_visits.is_some_and(|max| link.click_count >= max) {
            LinkState::Exhausted
        } else if !link.is_active {
            LinkState::Deactivated
        } else {
            LinkState::Active
        }
    }

    /// The state's name.
    pub fn label(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Deactivated => "deactivated",
            LinkState::Expired => "expired",
            LinkState::Exhausted => "exhausted",
        }
    }
}

/// A state badge.
pub fn state_badge(state: LinkState) -> Markup {
    html! { span class={ "badge state-" (state.label()) } { (state.label()) } }
}

/// The badge of a managed link, naming its ShortLink.
pub fn managed_badge(owner: &str) -> Markup {
    html! { span class="badge managed" title="Managed by a ShortLink resource" { "ShortLink " (owner) } }
}

/// Previous/next links of a paged listing; `href` builds the URL of a page.
pub fn pager(page: i64, per_page: i64, total: i64, href: impl Fn(i64) -> String) -> Markup {
    let pages = ((total + per_page - 1) / per_page).max(1);
    html! {
        nav class="pager" aria-label="Pages" {
            @if page > 1 {
                a href=(href(page - 1)) rel="prev" { "← Previous" }
            }
            span { "Page " (page) " of " (pages) " · " (total) " in all" }
            @if page < pages {
                a href=(href(page + 1)) rel="next" { "Next →" }
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn link() -> Link {
        let now = Utc::now();
        Link {
            id: 1,
            user_id: None,
            short_code: "abc".into(),
            original_url: "https://example.com".into(),
            title: None,
            is_active: true,
            created_at: now,
            updated_at: now,
            expires_at: None,
            max_visits: None,
            redirect_status: 302,
            click_count: 0,
            managed_by: None,
        }
    }

    #[test]
    fn link_states_follow_activity_expiry_and_visits() {
        let now = Utc::now();
        let mut l = link();
        assert_eq!(LinkState::of(&l, now), LinkState::Active);
        l.is_active = false;
        assert_eq!(LinkState::of(&l, now), LinkState::Deactivated);
        l.is_active = true;
        l.max_visits = Some(2);
        l.click_count = 2;
        assert_eq!(LinkState::of(&l, now), LinkState::Exhausted);
        l.expires_at = Some(now - Duration::seconds(1));
        assert_eq!(LinkState::of(&l, now), LinkState::Expired);
    }

    #[test]
    fn interpolated_text_is_escaped() {
        let shell = Shell {
            title: "<script>alert(1)</script>",
            session: None,
            section: Section::None,
            notice: Some(Notice::Error("\"><img src=x>".into())),
        };
        let text = page(shell, html! {}).into_string();
        assert!(!text.contains("<script>alert(1)"), "{text}");
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!text.contains("<img src=x>"));
    }
}
