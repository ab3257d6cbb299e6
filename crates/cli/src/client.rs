//! The HTTP client of `docraft jobs` and `docraft hub`: a thin wrapper over reqwest that
//! speaks the API of `docraft serve` (a bearer key, JSON bodies, OpenAI's error shape,
//! streamed uploads and downloads, server-sent events), and the rendering both share.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::StreamExt;
use reqwest::Url;
use reqwest::header::ACCEPT;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Where `docraft serve` listens by default (its `--listen`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8420";

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What a request to the server can fail with.
#[derive(Debug)]
pub enum ClientError {
    /// The server answered with an error (`{"error": {"message", "type", "param", "code"}}`).
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The parameter at fault, when the server names one.
        param: Option<String>,
    },
    /// Nothing answered at the server's address.
    Unreachable {
        /// The server's URL.
        server: String,
        /// The innermost cause (e.g. `Connection refused`).
        cause: String,
    },
    /// A request or its response broke off midway.
    Transport {
        /// The request.
        what: String,
        /// The innermost cause.
        cause: String,
    },
    /// The server's answer is not what this client expects (not JSON, a broken stream).
    Unexpected(String),
    /// Reading or writing a local file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api { message, param, .. } => {
                write!(f, "{message}")?;
                if let Some(p) = param {
                    write!(f, " (param: {p})")?;
                }
                Ok(())
            }
            Self::Unreachable { server, cause } => write!(
                f,
                "cannot reach the docraft server at {server} ({cause}); start it with `docraft serve`, \
                 or point --server (DOCRAFT_SERVER) at the address it listens on"
            ),
            Self::Transport { what, cause } => write!(f, "{what}: {cause}"),
            Self::Unexpected(message) => write!(f, "{message}"),
            Self::Io { path, cause } => write!(f, "{}: {cause}", path.display()),
        }
    }
}

impl std::error::Error for ClientError {}

/// The innermost error of a chain (the one that says what actually happened).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |cause| ClientError::Io { path: path.to_path_buf(), cause }
}

/// A client of one server with one organization's key.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    key: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `remote`'s server and key.
    ///
    /// # Errors
    /// When no API key is given, the URL is not an `http://` URL, or the HTTP client cannot
    /// be built.
    pub fn new(remote: &Remote) -> Result<Self> {
        let key = remote.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| {
            anyhow!(
                "no API key: pass --api-key KEY or set DOCRAFT_API_KEY (an organization's key, from \
                 `docraft admin org create NAME` or `docraft admin key create --org NAME`)"
            )
        })?;
        let base = Url::parse(&remote.server).with_context(|| format!("--server {:?}: not a URL", remote.server))?;
        if base.scheme() != "http" || base.host_str().is_none() {
            bail!(
                "--server {:?}: expected http://HOST:PORT (docraft serve speaks plain HTTP; e.g. {DEFAULT_SERVER})",
                remote.server
            );
        }
        let http =
            reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().context("building the HTTP client")?;
        Ok(Self { base, key: key.to_string(), http })
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded).
    #[must_use]
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable {
                server: self.base.as_str().trim_end_matches('/').to_string(),
                cause: root_cause(e),
            }
        } else {
            ClientError::Transport { what: what.to_string(), cause: root_cause(e) }
        }
    }

    /// Sends `request` with the key; an answer that is not a success becomes
    /// [`ClientError::Api`].
    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.bearer_auth(&self.key).send().await.map_err(|e| self.transport(what, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    async fn json(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = self.send(what, request).await?;
        let text = response.text().await.map_err(|e| self.transport(what, &e))?;
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Unexpected(format!("{what}: the server's answer is not JSON ({e}): {}", snippet(&text)))
        })
    }

    /// `GET` the JSON object at `segments` with `query`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, ClientError> {
        let url = self.url(segments);
        let what = format!("GET {url}");
        self.json(&what, self.http.get(url).query(query)).await
    }

    /// `POST` `body` (or nothing) as JSON to `segments`; the JSON answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> Result<Value, ClientError> {
        let url = self.url(segments);
        let what = format!("POST {url}");
        let request = self.http.post(url);
        let request = match body {
            Some(b) => request.json(b),
            None => request,
        };
        self.json(&what, request).await
    }

    /// `DELETE` `segments`; the JSON answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn delete(&self, segments: &[&str]) -> Result<Value, ClientError> {
        let url = self.url(segments);
        let what = format!("DELETE {url}");
        self.json(&what, self.http.delete(url)).await
    }

    /// Uploads a file (`POST /v1/files`, multipart `purpose` and `file`), streamed from disk;
    /// the server's file object.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the file cannot be read, the others of [`ClientError`].
    pub async fn upload(&self, path: &Path, purpose: &str) -> Result<Value, ClientError> {
        let file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
        let len = file.metadata().await.map_err(io_error(path))?.len();
        let name = path.file_name().map_or_else(|| "dataset.jsonl".to_string(), |n| n.to_string_lossy().into_owned());
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let form = Form::new()
            .text("purpose", purpose.to_string())
            .part("file", Part::stream_with_length(body, len).file_name(name));
        let url = self.url(&["v1", "files"]);
        let what = format!("POST {url}");
        self.json(&what, self.http.post(url).multipart(form)).await
    }

    /// Downloads `segments` into the file `dest` (written as `dest.part`, then renamed);
    /// the bytes written.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the file cannot be written, the others of [`ClientError`].
    pub async fn download(&self, segments: &[&str], dest: &Path) -> Result<u64, ClientError> {
        let url = self.url(segments);
        let what = format!("GET {url}");
        let response = self.send(&what, self.http.get(url)).await?;
        let mut part = dest.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let written = self.write_body(&what, response, &part).await;
        let renamed = match written {
            Ok(n) => tokio::fs::rename(&part, dest).await.map(|()| n).map_err(io_error(dest)),
            Err(e) => Err(e),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        renamed
    }

    async fn write_body(&self, what: &str, response: reqwest::Response, path: &Path) -> Result<u64, ClientError> {
        let mut out = tokio::fs::File::create(path).await.map_err(io_error(path))?;
        let mut body = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(what, &e))?;
            out.write_all(&chunk).await.map_err(io_error(path))?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(io_error(path))?;
        out.sync_all().await.map_err(io_error(path))?;
        Ok(written)
    }

    /// Reads the server-sent events of `segments` (with `query`), calling `on_event` with
    /// each `data:` object as it arrives, until `data: [DONE]`.
    ///
    /// # Errors
    /// [`ClientError`]; a stream that ends before `[DONE]` or sends an `error` event is
    /// [`ClientError::Unexpected`]; `on_event`'s errors.
    pub async fn stream(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        mut on_event: impl FnMut(Value) -> Result<()>,
    ) -> Result<()> {
        let url = self.url(segments);
        let what = format!("GET {url}");
        let response = self.send(&what, self.http.get(url).query(query).header(ACCEPT, "text/event-stream")).await?;
        let mut body = response.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(&what, &e))?;
            for message in parser.push(&chunk) {
                match message {
                    SseMessage::Done => return Ok(()),
                    SseMessage::Error(text) => {
                        return Err(
                            ClientError::Unexpected(format!("{what}: the server's stream failed: {text}")).into()
                        );
                    }
                    SseMessage::Data(text) => {
                        let value: Value = serde_json::from_str(&text).map_err(|e| {
                            ClientError::Unexpected(format!("{what}: an event is not JSON ({e}): {}", snippet(&text)))
                        })?;
                        on_event(value)?;
                    }
                }
            }
        }
        Err(ClientError::Unexpected(format!("{what}: the event stream ended before [DONE] (did the server stop?)"))
            .into())
    }
}

