//! `kadi import`: loads the original service's CSV exports (users, urls,
//! events) with their ids. Rows already stored are skipped, so it is safe to
//! run twice; duplicates are reported, never fatal; id sequences end past the
//! largest imported id.

use std::collections::HashMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;

use crate::http::users::{check_email, check_username, parse_timestamp};
use crate::links::{LinkError, LinkService};
use crate::store::{ImportEvent, ImportLink, ImportUser, RowOutcome, StoreError};

/// Rows per transaction: large enough to amortise commits, small enough that
/// a failure loses little progress and locks are held briefly.
const BATCH_ROWS: usize = 500;

/// Failures of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: csv::Error,
    },
    /// A row is malformed; nothing of that file from this row on was stored.
    #[error("{path} line {line}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Line number, from 1 (the header).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("storing rows failed")]
    Store(#[from] StoreError),
    /// The link service failed.
    #[error("storing links failed")]
    Links(#[from] LinkError),
}

/// Counts of one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Rows read.
    pub read: usize,
    /// Rows stored now.
    pub inserted: usize,
    /// Rows that were already stored (a second run).
    pub already_present: usize,
    /// Rows skipped, each with its line and reason.
    pub skipped: Vec<(u64, String)>,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Users file.
    pub users: FileReport,
    /// Links file.
    pub urls: FileReport,
    /// Events file.
    pub events: FileReport,
}

/// Where the files are, and whether to draw progress.
#[derive(Debug, Default, Clone)]
pub struct ImportFiles<'a> {
    /// Users CSV.
    pub users: Option<&'a Path>,
    /// Links CSV.
    pub urls: Option<&'a Path>,
    /// Events CSV.
    pub events: Option<&'a Path>,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

#[derive(Deserialize)]
struct UserRecord {
    id: i64,
    username: String,
    email: String,
    created_at: String,
}

#[derive(Deserialize)]
struct UrlRecord {
    id: i64,
    user_id: i64,
    short_code: String,
    original_url: String,
    title: String,
    is_active: String,
    created_at: String,
    updated_at: String,
}

#[derive(Deserialize)]
struct EventRecord {
    id: i64,
    url_id: i64,
    user_id: String,
    event_type: String,
    timestamp: String,
    details: String,
}

