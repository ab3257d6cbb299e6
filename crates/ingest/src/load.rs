//! Loading one file into a [`Document`]: the [`Loader`] trait and the format dispatch.

use std::path::Path;

use docraft_core::{DocFormat, Document};

use crate::error::Error;
use crate::pdf::PdfOptions;
use crate::{markdown, pdf, text};

/// Turns one file into a document. One required method.
pub trait Loader: Send + Sync {
    /// Loads the file at `path` whose bytes are `bytes`.
    ///
    /// # Errors
    /// A typed [`Error`] naming the file and the cause.
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Document, Error>;

    /// Reads and loads the file at `path` (see [`read_file`]).
    ///
    /// # Errors
    /// [`Error::NotRegularFile`] for a FIFO, socket or device, [`Error::Io`] if it cannot be
    /// read, else as [`Loader::load`].
    fn load_path(&self, path: &Path) -> Result<Document, Error> {
        let bytes = read_file(path)?;
        self.load(path, &bytes)
    }
}

/// Reads the whole file at `path`, after checking that it is a regular file: a FIFO, socket
/// or device is refused before it is opened, so that reading cannot block forever or never
/// end.
///
/// # Errors
/// [`Error::NotRegularFile`] naming what it is instead, [`Error::Io`] if it cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { crate::walk::special_kind(meta.file_type()) };
        return Err(Error::NotRegularFile { path: path.to_path_buf(), what: what.into() });
    }
    std::fs::read(path).map_err(io)
}

/// The format a path's extension names, if docraft reads it.
#[must_use]
pub fn format_of(path: &Path) -> Option<DocFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => Some(DocFormat::Pdf),
        "md" | "markdown" | "mdown" | "mkd" => Some(DocFormat::Markdown),
        "txt" | "text" => Some(DocFormat::Text),
        _ => None,
    }
}

/// The built-in loader: PDF, Markdown or text by extension; a file with another
/// extension is read as PDF if it starts like one, else refused as unsupported.
/// Sets the language guess on every document it loads.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoLoader {
    pdf: PdfOptions,
}

impl AutoLoader {
    /// A loader with the default settings.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep running headers, footers and page numbers of PDFs in the text (they are removed
    /// by default).
    #[must_use]
    pub fn keep_page_furniture(mut self, keep: bool) -> Self {
        self.pdf.strip_furniture = !keep;
        self
    }

    /// The PDF settings.
    #[must_use]
    pub fn pdf_options(&self) -> &PdfOptions {
        &self.pdf
    }
}

impl Loader for AutoLoader {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Document, Error> {
        let format = match format_of(path) {
            Some(f) => f,
            None if bytes.starts_with(b"%PDF-") => DocFormat::Pdf,
            None => {
                return Err(Error::Unsupported { path: path.to_path_buf() });
            }
        };
        let mut doc = match format {
            DocFormat::Markdown => markdown::load_markdown(path, bytes)?,
            DocFormat::Text => text::load_text(path, bytes)?,
            _ => pdf::load_pdf_with(path, bytes, &self.pdf)?,
        };
        if doc.text.trim().is_empty() && format != DocFormat::Pdf {
            doc.warnings.push("no text".into());
        }
        doc.metadata.language = docraft_core::guess_language(&doc.text);
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_extension_is_unsupported_unless_pdf_bytes() {
        let err = AutoLoader::new().load(Path::new("x.docx"), b"PK\x03\x04").unwrap_err();
        assert_eq!(err.kind(), "unsupported");
        let err = AutoLoader::new().load(Path::new("x.bin"), b"%PDF-1.4 garbage").unwrap_err();
        assert_eq!(err.kind(), "damaged");
    }
}
