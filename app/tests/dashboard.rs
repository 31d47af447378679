//! The web dashboard: its content security policy, sessions signed in with an
//! API key, CSRF protection of every form, HTML escaping, error pages, and
//! the analytics queries behind it, on SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use common::TestApp;
use kadi::managed::ManagedLink;
use kadi::ratelimit::RateLimit;
use kadi::store::{Backend, Granularity, LinkSearch, Page};
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::json;

const XSS: &str = "<script>alert(1)</script>";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Safari/537.36";

/// A form that must fail: its fields, the status and a part of the message.
type FormCase<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str);

/// A signed-in dashboard session: its cookie and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

/// Creates an API key and returns it.
async fn create_key(app: &TestApp) -> String {
    kadi::auth::create_key(&app.store, "dashboard test")
        .await
        .expect("create key")
        .secret
}

/// The value of the cookie `name` set by a response, with its attributes.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap_or("");
    pair.split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

/// The value of the hidden CSRF field of a page.
fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"))
        + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap_or("").to_owned()
}

async fn get_page(app: &TestApp, path: &str, session: Option<&Session>) -> Response {
    let mut request = app.client.get(app.url(path));
    if let Some(session) = session {
        request = request.header("cookie", format!("kadi_session={}", session.cookie));
    }
    request.send().await.expect("request")
}

async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Response {
    let mut request = app.client.post(app.url(path)).form(fields);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("request")
}

/// Opens the sign-in form and posts `key` with the form's token; returns
/// the answer.
async fn submit_key(app: &TestApp, key: &str) -> Response {
    let form = get_page(app, "/dashboard/sign-in", None).await;
    assert_eq!(form.status(), StatusCode::OK);
    let form_cookie = set_cookie(&form, "kadi_sign_in").expect("sign-in cookie");
    let form_token = cookie_value(&form_cookie);
    let html = form.text().await.unwrap();
    assert_eq!(csrf_of(&html), form_token);
    let cookie = format!("kadi_sign_in={form_token}");
    post_form(
        app,
        "/dashboard/sign-in",
        Some(&cookie),
        &[("csrf", &form_token), ("key", key)],
    )
    .await
}