/// Runs an import through the link service.
// Limitation: a NUL character in a title or in event details passes the row
// checks, but PostgreSQL cannot store it, so the import stops with a store
// error at that batch after the earlier batches were stored. Running it again
// once the file is fixed is safe: stored rows are skipped.
pub async fn import(
    links: &LinkService,
    files: ImportFiles<'_>,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    // Ids of the export that stand for another stored user (duplicates).
    let mut user_ids: HashMap<i64, i64> = HashMap::new();
    let store = links.store();

    if let Some(path) = files.users {
        let rows = read_rows(path, |_, r: UserRecord| {
            check_username(&r.username)?;
            check_email(&r.email)?;
            let created_at = timestamp(&r.created_at)?;
            Ok(ImportUser {
                id: r.id,
                username: r.username,
                email: r.email,
                created_at,
            })
        })?;
        let bar = progress(files.progress, "users", rows.len());
        for chunk in rows.chunks(BATCH_ROWS) {
            let batch: Vec<ImportUser> = chunk.iter().map(|(_, row)| row.clone()).collect();
            let outcome = store.import_users(&batch).await?;
            for ((line, row), outcome) in chunk.iter().zip(outcome) {
                if let RowOutcome::SameAs(id) = outcome {
                    user_ids.insert(row.id, id);
                }
                tally(&mut report.users, *line, outcome, || {
                    format!("user {:?} (id {})", row.username, row.id)
                });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }

    let map_user = |id: i64| *user_ids.get(&id).unwrap_or(&id);

    if let Some(path) = files.urls {
        let rows = read_rows(path, |_, r: UrlRecord| {
            Ok(ImportLink {
                id: r.id,
                user_id: map_user(r.user_id),
                short_code: r.short_code,
                original_url: r.original_url,
                title: Some(r.title).filter(|t| !t.is_empty()),
                is_active: boolean(&r.is_active)
                    .ok_or_else(|| format!("is_active {:?} is not a boolean", r.is_active))?,
                created_at: timestamp(&r.created_at)?,
                updated_at: timestamp(&r.updated_at)?,
            })
        })?;
        let bar = progress(files.progress, "urls", rows.len());
        for chunk in rows.chunks(BATCH_ROWS) {
            let batch: Vec<ImportLink> = chunk.iter().map(|(_, row)| row.clone()).collect();
            let outcome = links.import_links(&batch).await?;
            for ((line, row), outcome) in chunk.iter().zip(outcome) {
                tally(&mut report.urls, *line, outcome, || {
                    format!("url {} ({})", row.id, row.short_code)
                });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }

    if let Some(path) = files.events {
        let rows = read_rows(path, |_, r: EventRecord| {
            let user_id = match r.user_id.trim() {
                "" => None,
                text => Some(map_user(
                    text.parse()
                        .map_err(|_| format!("user_id {text:?} is not an id"))?,
                )),
            };
            let details: Value = match r.details.trim() {
                "" => Value::Object(Default::default()),
                text => {
                    serde_json::from_str(text).map_err(|e| format!("details is not JSON: {e}"))?
                }
            };
            if !details.is_object() {
                return Err("details is not a JSON object".into());
            }
            if r.event_type.trim().is_empty() {
                return Err("event_type is empty".into());
            }
            Ok(ImportEvent {
                id: r.id,
                url_id: r.url_id,
                user_id,
                event_type: r.event_type,
                timestamp: timestamp(&r.timestamp)?,
                details,
            })
        })?;
        let bar = progress(files.progress, "events", rows.len());
        for chunk in rows.chunks(BATCH_ROWS) {
            let batch: Vec<ImportEvent> = chunk.iter().map(|(_, row)| row.clone()).collect();
            let outcome = store.import_events(&batch).await?;
            for ((line, row), outcome) in chunk.iter().zip(outcome) {
                tally(&mut report.events, *line, outcome, || {
                    format!("event {}", row.id)
                });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }

    store.advance_id_sequences().await?;
    Ok(report)
}

fn tally(report: &mut FileReport, line: u64, outcome: RowOutcome, name: impl Fn() -> String) {
    report.read += 1;
    match outcome {
        RowOutcome::Inserted => report.inserted += 1,
        RowOutcome::AlreadyPresent => report.already_present += 1,
        RowOutcome::SameAs(id) => report.skipped.push((
            line,
            format!(
                "{} duplicates user {id}; its rows now belong to {id}",
                name()
            ),
        )),
        RowOutcome::Conflict(reason) => {
            report.skipped.push((line, format!("{}: {reason}", name())))
        }
    }
}

/// Reads every record of a CSV file with a header, converting each; the first
/// malformed record stops the import with its line number.
fn read_rows<R, T>(
    path: &Path,
    convert: impl Fn(u64, R) -> Result<T, String>,
) -> Result<Vec<(u64, T)>, ImportError>
where
    R: for<'de> Deserialize<'de>,
{
    let name = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .from_path(path)
        .map_err(|source| ImportError::Read {
            path: name.clone(),
            source,
        })?;
    let headers = reader
        .headers()
        .map_err(|source| ImportError::Read {
            path: name.clone(),
            source,
        })?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let malformed = |line: u64, reason: String| ImportError::Malformed {
            path: name.clone(),
            line,
            reason,
        };
        let record =
            record.map_err(|e| malformed(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let parsed: R = record
            .deserialize(Some(&headers))
            .map_err(|e| malformed(line, e.to_string()))?;
        let row = convert(line, parsed).map_err(|reason| malformed(line, reason))?;
        rows.push((line, row));
    }
    Ok(rows)
}

fn timestamp(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    parse_timestamp(text.trim()).ok_or_else(|| format!("{text:?} is not a timestamp"))
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Some(true),
        "false" | "0" | "f" | "no" => Some(false),
        _ => None,
    }
}

fn progress(enabled: bool, what: &'static str, len: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos}/{len} rows") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what);
    bar
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, file) in [
            ("users", &self.users),
            ("urls", &self.urls),
            ("events", &self.events),
        ] {
            writeln!(
                f,
                "{name}: {} read, {} imported, {} already present, {} skipped",
                file.read,
                file.inserted,
                file.already_present,
                file.skipped.len()
            )?;
            for (line, reason) in &file.skipped {
                writeln!(f, "  line {line}: {reason}")?;
            }
        }
        Ok(())
    }
}
