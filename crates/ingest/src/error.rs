use std::path::PathBuf;

/// Why a file could not be ingested, or a setting was refused. Each file error names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file has no bytes.
    #[error("{path}: empty file (0 bytes)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A `.pdf` that is not a PDF.
    #[error("{path}: not a PDF (no %PDF- header; the content looks like {looks_like})")]
    NotPdf {
        /// The file.
        path: PathBuf,
        /// What the bytes look like instead.
        looks_like: String,
    },
    /// An encrypted PDF that the empty user password does not open.
    #[error("{path}: encrypted PDF that needs a password")]
    Encrypted {
        /// The file.
        path: PathBuf,
    },
    /// A PDF that cannot be parsed (damaged or truncated).
    #[error("{path}: damaged PDF: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A readable file without any text.
    #[error("{path}: no text in any of its {pages} page(s){}", if *images { " (images only: a scan without a text layer; OCR it first)" } else { "" })]
    NoText {
        /// The file.
        path: PathBuf,
        /// How many pages it has.
        pages: usize,
        /// Whether its pages carry images (a scan).
        images: bool,
    },
    /// A file whose bytes are not text (NUL bytes, or a high share of control characters):
    /// an image, an archive, an executable, random data.
    #[error("{path}: binary content, not text ({reason})")]
    Binary {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A path that is not a regular file (a FIFO, socket or device): reading it could block
    /// forever or never end, so it is not opened.
    #[error("{path}: not a regular file ({what})")]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. `a FIFO (named pipe)`.
        what: String,
    },
    /// A file type docraft does not read.
    #[error("{path}: unsupported file type (docraft reads .pdf, .md/.markdown, .txt)")]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
    /// A tokenizer file that cannot be loaded.
    #[error("{path}: cannot load tokenizer: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Invalid chunking settings.
    #[error("invalid chunk settings: {0}")]
    ChunkConfig(String),
    /// An include/exclude pattern that is not a valid glob.
    #[error("invalid glob {glob:?}: {reason}")]
    Glob {
        /// The pattern.
        glob: String,
        /// Why.
        reason: String,
    },
    /// A path given to ingest does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// Reading or writing the output failed.
    #[error(transparent)]
    Output(#[from] docraft_core::Error),
    /// A database source failed: its URL (password hidden) and why.
    #[error("{source_name}: {reason}")]
    Sql {
        /// The database URL, password hidden.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    /// A short, stable name of the cause, for reports: `io`, `empty`, `not_pdf`, `encrypted`,
    /// `damaged`, `no_text`, `binary`, `not_regular_file`, `unsupported`, `tokenizer`, `config`, `glob`,
    /// `not_found`, `output`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Empty { .. } => "empty",
            Self::NotPdf { .. } => "not_pdf",
            Self::Encrypted { .. } => "encrypted",
            Self::Damaged { .. } => "damaged",
            Self::NoText { .. } => "no_text",
            Self::Binary { .. } => "binary",
            Self::NotRegularFile { .. } => "not_regular_file",
            Self::Unsupported { .. } => "unsupported",
            Self::Tokenizer { .. } => "tokenizer",
            Self::ChunkConfig(_) => "config",
            Self::Glob { .. } => "glob",
            Self::NotFound { .. } => "not_found",
            Self::Output(_) => "output",
            Self::Sql { .. } => "sql",
        }
    }
}

/// What a file's first bytes look like, for error messages.
pub(crate) fn sniff(bytes: &[u8]) -> &'static str {
    let head = bytes.get(..bytes.len().min(512)).unwrap_or_default();
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let starts = |p: &[u8]| head.starts_with(p);
    if starts(b"PK\x03\x04") {
        "a ZIP archive (DOCX/ODT/XLSX?)"
    } else if starts(b"\x89PNG") {
        "a PNG image"
    } else if starts(b"\xFF\xD8\xFF") {
        "a JPEG image"
    } else if starts(b"GIF8") {
        "a GIF image"
    } else if starts(b"\xD0\xCF\x11\xE0") {
        "an old Microsoft Office file (DOC/XLS)"
    } else if starts(b"{\\rtf") {
        "RTF"
    } else if lower.windows(5).any(|w| w == b"<html") || lower.windows(9).any(|w| w == b"<!doctype") {
        "an HTML page"
    } else if std::str::from_utf8(head).is_ok() {
        "plain text"
    } else {
        "binary data"
    }
}
