//! The server's settings. Every default lives here, in [`ServerConfig::default`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the server listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";
/// The data directory by default (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "docraft-data";
/// The SQLite database's file name inside the data directory.
pub const DATABASE_FILE: &str = "docraft.db";
/// Largest upload by default: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// Longest line of a fine-tune file by default: 1 MiB (OpenAI's longest example, 16,385
/// tokens, is about 64 KiB of text).
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;
/// Time limit of a request that is not an upload.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence inside an upload's body before it is dropped.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Database connections by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// Fine-tuning jobs trained at once by default (`--workers`).
pub const DEFAULT_WORKERS: usize = 1;
/// How long a worker's claim on a job lasts without a heartbeat; a job whose worker died is
/// taken up again once it runs out.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How often a worker renews its lease, stores new events and checks for cancel/pause.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// How often an idle worker looks for a job (it is also woken when one is created).
pub const DEFAULT_POLL: Duration = Duration::from_secs(2);
/// Largest document of a collection by default: 100 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 100 << 20;
/// Bytes of documents an organization may keep by default: 10 GiB.
pub const DEFAULT_MAX_ORG_DOCUMENT_BYTES: i64 = 10 << 30;
/// Documents ingested at once by default.
pub const DEFAULT_DOCUMENT_WORKERS: usize = 1;
/// Most rows one SQL source may add by default.
pub const DEFAULT_MAX_SQL_ROWS: usize = 100_000;
/// Dataset jobs run at once by default.
pub const DEFAULT_DATASET_WORKERS: usize = 1;
/// Most jobs an organization may have waiting or running at once.
pub const DEFAULT_MAX_ACTIVE_JOBS_PER_ORG: i64 = 16;
/// Time limit of a chat completion that is not streamed (generation on a CPU is slow; a
/// stream has no limit once its first chunk is sent).
pub const DEFAULT_CHAT_TIMEOUT: Duration = Duration::from_secs(600);

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Data directory: the SQLite database (by default) and every organization's files under
    /// `orgs/<org-id>/`.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; `None`: `sqlite://DATA/docraft.db`.
    pub database_url: Option<String>,
    /// Largest upload, in bytes (larger bodies get 413).
    pub max_upload_bytes: u64,
    /// Longest line of a fine-tune file, in bytes.
    pub max_line_bytes: u64,
    /// Time limit of a request that is not an upload.
    pub request_timeout: Duration,
    /// Longest silence inside an upload's body.
    pub upload_idle_timeout: Duration,
    /// Database connections.
    pub max_connections: u32,
    /// Fine-tuning jobs trained at once by this process (0: API only).
    pub workers: usize,
    /// Threads each training job computes on; `None`: the cores less one, shared among the
    /// workers (at least one), so the API keeps answering while jobs train.
    pub train_threads: Option<usize>,
    /// How long a worker's claim on a job lasts without a heartbeat.
    pub lease: Duration,
    /// How often a worker renews its lease, stores new events and checks for cancel/pause.
    pub heartbeat: Duration,
    /// How often an idle worker looks for a job.
    pub poll: Duration,
    /// Where the registry's base models are (`DIR/<name>/<file>.gguf`); `None`:
    /// [`docraft_core::models_dir`].
    pub models_dir: Option<PathBuf>,
    /// The embedding model new collections are indexed with: a USE-m3 directory as
    /// `scripts/setup.sh` converts it, or a BERT-style ONNX model directory (all-MiniLM-L6-v2);
    /// `None`: the default, [`docraft_index::default_model_dir`]. A collection keeps the model
    /// its vectors were made with: changing this later leaves existing collections searchable.
    pub embedder: Option<PathBuf>,
    /// Most jobs an organization may have waiting or running at once (429 beyond).
    pub max_active_jobs_per_org: i64,
    /// Largest document of a collection, in bytes (413 beyond).
    pub max_document_bytes: u64,
    /// Bytes of documents an organization may keep (429 beyond).
    pub max_org_document_bytes: i64,
    /// Time one document may take to read and chunk before it is marked failed.
    pub document_timeout: Duration,
    /// Documents ingested at once by this process (0: none).
    pub document_workers: usize,
    /// Dataset jobs run at once by this process (0: none).
    pub dataset_workers: usize,
    /// The directory SQLite sources of collections may be read from (`None`: no SQLite
    /// sources).
    pub sql_dir: Option<PathBuf>,
    /// Most rows one SQL source may add.
    pub max_sql_rows: usize,
    /// Time limit of `POST /v1/chat/completions` until its response (or first stream chunk).
    pub chat_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: DEFAULT_WORKERS,
            train_threads: None,
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_HEARTBEAT,
            poll: DEFAULT_POLL,
            models_dir: None,
            embedder: None,
            max_active_jobs_per_org: DEFAULT_MAX_ACTIVE_JOBS_PER_ORG,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_org_document_bytes: DEFAULT_MAX_ORG_DOCUMENT_BYTES,
            document_timeout: crate::collections::DEFAULT_DOCUMENT_TIMEOUT,
            document_workers: DEFAULT_DOCUMENT_WORKERS,
            dataset_workers: DEFAULT_DATASET_WORKERS,
            sql_dir: None,
            max_sql_rows: DEFAULT_MAX_SQL_ROWS,
            chat_timeout: DEFAULT_CHAT_TIMEOUT,
        }
    }
}

impl ServerConfig {
    /// Defaults with this data directory.
    #[must_use]
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), ..Self::default() }
    }

    /// The database URL in use: the configured one, else the SQLite file in the data
    /// directory (created when missing).
    #[must_use]
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| sqlite_url(&self.data_dir.join(DATABASE_FILE)))
    }
}

impl ServerConfig {
    /// The registry's models directory in use.
    #[must_use]
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(docraft_core::models_dir)
    }

    /// The embedding model directory new collections are indexed with.
    #[must_use]
    pub fn embedder_dir(&self) -> PathBuf {
        self.embedder.clone().unwrap_or_else(docraft_index::default_model_dir)
    }

    /// Threads per training job: the configured number, else the cores less one shared among
    /// the workers (at least one).
    #[must_use]
    pub fn threads_per_job(&self) -> usize {
        self.train_threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            (cores.saturating_sub(1) / self.workers.max(1)).max(1)
        })
    }
}

/// `sqlite://PATH?mode=rwc` (created when missing).
#[must_use]
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_their_constants() {
        let c = ServerConfig::default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.max_upload_bytes, 1_073_741_824);
        assert_eq!(ServerConfig::with_data_dir("/d").database_url(), "sqlite:///d/docraft.db?mode=rwc");
    }
}
