//! The `kadi_*` metrics listed in `docs/monitoring.md` are exactly the metric
//! families the service exposes on `/metrics`, with the same types and label
//! names: a metric added without documentation, or documented but gone,
//! fails here.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

const MONITORING_DOC: &str = include_str!("../../docs/monitoring.md");

/// What the documentation or the exposition says about one metric family.
#[derive(Debug, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Rows of the Markdown tables whose first cell is a `kadi_` metric of the
/// service (not of the controller).
fn documented_families(doc: &str) -> BTreeMap<String, Family> {
    let mut families = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let Some(name) = cells
            .first()
            .and_then(|cell| cell.strip_prefix('`'))
            .and_then(|cell| cell.strip_suffix('`'))
        else {
            continue;
        };
        // Recording rules (`kadi:...`) and the controller's metrics are
        // listed too, in other tables.
        if !name.starts_with("kadi_") || name.starts_with("kadi_controller") || name.contains(':') {
            continue;
        }
        assert!(
            cells.len() >= 4,
            "row of {name} needs metric, type, labels, meaning"
        );
        let labels = cells[2]
            .split(',')
            .map(|label| label.trim().trim_matches('`'))
            .filter(|label| !label.is_empty() && *label != "–" && *label != "-")
            .map(str::to_owned)
            .collect();
        let previous = families.insert(
            name.to_owned(),
            Family {
                kind: cells[1].to_owned(),
                labels,
            },
        );
        assert!(previous.is_none(), "{name} is documented twice");
    }
    families
}

/// Metric families of a text exposition, with the label names their samples
/// carry (`le` of histogram buckets aside).
fn exposed_families(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .expect("TYPE line has a name and a type");
            families.insert(
                name.to_owned(),
                Family {
                    kind: kind.trim().to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        }
    }
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let series = line.split_once(' ').map_or(line, |(series, _)| series);
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
            .unwrap_or(name);
        let entry = families
            .get_mut(family)
            .unwrap_or_else(|| panic!("sample {name} has no TYPE line"));
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (label, _) = pair.split_once('=').expect("label=value");
            if label != "le" {
                entry.labels.insert(label.to_owned());
            }
        }
    }
    families
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_metrics_are_the_exposed_ones() {
    let app = common::spawn(kadi::store::Backend::Sqlite).await;

    // A served redirect, an unknown code and an API call, so that the
    // labelled families have samples to show.
    let user = app.create_user("metrics_doc").await;
    let link = app
        .create_url(user, "https://example.com/monitoring", json!({}))
        .await;
    let code = link["short_code"].as_str().expect("short code");
    let served = app.get(&format!("/{code}")).await;
    assert!(served.status().is_redirection(), "{}", served.status());
    assert_eq!(
        app.get("/no-such-code").await.status(),
        StatusCode::NOT_FOUND
    );

    let response = kadi::http::metrics_app(app.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .expect("metrics response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("metrics body");
    let text = String::from_utf8(body.to_vec()).expect("UTF-8 exposition");

    let documented = documented_families(MONITORING_DOC);
    let exposed = exposed_families(&text);
    assert!(
        exposed.keys().all(|name| name.starts_with("kadi_")),
        "every metric of kadi is prefixed kadi_: {:?}",
        exposed.keys().collect::<Vec<_>>()
    );
    let undocumented: Vec<_> = exposed
        .keys()
        .filter(|n| !documented.contains_key(*n))
        .collect();
    let missing: Vec<_> = documented
        .keys()
        .filter(|n| !exposed.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "docs/monitoring.md and /metrics disagree\n\
         exposed but not documented: {undocumented:?}\n\
         documented but not exposed: {missing:?}\n\n{text}"
    );
    for (name, family) in &documented {
        assert_eq!(
            &exposed[name], family,
            "type or labels of {name} in docs/monitoring.md"
        );
    }

    app.stop().await;
}

#[test]
fn the_table_parser_reads_type_and_labels() {
    let doc = "| metric | type | labels | meaning |\n\
               | --- | --- | --- | --- |\n\
               | `kadi_a_total` | counter | `result`, `tier` | A. |\n\
               | `kadi_b` | gauge | – | B. |\n\
               | `kadi_controller_c` | gauge | – | Not the service's. |\n\
               | `kadi_controller:c:rate5m` | – | A recording rule. |\n\
               | `kadi:a:rate5m` | – | A recording rule. |\n\
               | `up` | gauge | `job` | Not Kadi's. |\n";
    let families = documented_families(doc);
    assert_eq!(
        families.keys().collect::<Vec<_>>(),
        ["kadi_a_total", "kadi_b"]
    );
    assert_eq!(families["kadi_a_total"].kind, "counter");
    assert_eq!(
        families["kadi_a_total"].labels,
        BTreeSet::from(["result".to_owned(), "tier".to_owned()])
    );
    assert!(families["kadi_b"].labels.is_empty());
}

#[test]
fn the_exposition_parser_folds_histogram_series_into_their_family() {
    let text = "# HELP kadi_h_seconds H.\n# TYPE kadi_h_seconds histogram\n\
                kadi_h_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n\
                kadi_h_seconds_bucket{route=\"/x\",le=\"+Inf\"} 1\n\
                kadi_h_seconds_sum{route=\"/x\"} 0.05\n\
                kadi_h_seconds_count{route=\"/x\"} 1\n\
                # HELP kadi_g G.\n# TYPE kadi_g gauge\nkadi_g 3\n";
    let families = exposed_families(text);
    assert_eq!(families.len(), 2);
    assert_eq!(families["kadi_h_seconds"].kind, "histogram");
    assert_eq!(
        families["kadi_h_seconds"].labels,
        BTreeSet::from(["route".to_owned()])
    );
    assert!(families["kadi_g"].labels.is_empty());
}
