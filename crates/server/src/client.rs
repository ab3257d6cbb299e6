//! A client of `docraft serve` for Rust programs and the `docraft jobs` / `docraft hub`
//! commands: a bearer key, JSON bodies, OpenAI's error shape ([`ClientError::Api`]), streamed
//! uploads and downloads, and server-sent events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), docraft_server::client::ClientError> {
//! use docraft_server::client::Client;
//!
//! let client = Client::new("http://127.0.0.1:8420", Some("dck_…"))?;
//! let jobs = client.get(&["v1", "fine_tuning", "jobs"], &[]).await?;
//! println!("{jobs}");
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// What a request to the server can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error (`{"error": {"message", "type", "param", "code"}}`).
    #[error("{message}{}", param.as_ref().map(|p| format!(" (param: {p})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The parameter at fault, when the server names one.
        param: Option<String>,
    },
    /// Nothing answered at the server's address.
    #[error(
        "cannot reach the docraft server at {server} ({cause}); start it with `docraft serve`, \
         or point --server (DOCRAFT_SERVER) at the address it listens on"
    )]
    Unreachable {
        /// The server's URL.
        server: String,
        /// The innermost cause (e.g. `Connection refused`).
        cause: String,
    },
    /// A request or its response broke off midway.
    #[error("{what}: {cause}")]
    Transport {
        /// The request.
        what: String,
        /// The innermost cause.
        cause: String,
    },
    /// The server's answer is not what this client expects (not JSON, a broken stream).
    #[error("{0}")]
    Unexpected(String),
    /// The client cannot be set up: no API key, a server address that is not `http://…`.
    #[error("{0}")]
    Setup(String),
    /// Reading or writing a local file failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
}

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
    /// A client of the server at `server` (`http://HOST:PORT`) with an organization's key.
    ///
    /// # Errors
    /// [`ClientError::Setup`] when no API key is given, the URL is not an `http://` URL, or
    /// the HTTP client cannot be built.
    pub fn new(server: &str, api_key: Option<&str>) -> Result<Self, ClientError> {
        let key = api_key.map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| {
            ClientError::Setup(
                "no API key: pass --api-key KEY or set DOCRAFT_API_KEY (an organization's key, from \
                 `docraft admin org create NAME` or `docraft admin key create --org NAME`)"
                    .into(),
            )
        })?;
        let base =
            Url::parse(server).map_err(|e| ClientError::Setup(format!("--server {server:?}: not a URL ({e})")))?;
        if base.scheme() != "http" || base.host_str().is_none() {
            return Err(ClientError::Setup(format!(
                "--server {server:?}: expected http://HOST:PORT (docraft serve speaks plain HTTP; e.g. {DEFAULT_SERVER})"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Setup(format!("building the HTTP client: {e}")))?;
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
    pub async fn stream<E: From<ClientError>>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        mut on_event: impl FnMut(Value) -> Result<(), E>,
    ) -> Result<(), E> {
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
                            E::from(ClientError::Unexpected(format!(
                                "{what}: an event is not JSON ({e}): {}",
                                snippet(&text)
                            )))
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

/// An adapter downloaded and unpacked by [`Client::download_adapter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterDownload {
    /// The zip archive (`DIR/NAME.zip`).
    pub zip: PathBuf,
    /// Where its files were unpacked (`DIR/NAME/`).
    pub dir: PathBuf,
    /// The files unpacked.
    pub files: Vec<PathBuf>,
    /// Bytes downloaded.
    pub bytes: u64,
}

impl Client {
    /// Downloads the PEFT files of `adapter` (a hub adapter object; `name` when it lacks an
    /// id) as `dir/NAME.zip` and unpacks them into `dir/NAME/`.
    ///
    /// # Errors
    /// [`ClientError::Io`] for the local files or an archive entry whose path would leave the
    /// directory, the others of [`ClientError`].
    pub async fn download_adapter(
        &self,
        adapter: &Value,
        name: &str,
        dir: &Path,
    ) -> Result<AdapterDownload, ClientError> {
        let id = adapter.get("id").and_then(Value::as_str).unwrap_or(name);
        let stem = crate::models::file_stem(adapter.get("name").and_then(Value::as_str).unwrap_or(name));
        tokio::fs::create_dir_all(dir).await.map_err(io_error(dir))?;
        let zip = dir.join(format!("{stem}.zip"));
        let bytes = self.download(&["hub", "adapters", id, "download"], &zip).await?;
        let out = dir.join(&stem);
        let (z, o) = (zip.clone(), out.clone());
        let files = tokio::task::spawn_blocking(move || extract(&z, &o))
            .await
            .map_err(|e| ClientError::Unexpected(format!("extracting the adapter: {e}")))??;
        Ok(AdapterDownload { zip, dir: out, files, bytes })
    }
}

/// Extracts the zip archive `zip_path` into `dir` (entries whose path would leave `dir` are
/// refused); the files written.
fn extract(zip_path: &Path, dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let bad = |reason: String| ClientError::Io { path: zip_path.to_path_buf(), cause: std::io::Error::other(reason) };
    let file = std::fs::File::open(zip_path).map_err(io_error(zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(bad(format!("entry {i} has a path outside the archive's directory")));
        };
        let dest = dir.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_error(&dest))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut out = std::fs::File::create(&dest).map_err(io_error(&dest))?;
        std::io::copy(&mut entry, &mut out).map_err(io_error(&dest))?;
        written.push(dest);
    }
    Ok(written)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn archive(path: &Path, entries: &[(&str, &[u8])]) {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn extracts_stored_entries_and_refuses_paths_that_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("a.zip");
        archive(&zip, &[("adapter_config.json", b"{}"), ("adapter_model.safetensors", b"weights")]);
        let out = dir.path().join("a");
        let files = extract(&zip, &out).unwrap();
        assert_eq!(files, [out.join("adapter_config.json"), out.join("adapter_model.safetensors")]);
        assert_eq!(std::fs::read(out.join("adapter_model.safetensors")).unwrap(), b"weights");
        let evil = dir.path().join("evil.zip");
        archive(&evil, &[("../escaped", b"x")]);
        let e = extract(&evil, &dir.path().join("b")).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(!dir.path().join("escaped").exists());
    }

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
    fn default_server_is_where_serve_listens() {
        assert_eq!(DEFAULT_SERVER, format!("http://{}", crate::config::DEFAULT_LISTEN));
    }

    #[test]
    fn urls_encode_segments_under_the_base() {
        let c = Client::new("http://127.0.0.1:9/api/", Some("k")).unwrap();
        assert_eq!(c.url(&["hub", "models", "ft:a:b/c"]).as_str(), "http://127.0.0.1:9/api/hub/models/ft:a:b%2Fc");
        assert!(Client::new("http://127.0.0.1:9", None).unwrap_err().to_string().contains("DOCRAFT_API_KEY"));
        assert!(Client::new("https://x", Some("k")).is_err());
    }
}
