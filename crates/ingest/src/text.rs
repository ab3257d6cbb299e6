//! Plain text: encoding detection and newline normalization.

use std::path::Path;

use docraft_core::{DocFormat, Document};
use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

use crate::error::Error;

/// Decodes raw bytes to text: a BOM (UTF-8, UTF-16LE/BE) decides; otherwise strict UTF-8;
/// otherwise Windows-1252 (a superset of Latin-1's printable range, what older Spanish
/// systems wrote). Returns the text and the encoding's name. Newlines are normalized to `\n`.
#[must_use]
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    let (text, name) = if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        let body = bytes.get(bom..).unwrap_or_default();
        let (cow, _) = enc.decode_without_bom_handling(body);
        (cow.into_owned(), enc.name())
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        (s.to_string(), UTF_8.name())
    } else {
        let (cow, _) = WINDOWS_1252.decode_without_bom_handling(bytes);
        (cow.into_owned(), WINDOWS_1252.name())
    };
    (normalize_newlines(text), name)
}

/// `\r\n` and lone `\r` become `\n`.
#[must_use]
pub fn normalize_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Loads a plain-text file from its bytes.
///
/// # Errors
/// [`Error::Empty`] for a file with no bytes.
pub fn load_text(path: &Path, bytes: &[u8]) -> Result<Document, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty { path: path.to_path_buf() });
    }
    let (text, encoding) = decode(bytes);
    let mut doc = Document::new(path.to_string_lossy(), DocFormat::Text, bytes, text);
    doc.metadata.fields.insert("encoding".into(), encoding.into());
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(decode("año".as_bytes()), ("año".to_string(), "UTF-8"));
        assert_eq!(decode(b"\xEF\xBB\xBFa\r\nb"), ("a\nb".to_string(), "UTF-8"));
        assert_eq!(decode(b"\xFF\xFEa\x00\xF1\x00"), ("añ".to_string(), "UTF-16LE"));
        assert_eq!(decode(b"\xFE\xFF\x00a\x00\xF1"), ("añ".to_string(), "UTF-16BE"));
        // Latin-1 / Windows-1252: "canción" and a euro sign (0x80 in 1252).
        assert_eq!(decode(b"canci\xF3n \x80\r"), ("canción €\n".to_string(), "windows-1252"));
    }
}
