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