async fn sign_in(app: &TestApp, key: &str) -> Session {
    let response = submit_key(app, key).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/dashboard");
    let cookie = cookie_value(&set_cookie(&response, "kadi_session").expect("session cookie"));
    let mut session = Session {
        cookie,
        csrf: String::new(),
    };
    let page = get_page(app, "/dashboard", Some(&session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    session.csrf = csrf_of(&page.text().await.unwrap());
    session
}

async fn post_as(
    app: &TestApp,
    session: &Session,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    let cookie = format!("kadi_session={}", session.cookie);
    let mut all = vec![("csrf", session.csrf.as_str())];
    all.extend_from_slice(fields);
    post_form(app, path, Some(&cookie), &all).await
}

/// Creates an active link through the dashboard (the form's checkbox is
/// ticked unless unticked) and returns its id.
async fn create_link(app: &TestApp, session: &Session, fields: &[(&str, &str)]) -> i64 {
    let mut fields = fields.to_vec();
    fields.push(("is_active", "on"));
    let response = post_as(app, session, "/dashboard/links", &fields).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = location
        .trim_start_matches("/dashboard/links/")
        .split('?')
        .next()
        .unwrap();
    id.parse().expect("link id in the redirect")
}

/// The directives of a content security policy.
fn directives(policy: &str) -> BTreeMap<String, Vec<String>> {
    policy
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect()
}

fn assert_strict_policy(response: &Response) {
    let policies: Vec<&str> = response
        .headers()
        .get_all(CONTENT_SECURITY_POLICY)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(policies.len(), 1, "one policy, not {policies:?}");
    let policy = directives(policies[0]);
    assert_eq!(policy["default-src"], ["'self'"]);
    assert_eq!(policy["script-src"], ["'self'"], "scripts: {policy:?}");
    assert_eq!(policy["style-src"], ["'self'"]);
    assert_eq!(policy["frame-ancestors"], ["'none'"]);
    assert_eq!(policy["form-action"], ["'self'"]);
    assert_eq!(policy["base-uri"], ["'none'"]);
    for (name, sources) in &policy {
        for source in sources {
            let lower = source.to_ascii_lowercase();
            assert!(
                !lower.contains("unsafe-inline") && !lower.contains("unsafe-eval"),
                "{name} allows {source}"
            );
            assert!(
                !lower.starts_with("http") && !lower.contains('*') && !lower.contains("://"),
                "{name} allows the outside origin {source}"
            );
        }
    }
}

async fn link_count(app: &TestApp) -> i64 {
    let (_, total) = app
        .store
        .search_links(
            &LinkSearch::default(),
            Page {
                offset: 0,
                limit: 0,
            },
        )
        .await
        .unwrap();
    total
}

/// Waits up to five seconds for the click writer to store `clicks` clicks of
/// the link `id`.
async fn wait_for_clicks(app: &TestApp, id: i64, clicks: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stored = app.store.recent_clicks(Some(id), 100).await.unwrap();
        if stored.len() >= clicks {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "clicks not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends! {
    async fn every_dashboard_page_forbids_inline_scripts_and_outside_origins(app) {
        let key = create_key(&app).await;
        let sign_in_form = get_page(&app, "/dashboard/sign-in", None).await;
        assert_strict_policy(&sign_in_form);
        let session = sign_in(&app, &key).await;
        let id = create_link(&app, &session, &[("original_url", "https://example.com")]).await;
        for path in [
            "/dashboard".to_owned(),
            "/dashboard/links".to_owned(),
            "/dashboard/links/new".to_owned(),
            format!("/dashboard/links/{id}"),
            format!("/dashboard/links/{id}/edit"),
            format!("/dashboard/links/{id}/qr.svg"),
            "/dashboard/users".to_owned(),
            "/dashboard/links/999999".to_owned(),
            "/dashboard/no/such/page".to_owned(),
        ] {
            let response = get_page(&app, &path, Some(&session)).await;
            assert!(response.status() != StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_strict_policy(&response);
            assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        }
        // The API keeps its own, stricter policy.
        let api = app.get("/users").await;
        assert_eq!(api.headers()[CONTENT_SECURITY_POLICY], "default-src 'none'; frame-ancestors 'none'");
    }

    async fn pages_load_only_versioned_assets_from_kadi(app) {
        let page = get_page(&app, "/dashboard/sign-in", None).await.text().await.unwrap();
        assert!(!page.contains("<style"), "inline style element");
        assert!(!page.contains("style="), "inline style attribute");
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("http://") && !page.contains("https://"), "outside origin in {page}");
        let css = page
            .split('"')
            .find(|part| part.starts_with("/dashboard/assets/") && part.ends_with("/app.css"))
            .expect("stylesheet link")
            .to_owned();
        let asset = app.get(&css).await;
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(asset.headers()["cache-control"].to_str().unwrap().contains("max-age=31536000"));
        assert!(asset.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
        let stale = app.get("/dashboard/assets/0000/app.css").await;
        assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    }

    async fn the_session_cookie_is_http_only_same_site_and_not_the_key(app) {
        let key = create_key(&app).await;
        let response = submit_key(&app, &key).await;
        let cookie = set_cookie(&response, "kadi_session").expect("session cookie");
        let attributes: Vec<String> = cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
        assert!(attributes.contains(&"httponly".to_owned()), "{cookie}");
        assert!(attributes.contains(&"samesite=strict".to_owned()), "{cookie}");
        assert!(attributes.contains(&"path=/dashboard".to_owned()), "{cookie}");
        // Short URLs are plain http in tests: no Secure flag, or the browser would drop it.
        assert!(!attributes.contains(&"secure".to_owned()), "{cookie}");
        let value = cookie_value(&cookie);
        assert!(!value.contains(&key) && !key.contains(&value), "the key is in the cookie");
        assert!(!value.contains(&key[5..13]), "a part of the key is in the cookie");
        assert_eq!(value.len(), 64);
    }

    async fn a_wrong_or_revoked_key_is_refused(app) {
        let wrong = format!("kadi_{}", "0".repeat(64));
        for key in [wrong.as_str(), "not a key", ""] {
            let response = submit_key(&app, key).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(set_cookie(&response, "kadi_session").is_none());
            let html = response.text().await.unwrap();
            assert!(html.contains("role=\"alert\""), "{html}");
            assert!(html.contains("This API key was not accepted"), "{html}");
        }
        let created = kadi::auth::create_key(&app.store, "soon revoked").await.unwrap();
        let session = sign_in(&app, &created.secret).await;
        app.store.revoke_api_key(created.key.id).await.unwrap();
        let response = submit_key(&app, &created.secret).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // Revoking the key also ends the sessions opened with it.
        let page = get_page(&app, "/dashboard", Some(&session)).await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[LOCATION], "/dashboard/sign-in?ended=1");
    }

    async fn a_sign_in_form_without_its_token_is_refused(app) {
        let key = create_key(&app).await;
        let response = post_form(&app, "/dashboard/sign-in", None, &[("key", &key)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = post_form(
            &app,
            "/dashboard/sign-in",
            Some("kadi_sign_in=aaaa"),
            &[("csrf", "bbbb"), ("key", &key)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&response, "kadi_session").is_none());
    }

    async fn forms_without_the_sessions_csrf_token_change_nothing(app) {
        let key = create_key(&app).await;
        let alice = sign_in(&app, &key).await;
        let bob = sign_in(&app, &key).await;
        assert_ne!(alice.csrf, bob.csrf);
        let cookie = format!("kadi_session={}", alice.cookie);
        let link = [("original_url", "https://example.com/csrf"), ("short_code", "csrf-test")];

        let refusals = [
            post_form(&app, "/dashboard/links", Some(&cookie), &link).await,
            post_form(&app, "/dashboard/links", Some(&cookie), &[("csrf", "0123"), link[0], link[1]]).await,
            post_form(&app, "/dashboard/links", Some(&cookie), &[("csrf", bob.csrf.as_str()), link[0], link[1]]).await,
            post_form(&app, "/dashboard/links", None, &[("csrf", alice.csrf.as_str()), link[0], link[1]]).await,
        ];
        for response in refusals {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert_strict_policy(&response);
            let html = response.text().await.unwrap();
            assert!(html.contains("nothing was changed"), "{html}");
        }
        assert_eq!(link_count(&app).await, 0);
        assert!(app.store.link_by_code("csrf-test").await.unwrap().is_none());

        // The same form with the right token works, and the other actions are guarded too.
        let id = create_link(&app, &alice, &link).await;
        for action in ["deactivate", "delete"] {
            let path = format!("/dashboard/links/{id}/{action}");
            let response = post_form(&app, &path, Some(&cookie), &[("csrf", bob.csrf.as_str())]).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        let link = app.store.link(id).await.unwrap().expect("link still there");
        assert!(link.is_active);
        let sign_out = post_form(&app, "/dashboard/sign-out", Some(&cookie), &[]).await;
        assert_eq!(sign_out.status(), StatusCode::FORBIDDEN);
        assert_eq!(get_page(&app, "/dashboard", Some(&alice)).await.status(), StatusCode::OK);
    }

    async fn signing_out_ends_the_session(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let response = post_as(&app, &session, "/dashboard/sign-out", &[]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/dashboard/sign-in?signed_out=1");
        let cleared = set_cookie(&response, "kadi_session").expect("cleared cookie");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");

        // The old cookie no longer opens a page nor carries a form.
        let page = get_page(&app, "/dashboard/links", Some(&session)).await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()[LOCATION], "/dashboard/sign-in?ended=1");
        let form = post_as(&app, &session, "/dashboard/links", &[("original_url", "https://example.com")]).await;
        assert_eq!(form.status(), StatusCode::FORBIDDEN);
        assert_eq!(link_count(&app).await, 0);
        let notice = get_page(&app, "/dashboard/sign-in?signed_out=1", None).await.text().await.unwrap();
        assert!(notice.contains("You are signed out."));
    }

    async fn user_supplied_text_is_escaped_everywhere(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let response = post_as(&app, &session, "/dashboard/users", &[("username", XSS), ("email", "x@example.com")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let user_page = response.headers()[LOCATION].to_str().unwrap().to_owned();
        let user_id = user_page.trim_start_matches("/dashboard/users/").split('?').next().unwrap().to_owned();
        let id = create_link(&app, &session, &[
            ("original_url", "https://example.com/?q=\"><img src=x onerror=alert(1)>"),
            ("title", XSS),
            ("user_id", &user_id),
        ]).await;
        let referrer = format!("https://evil.example/{XSS}");
        let code = app.store.link(id).await.unwrap().unwrap().short_code;
        app.client
            .get(app.url(&format!("/{code}")))
            .header("referer", referrer)
            .header("user-agent", XSS)
            .send()
            .await
            .unwrap();
        wait_for_clicks(&app, id, 1).await;
        for path in [
            format!("/dashboard/links/{id}"),
            "/dashboard/links".to_owned(),
            "/dashboard/links?q=%3Cscript%3E".to_owned(),
            "/dashboard".to_owned(),
            "/dashboard/users".to_owned(),
            user_page.clone(),
        ] {
            let html = get_page(&app, &path, Some(&session)).await.text().await.unwrap();
            assert!(!html.contains(XSS), "{path} shows raw markup: {html}");
            assert!(!html.contains("<img src=x"), "{path}");
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path} lost the text: {html}");
        }
        // A form shown again after an error escapes what was typed.
        let response = post_as(&app, &session, "/dashboard/links", &[("original_url", XSS), ("title", XSS)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(!html.contains(XSS));
        assert!(html.contains("Target URL:"), "{html}");
    }

    async fn a_link_shows_its_clicks_per_day_and_hour(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let id = create_link(&app, &session, &[
            ("original_url", "https://example.com/analytics"),
            ("short_code", "stats-1"),
            ("redirect_status", "307"),
        ]).await;
        let redirect = app
            .client
            .get(app.url("/stats-1"))
            .header("referer", "https://news.example/item")
            .header("user-agent", CHROME)
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
        wait_for_clicks(&app, id, 1).await;

        let today = Utc::now().format("%Y-%m-%d").to_string();
        let hour = Utc::now().format("%Y-%m-%dT%H").to_string();
        let html = get_page(&app, &format!("/dashboard/links/{id}"), Some(&session)).await.text().await.unwrap();
        assert!(html.contains(&format!(r#"data-bucket="{today}" data-count="1""#)), "{html}");
        assert!(html.contains("https://news.example/item"));
        assert!(html.contains("<td class=\"target\">Chrome</td>"), "{html}");
        assert!(html.contains("<td class=\"target\">Desktop</td>"));
        assert!(html.contains(r#"src="/dashboard/links/"#) && html.contains("/qr.svg"));
        let html = get_page(&app, &format!("/dashboard/links/{id}?by=hour"), Some(&session)).await.text().await.unwrap();
        assert!(html.contains(&format!(r#"data-bucket="{hour}" data-count="1""#)), "{html}");
        let overview = get_page(&app, "/dashboard", Some(&session)).await.text().await.unwrap();
        assert!(overview.contains(&format!(r#"data-bucket="{today}" data-count="1""#)));
        assert!(overview.contains(">stats-1</a>"), "latest clicks name the code");

        // The queries behind it, on this backend.
        let since = Utc::now() - chrono::Duration::days(1);
        let per_hour = app.store.clicks_over_time(Some(id), since, Granularity::Hour).await.unwrap();
        assert_eq!(per_hour.len(), 1);
        assert_eq!((per_hour[0].bucket.as_str(), per_hour[0].clicks), (hour.as_str(), 1));
        let per_day = app.store.clicks_over_time(None, since, Granularity::Day).await.unwrap();
        assert_eq!(per_day[0].bucket, today);
        let later = Utc::now() + chrono::Duration::hours(1);
        assert!(app.store.clicks_over_time(Some(id), later, Granularity::Day).await.unwrap().is_empty());
        let referrers = app.store.top_referrers(Some(id), since, 10).await.unwrap();
        assert_eq!(referrers[0].referrer, "https://news.example/item");
        let agents = app.store.user_agent_counts(None, since, 10).await.unwrap();
        assert_eq!(agents[0].user_agent.as_deref(), Some(CHROME));
        assert!(app.store.user_agent_counts(Some(id + 1), since, 10).await.unwrap().is_empty());
        let recent = app.store.recent_clicks(None, 10).await.unwrap();
        assert_eq!(recent[0].short_code, "stats-1");
    }

    async fn the_listing_searches_codes_targets_and_titles(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        create_link(&app, &session, &[("original_url", "https://example.com/a"), ("short_code", "alpha-1")]).await;
        create_link(&app, &session, &[("original_url", "https://shop.example/b"), ("title", "Winter SALE 50%")]).await;
        create_link(&app, &session, &[("original_url", "https://example.com/c"), ("title", "Plain")]).await;
        let search = |text: &str| LinkSearch { text: Some(text.to_owned()), user_id: None };
        let page = Page { offset: 0, limit: 10 };
        assert_eq!(app.store.search_links(&search("ALPHA"), page).await.unwrap().1, 1);
        assert_eq!(app.store.search_links(&search("shop.example"), page).await.unwrap().1, 1);
        assert_eq!(app.store.search_links(&search("sale 50%"), page).await.unwrap().1, 1);
        // `%` and `_` are literal, not wildcards.
        assert_eq!(app.store.search_links(&search("%"), page).await.unwrap().1, 1);
        assert_eq!(app.store.search_links(&search("_"), page).await.unwrap().1, 0);
        assert_eq!(app.store.search_links(&search(""), page).await.unwrap().1, 3);
        let (newest, _) = app.store.search_links(&LinkSearch::default(), Page { offset: 0, limit: 1 }).await.unwrap();
        assert_eq!(newest[0].link.title.as_deref(), Some("Plain"));

        let html = get_page(&app, "/dashboard/links?q=alpha", Some(&session)).await.text().await.unwrap();
        assert!(html.contains(r#"data-code="alpha-1""#));
        assert!(!html.contains("Winter SALE"));
        assert!(html.contains("1 in all"), "{html}");
    }

    async fn users_are_listed_with_their_links(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let response = post_as(&app, &session, "/dashboard/users", &[("username", "ada"), ("email", "ada@example.com")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let user = app.store.users(Page { offset: 0, limit: 10 }).await.unwrap().remove(0);
        let user_id = user.id.to_string();
        create_link(&app, &session, &[("original_url", "https://example.com/ada"), ("short_code", "ada-1"), ("user_id", &user_id)]).await;
        let (summaries, total) = app.store.user_summaries(Page { offset: 0, limit: 10 }).await.unwrap();
        assert_eq!((total, summaries[0].links), (1, 1));
        let html = get_page(&app, &format!("/dashboard/users/{}", user.id), Some(&session)).await.text().await.unwrap();
        assert!(html.contains(r#"data-code="ada-1""#));
        let list = get_page(&app, "/dashboard/users", Some(&session)).await.text().await.unwrap();
        assert!(list.contains(">ada</a>"));

        let taken = post_as(&app, &session, "/dashboard/users", &[("username", "ada"), ("email", "other@example.com")]).await;
        assert_eq!(taken.status(), StatusCode::CONFLICT);
        assert!(taken.text().await.unwrap().contains("already taken"));
        let invalid = post_as(&app, &session, "/dashboard/users", &[("username", "bob"), ("email", "nope")]).await;
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(invalid.text().await.unwrap().contains("is not an e-mail address"));
    }

    async fn managed_links_are_read_only(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let managed = ManagedLink {
            owner: "marketing/launch".to_owned(),
            short_code: "launch".to_owned(),
            original_url: "https://example.com/launch".to_owned(),
            redirect_status: 302,
            expires_at: None,
            max_visits: None,
            is_active: true,
        };
        app.state.links.apply_managed(&managed, Utc::now()).await.unwrap();
        let id = app.store.link_by_code("launch").await.unwrap().unwrap().id;
        let html = get_page(&app, &format!("/dashboard/links/{id}"), Some(&session)).await.text().await.unwrap();
        assert!(html.contains("ShortLink marketing/launch"), "{html}");
        assert!(!html.contains("/deactivate"), "no actions on a managed link");
        let list = get_page(&app, "/dashboard/links", Some(&session)).await.text().await.unwrap();
        assert!(list.contains("badge managed"));
        for action in ["deactivate", "delete"] {
            let response = post_as(&app, &session, &format!("/dashboard/links/{id}/{action}"), &[]).await;
            assert_eq!(response.status(), StatusCode::CONFLICT);
            assert!(response.text().await.unwrap().contains("managed by the ShortLink marketing/launch"));
        }
        let edit = get_page(&app, &format!("/dashboard/links/{id}/edit"), Some(&session)).await;
        assert_eq!(edit.status(), StatusCode::CONFLICT);
        assert!(app.store.link(id).await.unwrap().unwrap().is_active);
    }

    async fn deactivating_stops_the_redirect_and_reactivating_restores_it(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        let id = create_link(&app, &session, &[("original_url", "https://example.com/x"), ("short_code", "toggle")]).await;
        assert_eq!(app.get("/toggle").await.status(), StatusCode::FOUND);
        let response = post_as(&app, &session, &format!("/dashboard/links/{id}/deactivate"), &[]).await;
        assert_eq!(response.headers()[LOCATION], format!("/dashboard/links/{id}?notice=deactivated"));
        assert_eq!(app.get("/toggle").await.status(), StatusCode::NOT_FOUND);
        let html = get_page(&app, "/dashboard/links", Some(&session)).await.text().await.unwrap();
        assert!(html.contains("state-deactivated"));
        post_as(&app, &session, &format!("/dashboard/links/{id}/reactivate"), &[]).await;
        assert_eq!(app.get("/toggle").await.status(), StatusCode::FOUND);

        // Editing sets every field; blanks clear the optional ones.
        let response = post_as(&app, &session, &format!("/dashboard/links/{id}/edit"), &[
            ("original_url", "https://example.com/y"),
            ("title", "Edited"),
            ("expires_at", "2030-01-31T18:00"),
            ("max_visits", "5"),
            ("redirect_status", "308"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let link = app.store.link(id).await.unwrap().unwrap();
        assert_eq!(link.original_url, "https://example.com/y");
        assert_eq!(link.max_visits, Some(5));
        assert_eq!(link.redirect_status, 308);
        assert_eq!(link.expires_at.unwrap().to_rfc3339(), "2030-01-31T18:00:00+00:00");

        let response = post_as(&app, &session, &format!("/dashboard/links/{id}/delete"), &[]).await;
        assert_eq!(response.headers()[LOCATION], "/dashboard/links?notice=deleted");
        assert_eq!(app.get("/toggle").await.status(), StatusCode::NOT_FOUND);
        assert!(app.store.link(id).await.unwrap().is_none());
    }

    async fn failures_are_pages_with_the_apis_status(app) {
        let key = create_key(&app).await;
        let session = sign_in(&app, &key).await;
        create_link(&app, &session, &[("original_url", "https://example.com/1"), ("short_code", "taken")]).await;
        let cases: [FormCase; 6] = [
            (&[("original_url", "https://example.com/2"), ("short_code", "taken")], StatusCode::CONFLICT, "is taken by another link"),
            (&[("original_url", "javascript:alert(1)")], StatusCode::UNPROCESSABLE_ENTITY, "Target URL: must be an http or https URL"),
            (&[("original_url", "https://example.com"), ("short_code", "dashboard")], StatusCode::UNPROCESSABLE_ENTITY, "Short code: is reserved"),
            (&[("original_url", "https://example.com"), ("max_visits", "ten")], StatusCode::BAD_REQUEST, "Visit limit"),
            (&[("original_url", "https://example.com"), ("user_id", "424242")], StatusCode::UNPROCESSABLE_ENTITY, "no user has id 424242"),
            (&[("original_url", "https://example.com"), ("expires_at", "soon")], StatusCode::BAD_REQUEST, "Expires at"),
        ];
        for (fields, status, message) in cases {
            let response = post_as(&app, &session, "/dashboard/links", fields).await;
            assert_eq!(response.status(), status, "{fields:?}");
            let html = response.text().await.unwrap();
            assert!(html.contains(message), "{fields:?}: {html}");
            assert!(html.contains("role=\"alert\""));
            assert!(html.contains(r#"id="original_url""#), "the form is shown again");
        }
        assert_eq!(link_count(&app).await, 1);
        let missing = get_page(&app, "/dashboard/links/424242", Some(&session)).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.text().await.unwrap().contains("No link has id 424242."));
        assert_eq!(get_page(&app, "/dashboard/links/abc", Some(&session)).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get_page(&app, "/dashboard/users/424242", Some(&session)).await.status(), StatusCode::NOT_FOUND);

        // The API keeps `dashboard` for itself too, and redirects still work.
        let user = app.create_user("owner").await;
        let response = app.post("/urls", json!({"user_id": user, "original_url": "https://example.com", "short_code": "dashboard"})).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.get("/taken").await.status(), StatusCode::FOUND);

        // Requests are counted under their route template, never the raw path.
        let metrics = app.state.metrics.render();
        assert!(metrics.contains(r#"route="/dashboard/links/{id}""#), "{metrics}");
        assert!(!metrics.contains("/dashboard/links/424242"));

        // An unreachable database is a 503 page.
        app.store.close().await;
        let down = get_page(&app, "/dashboard/links", Some(&session)).await;
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.headers()["retry-after"], "5");
        assert!(down.text().await.unwrap().contains("The database is unavailable"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_get_a_429_page() {
    let app = common::spawn_with(Backend::Sqlite, |options| {
        options.rate_limits.api = RateLimit::new(0.05, 3);
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = get_page(&app, "/dashboard/sign-in", None).await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            let html = response.text().await.unwrap();
            assert!(
                html.contains("Too many requests came from your address"),
                "{html}"
            );
        }
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Assets are not counted: a page and its assets are one visit.
    let css = format!(
        "/dashboard/assets/{}/app.css",
        kadi::dashboard::asset_version()
    );
    assert_eq!(app.get(&css).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_behind_https() {
    let app = common::spawn_with(Backend::Sqlite, |options| {
        options.public_url = "https://sho.rt.test".parse().unwrap();
    })
    .await;
    let key = create_key(&app).await;
    let response = submit_key(&app, &key).await;
    let cookie = set_cookie(&response, "kadi_session").expect("session cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}
