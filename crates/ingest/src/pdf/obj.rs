//! Small readers of PDF objects shared by the font, content and document code: numbers,
//! references followed, dictionary entries, UTF-16BE strings.

use lopdf::{Dictionary, Document, Object};

/// A number (integer or real).
pub(crate) fn num(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

/// `o`, with a reference followed (itself if it is none, or a dangling one).
pub(crate) fn deref<'a>(doc: &'a Document, o: &'a Object) -> &'a Object {
    doc.dereference(o).map(|(_, o)| o).unwrap_or(o)
}

/// The entry `key` of `d`, references followed.
pub(crate) fn get<'a>(doc: &'a Document, d: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    d.get(key).ok().map(|o| deref(doc, o))
}

/// The entry `key` of `d` as a dictionary, references followed.
pub(crate) fn get_dict<'a>(doc: &'a Document, d: &'a Dictionary, key: &[u8]) -> Option<&'a Dictionary> {
    get(doc, d, key)?.as_dict().ok()
}

/// The entry `key` of `d` as a name, references followed.
pub(crate) fn get_name<'a>(doc: &'a Document, d: &'a Dictionary, key: &[u8]) -> Option<&'a [u8]> {
    get(doc, d, key)?.as_name().ok()
}

/// Big-endian UTF-16 code units (an odd last byte is padded with zero).
pub(crate) fn utf16_be(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks(2).map(|p| (u16::from(p[0]) << 8) | u16::from(p.get(1).copied().unwrap_or(0))).collect()
}
