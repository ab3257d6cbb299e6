//! Database rows as documents: a `SELECT` over SQLite or PostgreSQL, each row one
//! [`Document`] whose text is its text columns and whose metadata are its other columns, so
//! search and chat can filter on them.
//!
//! The connection is read-only (SQLite opened `mode=ro` with `PRAGMA query_only`; PostgreSQL
//! in a `READ ONLY` transaction), only a single `SELECT`/`WITH` statement is accepted, and
//! reading stops at the row limit.
//!
//! ```no_run
//! use docraft_ingest::sql::SqlSource;
//!
//! # fn main() -> Result<(), docraft_ingest::Error> {
//! let rows = SqlSource::new("sqlite:///srv/tickets.db", "SELECT id, title, body, team FROM tickets")?
//!     .with_id_column("id")
//!     .with_text_columns(["title", "body"])
//!     .with_metadata_columns(["team"])
//!     .with_limit(10_000)
//!     .read()?;
//! println!("{} documents", rows.len());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use docraft_core::{DocFormat, Document};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyRow, install_default_drivers};
use sqlx::{Column, ConnectOptions, Connection, Row};

use crate::error::Error;

/// Rows read by default at most.
pub const DEFAULT_ROW_LIMIT: usize = 100_000;
/// Longest query text.
pub const MAX_QUERY_CHARS: usize = 10_000;

/// A `SELECT` whose rows become documents. Built with [`SqlSource::new`] and the `with_*`
/// setters; [`SqlSource::read`] checks the settings and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSource {
    url: String,
    query: String,
    id_column: Option<String>,
    text_columns: Vec<String>,
    metadata_columns: Vec<String>,
    limit: usize,
}

fn sql_err(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::Sql { source_name: redact_url(url), reason: reason.to_string() }
}

/// The URL without its password, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl SqlSource {
    /// A source reading `query` from the database at `url` (`sqlite://PATH` or
    /// `postgres://…`).
    ///
    /// # Errors
    /// [`Error::Sql`] for another scheme, an empty or overlong query, or one that is not a
    /// single `SELECT` or `WITH` statement.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Result<Self, Error> {
        let (url, query) = (url.into(), query.into());
        let scheme = url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(sql_err(&url, "use sqlite://PATH or postgres://USER@HOST/DB"));
        }
        let q = query.trim().trim_end_matches(';').trim();
        let first = q.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS {
            return Err(sql_err(&url, format!("the query must have 1 to {MAX_QUERY_CHARS} characters")));
        }
        if first != "select" && first != "with" {
            return Err(sql_err(&url, "only a SELECT (or WITH … SELECT) query is accepted"));
        }
        if q.contains(';') {
            return Err(sql_err(&url, "one statement only (no ';' inside the query)"));
        }
        Ok(Self {
            url,
            query: q.to_string(),
            id_column: None,
            text_columns: Vec::new(),
            metadata_columns: Vec::new(),
            limit: DEFAULT_ROW_LIMIT,
        })
    }

    /// The column that names each row (default: the row's position).
    #[must_use]
    pub fn with_id_column(mut self, column: impl Into<String>) -> Self {
        self.id_column = Some(column.into());
        self
    }

    /// The columns whose values make the text (default: every text column that is not the id
    /// or metadata).
    #[must_use]
    pub fn with_text_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.text_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The columns kept as metadata (default: every column that is not text).
    #[must_use]
    pub fn with_metadata_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.metadata_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Rows read at most (default [`DEFAULT_ROW_LIMIT`]).
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Reads the rows (blocking: it runs its own small runtime, so call it off an async
    /// executor's threads).
    ///
    /// # Errors
    /// [`Error::Sql`] naming the source (password hidden): the connection, the query, a named
    /// column the result lacks, a row without text.
    pub fn read(&self) -> Result<Vec<Document>, Error> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| sql_err(&self.url, e))?;
        rt.block_on(self.read_async())
    }

    async fn read_async(&self) -> Result<Vec<Document>, Error> {
        install_default_drivers();
        let sqlite = self.url.starts_with("sqlite:");
        let url = if sqlite {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}mode=ro", self.url.split("?mode=").next().unwrap_or(&self.url))
        } else {
            self.url.clone()
        };
        let options: AnyConnectOptions = url.parse().map_err(|e| sql_err(&self.url, e))?;
        let mut conn = options.connect().await.map_err(|e| sql_err(&self.url, e))?;
        if sqlite {
            sqlx::query("PRAGMA query_only = ON").execute(&mut conn).await.map_err(|e| sql_err(&self.url, e))?;
        }
        let mut tx = conn.begin().await.map_err(|e| sql_err(&self.url, e))?;
        if !sqlite {
            sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await.map_err(|e| sql_err(&self.url, e))?;
        }
        let mut docs = Vec::new();
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(self.query.clone())).fetch(&mut *tx);
            let mut n = 0usize;
            while let Some(row) = rows.try_next().await.map_err(|e| sql_err(&self.url, e))? {
                n += 1;
                if n > self.limit {
                    break;
                }
                if n == 1 {
                    self.check_columns(&row)?;
                }
                docs.push(self.document(&row, n)?);
            }
        }
        tx.rollback().await.map_err(|e| sql_err(&self.url, e))?;
        Ok(docs)
    }

    fn check_columns(&self, row: &AnyRow) -> Result<(), Error> {
        let names: Vec<&str> = row.columns().iter().map(Column::name).collect();
        for c in self.id_column.iter().chain(&self.text_columns).chain(&self.metadata_columns) {
            if !names.contains(&c.as_str()) {
                return Err(sql_err(&self.url, format!("the query has no column {c:?} (it has {})", names.join(", "))));
            }
        }
        Ok(())
    }

    fn document(&self, row: &AnyRow, n: usize) -> Result<Document, Error> {
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, c) in row.columns().iter().enumerate() {
            values.insert(c.name().to_string(), value(row, i));
            order.push(c.name().to_string());
        }
        let id = match &self.id_column {
            Some(c) => values.get(c).map(plain).unwrap_or_default(),
            None => n.to_string(),
        };
        let is_text = |c: &str| {
            if self.text_columns.is_empty() {
                Some(c) != self.id_column.as_deref()
                    && !self.metadata_columns.iter().any(|m| m == c)
                    && values.get(c).is_some_and(Value::is_string)
            } else {
                self.text_columns.iter().any(|t| t == c)
            }
        };
        let text: Vec<String> = order
            .iter()
            .filter(|c| is_text(c))
            .filter_map(|c| values.get(c).map(plain))
            .filter(|v| !v.trim().is_empty())
            .collect();
        if text.is_empty() {
            return Err(sql_err(&self.url, format!("row {id}: no text in its text columns")));
        }
        let text = text.join("\n\n");
        let source = format!("row {id}");
        let mut doc = Document::new(source, DocFormat::Text, text.as_bytes(), text.clone());
        for c in &order {
            let keep = if self.metadata_columns.is_empty() { !is_text(c) } else { self.metadata_columns.contains(c) };
            if keep && let Some(v) = values.get(c) {
                doc.metadata.fields.insert(c.clone(), v.clone());
            }
        }
        doc.metadata.fields.insert("row_id".into(), Value::String(id));
        doc.metadata.language = docraft_core::guess_language(&doc.text);
        Ok(doc)
    }
}

