//! Plain text: encoding detection, binary detection and newline normalization.

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

/// How many characters from the start of the decoded text [`binary_reason`] looks at.
pub const BINARY_SAMPLE_CHARS: usize = 8192;

/// The share of control characters in the sample above which text counts as binary.
pub const MAX_CONTROL_SHARE: f64 = 0.10;

/// Whether `c` is a control character that text does not hold: C0 controls other than tab,
/// newline, carriage return and form feed, DEL, C1 controls (U+0080..=U+009F, what bytes
/// 0x81, 0x8D, 0x8F, 0x90 and 0x9D become in Windows-1252) and U+FFFD (undecodable bytes).
fn is_suspicious(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' | '\x0c' => false,
        '\u{FFFD}' => true,
        c => c.is_control(),
    }
}

/// Why decoded text looks like binary data rather than text, or `None` if it looks like
/// text: a NUL character anywhere (no text format has them; UTF-16 is decoded through its
/// BOM first, so its zero bytes do not count), or more than [`MAX_CONTROL_SHARE`] of the
/// first [`BINARY_SAMPLE_CHARS`] characters being control characters or undecodable bytes.
#[must_use]
pub fn binary_reason(text: &str) -> Option<String> {
    if let Some(at) = text.find('\0') {
        return Some(format!("a NUL character at byte {at} of the decoded text"));
    }
    let (mut total, mut suspicious) = (0usize, 0usize);
    for c in text.chars().take(BINARY_SAMPLE_CHARS) {
        total += 1;
        suspicious += usize::from(is_suspicious(c));
    }
    #[allow(clippy::cast_precision_loss)] // counts of at most 8192
    let share = if total == 0 { 0.0 } else { suspicious as f64 / total as f64 };
    (share > MAX_CONTROL_SHARE).then(|| {
        format!(
            "{suspicious} of its first {total} characters are control characters or undecodable bytes ({:.0}%, more than {:.0}%)",
            share * 100.0,
            MAX_CONTROL_SHARE * 100.0
        )
    })
}

/// [`decode`], refusing binary content.
///
/// # Errors
/// [`Error::Binary`] naming `path` when [`binary_reason`] finds the decoded text is binary.
pub fn decode_text(path: &Path, bytes: &[u8]) -> Result<(String, &'static str), Error> {
    let (text, encoding) = decode(bytes);
    match binary_reason(&text) {
        Some(reason) => Err(Error::Binary { path: path.to_path_buf(), reason }),
        None => Ok((text, encoding)),
    }
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
/// [`Error::Empty`] for a file with no bytes, [`Error::Binary`] for one that is not text.
pub fn load_text(path: &Path, bytes: &[u8]) -> Result<Document, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty { path: path.to_path_buf() });
    }
    let (text, encoding) = decode_text(path, bytes)?;
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

    #[test]
    fn binary_detection() {
        assert_eq!(binary_reason("año\tdos\x0ctres\n"), None);
        assert!(binary_reason("texto\0más").is_some_and(|r| r.contains("NUL character at byte 5")));
        // 1 control in 10 characters is 10%: still text; 2 in 10 is not.
        assert_eq!(binary_reason("abcdefghi\x01"), None);
        assert!(binary_reason("abcdefgh\x01\x02").is_some());
        // C1 controls and replacement characters count too.
        assert!(binary_reason("ab\u{81}\u{8D}\u{FFFD}").is_some());
        // UTF-16 with a BOM is text even though half its bytes are zero.
        let (text, _) = decode_text(Path::new("m.txt"), b"\xFF\xFEa\x00\xF1\x00").unwrap();
        assert_eq!(text, "añ");
        let err = decode_text(Path::new("x.txt"), b"ab\x00cd").unwrap_err();
        assert_eq!(err.kind(), "binary");
        assert!(err.to_string().starts_with("x.txt: binary content"));
    }
}