/// The error a failed answer carries, in OpenAI's shape or, failing that, its text.
async fn api_error(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let error = body.as_ref().and_then(|b| b.get("error"));
    let field = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
    let message = field("message").unwrap_or_else(|| {
        let t = text.trim();
        if t.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { snippet(t) }
    });
    ClientError::Api { status: status.as_u16(), message, param: field("param") }
}

/// The start of a long text, for error messages.
fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// One message of a server-sent events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SseMessage {
    /// A `data:` payload (lines joined with `\n`).
    Data(String),
    /// `data: [DONE]`: the stream is over.
    Done,
    /// An `event: error` message, with its data.
    Error(String),
}

/// An incremental parser of `text/event-stream`: bytes in, complete messages out.
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Adds bytes; returns the messages they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = self.event.take();
                if let Some(data) = self.data.take() {
                    out.push(match event.as_deref() {
                        Some("error") => SseMessage::Error(data),
                        _ if data == "[DONE]" => SseMessage::Done,
                        _ => SseMessage::Data(data),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment (keep-alive)
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                _ => {} // id, retry
            }
        }
        out
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

/// Whether `s` is an id the server makes with `prefix` (`prefix` + 24 letters and digits).
#[must_use]
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sse_messages_across_chunks_comments_and_done() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: ftevent-1\nda").is_empty());
        assert_eq!(p.push(b"ta: {\"a\":1}\r\n\r\n"), [SseMessage::Data("{\"a\":1}".into())]);
        assert_eq!(
            p.push(b"data:x\ndata: y\n\nevent: error\ndata: the event store failed\n\ndata: [DONE]\n\n"),
            [SseMessage::Data("x\ny".into()), SseMessage::Error("the event store failed".into()), SseMessage::Done]
        );
    }

    #[test]
    fn ids_and_times() {
        assert!(is_id("file-abcdefghijklmnopqrstuvwx", "file-"));
        assert!(!is_id("file-abc", "file-"));
        assert!(!is_id("train.jsonl", "file-"));
        assert!(!is_id("file-abcdefghijklmnopqrstu/.x", "file-"));
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59:59");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(number(Some(&serde_json::json!(1.172_598_1)), 4), "1.1726");
        assert_eq!(number(Some(&serde_json::json!(16)), 4), "16");
        assert_eq!(number(Some(&Value::Null), 4), "-");
    }

    #[test]
    fn default_server_is_where_serve_listens() {
        assert_eq!(DEFAULT_SERVER, format!("http://{}", docraft_server::config::DEFAULT_LISTEN));
    }

    #[test]
    fn urls_encode_segments_under_the_base() {
        let remote = Remote { server: "http://127.0.0.1:9/api/".into(), api_key: Some("k".into()), json: false };
        let c = Client::new(&remote).unwrap();
        assert_eq!(c.url(&["hub", "models", "ft:a:b/c"]).as_str(), "http://127.0.0.1:9/api/hub/models/ft:a:b%2Fc");
        let none = Remote { api_key: None, ..remote.clone() };
        assert!(Client::new(&none).unwrap_err().to_string().contains("DOCRAFT_API_KEY"));
        let https = Remote { server: "https://x".into(), ..remote };
        assert!(Client::new(&https).is_err());
    }
}