/// A column's value as JSON: text, integer, float or boolean (`null` for NULL and types
/// without a plain value).
fn value(row: &AnyRow, i: usize) -> Value {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.map_or(Value::Null, Value::String);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    Value::Null
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn db() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            for q in [
                "CREATE TABLE tickets (id INTEGER PRIMARY KEY, title TEXT, body TEXT, team TEXT, hours REAL)",
                "INSERT INTO tickets VALUES (1, 'Printer', 'The printer on floor 2 jams.', 'it', 1.5)",
                "INSERT INTO tickets VALUES (2, 'Vacaciones', 'Las vacaciones se piden con un mes de antelación.', 'rrhh', 0.5)",
                "INSERT INTO tickets VALUES (3, 'Badge', 'Lost badges are replaced at reception.', 'it', 2.0)",
            ] {
                sqlx::query(q).execute(&mut c).await.unwrap();
            }
        });
        (dir, format!("sqlite://{}", path.display()))
    }

    #[test]
    fn rows_become_documents_with_their_columns_as_metadata() {
        let (_d, url) = db();
        let docs = SqlSource::new(&url, "SELECT id, title, body, team, hours FROM tickets ORDER BY id")
            .unwrap()
            .with_id_column("id")
            .with_text_columns(["title", "body"])
            .with_metadata_columns(["team", "hours"])
            .read()
            .unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].text, "Vacaciones\n\nLas vacaciones se piden con un mes de antelación.");
        assert_eq!(docs[1].metadata.fields["team"], "rrhh");
        assert_eq!(docs[1].metadata.fields["row_id"], "2");
        assert_eq!(docs[1].metadata.language.as_deref(), Some("es"));
        assert_eq!(docs[0].metadata.fields["hours"], 1.5);
        assert_ne!(docs[0].id, docs[2].id);
        let limited = SqlSource::new(&url, "SELECT * FROM tickets").unwrap().with_limit(2).read().unwrap();
        assert_eq!(limited.len(), 2);
        // Default columns: text columns are the string ones, the rest metadata.
        assert!(limited[0].text.contains("Printer") && limited[0].metadata.fields.contains_key("hours"));
    }

    #[test]
    fn writes_and_other_statements_are_refused() {
        let (_d, url) = db();
        for q in ["DELETE FROM tickets", "SELECT 1; DELETE FROM tickets", "", "PRAGMA table_info(tickets)"] {
            assert!(SqlSource::new(&url, q).is_err(), "{q}");
        }
        // A WITH that writes is stopped by the read-only connection.
        let e = SqlSource::new(&url, "WITH x AS (SELECT 1) DELETE FROM tickets").unwrap().read().unwrap_err();
        assert_eq!(e.kind(), "sql");
        let n = SqlSource::new(&url, "SELECT * FROM tickets").unwrap().read().unwrap().len();
        assert_eq!(n, 3, "a row was deleted");
        let e = SqlSource::new(&url, "SELECT id, body FROM tickets")
            .unwrap()
            .with_text_columns(["nope"])
            .read()
            .unwrap_err();
        assert!(e.to_string().contains("no column \"nope\""), "{e}");
        assert!(SqlSource::new("mysql://h/db", "SELECT 1").is_err());
        assert_eq!(redact_url("postgres://bob:secret@db:5432/x"), "postgres://bob:***@db:5432/x");
    }
}
