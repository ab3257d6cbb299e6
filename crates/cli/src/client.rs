//! The connection options of `docraft jobs` and `docraft hub` and the rendering they share;
//! the HTTP client itself is the server crate's [`docraft_server::client::Client`].

use anyhow::{Context, Result};
use clap::Args;
pub use docraft_server::client::{Client, ClientError, DEFAULT_SERVER};
pub use docraft_server::ids::is_id;
use serde_json::Value;

/// The connection options every `jobs` and `hub` command takes.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, value_name = "URL", env = "DOCRAFT_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The organization's API key (`dck_…`, printed by `docraft admin org create` or
    /// `docraft admin key create`).
    #[arg(long, value_name = "KEY", env = "DOCRAFT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the server's JSON object as returned (one document on one line), for scripts.
    #[arg(long)]
    pub json: bool,
}

impl Remote {
    /// A client of this server with this key.
    ///
    /// # Errors
    /// No key, or a server address that is not `http://…`.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.server, self.api_key.as_deref())?)
    }
}

/// Runs `future` on a runtime of its own (the rest of the CLI is synchronous).
///
/// # Errors
/// When the runtime cannot start, and `future`'s errors.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Prints a JSON value on one line.
pub fn print_json(v: &Value) {
    println!("{v}");
}

/// A field as text: strings as they are, numbers and the rest as JSON, `null` or absent as
/// `-`.
#[must_use]
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A number with at most `decimals` decimals (whole numbers as they are); other values as
/// [`text`] shows them.
#[must_use]
pub fn number(v: Option<&Value>, decimals: usize) -> String {
    match v {
        Some(Value::Number(n)) if !(n.is_i64() || n.is_u64()) => match n.as_f64() {
            Some(f) => format!("{f:.decimals$}"),
            None => n.to_string(),
        },
        other => text(other),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC); `-` when absent.
#[must_use]
pub fn time(v: Option<&Value>) -> String {
    match v.and_then(Value::as_i64) {
        Some(secs) => utc(secs),
        None => "-".to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
#[must_use]
pub fn utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `label: value` lines, the values aligned; pairs whose value is `-` are left out.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in fields {
        if v != "-" {
            println!("{:<width$} {v}", format!("{k}:"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_numbers() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59:59");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(number(Some(&serde_json::json!(1.172_598_1)), 4), "1.1726");
        assert_eq!(number(Some(&serde_json::json!(16)), 4), "16");
        assert_eq!(number(Some(&Value::Null), 4), "-");
    }
}
