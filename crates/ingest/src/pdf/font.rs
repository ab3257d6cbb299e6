//! PDF fonts as the text extractor needs them: how to split a string into character codes,
//! what Unicode text each code stands for, and how wide each glyph is.
//!
//! Code -> text follows the order readers use: the `/ToUnicode` CMap first; then, for
//! simple fonts, the `/Encoding` (a base encoding plus `/Differences` glyph names, or the
//! built-in encoding of an embedded Type 1 program); for composite fonts with a UCS-2
//! CMap, the code itself.

use std::collections::HashMap;

use lopdf::{Dictionary, Document, Object};

use super::cmap::{self, Codespace, ToUnicode};
use super::obj::{deref, get, get_name as name, num};
use super::tables as encodings;

type CodedCharacterSet = [u16; 256];

/// Largest font program or CMap we are willing to inflate (bytes).
const MAX_FONT_STREAM: usize = 32 * 1024 * 1024;

/// One decoded glyph.
pub(crate) struct DecodedGlyph<'a> {
    /// Its text (may be empty when the font gives no mapping).
    pub text: &'a str,
    /// Horizontal advance in text-space units per unit of font size.
    pub advance: f32,
    /// A single-byte code 32: word spacing (`Tw`) applies.
    pub is_space_code: bool,
    /// The font gave no Unicode for this code.
    pub unmapped: bool,
}

#[derive(Debug)]
enum Widths {
    Simple { first: u32, widths: Vec<f32>, missing: f32 },
    Cid { explicit: HashMap<u32, f32>, ranges: Vec<(u32, u32, f32)>, default: f32 },
}

/// A font ready for decoding.
#[derive(Debug)]
pub(crate) struct Font {
    codespace: Codespace,
    to_unicode: Option<ToUnicode>,
    /// Simple fonts: code -> text from the encoding.
    simple: Option<Vec<Option<String>>>,
    /// Composite font whose CMap maps codes to UTF-16 directly.
    ucs2: bool,
    widths: Widths,
    /// Glyph space -> text space for widths (0.001, or a Type 3 font's FontMatrix).
    width_scale: f32,
    /// Multiplier from font size to glyph height (1, or derived from a Type 3 FontMatrix).
    pub height_scale: f32,
    /// Vertical writing mode (Identity-V and friends).
    pub vertical: bool,
}

fn stream_bytes(doc: &Document, o: &Object) -> Option<Vec<u8>> {
    let s = deref(doc, o).as_stream().ok()?;
    s.get_plain_content_with_limit(MAX_FONT_STREAM).ok().or_else(|| Some(s.content.clone()))
}

/// Text for a glyph name: the Adobe Glyph List, `uniXXXX`, `uXXXX`, ligatures `f_f_i`,
/// and suffixed variants (`a.sc`).
pub(crate) fn glyph_name_to_text(name: &[u8]) -> Option<String> {
    let base = name.split(|&b| b == b'.').next().unwrap_or(name);
    if base.is_empty() {
        return None;
    }
    if base.contains(&b'_') {
        let parts: Option<String> =
            base.split(|&b| b == b'_').map(single_glyph_name).collect::<Option<Vec<_>>>().map(|v| v.concat());
        return parts;
    }
    single_glyph_name(base)
}

fn single_glyph_name(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    if let Ok(i) = encodings::GLYPH_NAMES.binary_search_by(|(n, _)| (*n).cmp(s)) {
        let unit = encodings::GLYPH_NAMES.get(i)?.1;
        return char::decode_utf16([unit]).next()?.ok().map(String::from);
    }
    if let Some(hex) = s.strip_prefix("uni")
        && hex.len() >= 4
        && hex.len() % 4 == 0
    {
        let units: Option<Vec<u16>> =
            (0..hex.len() / 4).map(|i| u16::from_str_radix(hex.get(i * 4..i * 4 + 4)?, 16).ok()).collect();
        return Some(String::from_utf16_lossy(&units?));
    }
    if let Some(hex) = s.strip_prefix('u')
        && (4..=6).contains(&hex.len())
    {
        return u32::from_str_radix(hex, 16).ok().and_then(char::from_u32).map(String::from);
    }
    None
}

fn table_to_texts(table: &CodedCharacterSet) -> Vec<Option<String>> {
    table.iter().map(|&u| (u != 0).then(|| char::decode_utf16([u]).next()?.ok()).flatten().map(String::from)).collect()
}

fn named_encoding(name: &[u8]) -> Option<&'static CodedCharacterSet> {
    match name {
        b"WinAnsiEncoding" => Some(&encodings::WIN_ANSI_ENCODING),
        b"MacRomanEncoding" => Some(&encodings::MAC_ROMAN_ENCODING),
        b"MacExpertEncoding" => Some(&encodings::MAC_EXPERT_ENCODING),
        b"StandardEncoding" => Some(&encodings::STANDARD_ENCODING),
        b"PDFDocEncoding" => Some(&encodings::PDF_DOC_ENCODING),
        _ => None,
    }
}

/// The `/Encoding` array of an embedded Type 1 program (`dup 65 /A put`), if it has one.
fn type1_builtin_encoding(doc: &Document, descriptor: &Dictionary) -> Option<Vec<Option<String>>> {
    let data = stream_bytes(doc, descriptor.get(b"FontFile").ok()?)?;
    // The clear-text part ends at `eexec`.
    let clear_end = find(&data, b"eexec").unwrap_or(data.len());
    let clear = data.get(..clear_end)?;
    let enc_at = find(clear, b"/Encoding")?;
    let rest = clear.get(enc_at..)?;
    if rest.get(9..).is_some_and(|r| r.trim_ascii_start().starts_with(b"StandardEncoding")) {
        return Some(table_to_texts(&encodings::STANDARD_ENCODING));
    }
    let mut table = vec![None; 256];
    let mut found = false;
    let mut words = rest.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).peekable();
    while let Some(w) = words.next() {
        if w == b"readonly" || w == b"def" {
            break;
        }
        if w != b"dup" {
            continue;
        }
        let code = words.next().and_then(|c| std::str::from_utf8(c).ok()?.parse::<usize>().ok());
        let glyph = words.next().and_then(|g| g.strip_prefix(b"/"));
        if let (Some(code), Some(glyph)) = (code, glyph)
            && let Some(slot) = table.get_mut(code)
        {
            *slot = glyph_name_to_text(glyph);
            found = true;
        }
    }
    found.then_some(table)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Font {
    /// Reads a font dictionary. Never fails: what cannot be read falls back to defaults.
    pub(crate) fn load(doc: &Document, font: &Dictionary) -> Self {
        let subtype = name(doc, font, b"Subtype").unwrap_or_default();
        let to_unicode = font
            .get(b"ToUnicode")
            .ok()
            .and_then(|o| stream_bytes(doc, o))
            .map(|b| cmap::parse(&b))
            .filter(|m| !m.is_empty());
        if subtype == b"Type0" {
            Self::load_composite(doc, font, to_unicode)
        } else {
            Self::load_simple(doc, font, subtype, to_unicode)
        }
    }

    fn load_simple(doc: &Document, font: &Dictionary, subtype: &[u8], to_unicode: Option<ToUnicode>) -> Self {
        let descriptor = get(doc, font, b"FontDescriptor").and_then(|o| o.as_dict().ok());
        let base_font = name(doc, font, b"BaseFont").unwrap_or_default();
        let symbolic =
            descriptor.and_then(|d| get(doc, d, b"Flags")).and_then(num).is_some_and(|f| (f as i64) & 4 != 0);

        // Base table: the named encoding, else the font's built-in one.
        let builtin = || -> Vec<Option<String>> {
            if let Some(t) = descriptor.and_then(|d| type1_builtin_encoding(doc, d)) {
                return t;
            }
            let base = String::from_utf8_lossy(base_font);
            if base.contains("Symbol") {
                table_to_texts(&encodings::SYMBOL_ENCODING)
            } else if subtype == b"TrueType" || symbolic {
                table_to_texts(&encodings::WIN_ANSI_ENCODING)
            } else {
                table_to_texts(&encodings::STANDARD_ENCODING)
            }
        };
        let mut table = match get(doc, font, b"Encoding") {
            Some(Object::Name(n)) => named_encoding(n).map(table_to_texts).unwrap_or_else(builtin),
            Some(Object::Dictionary(d)) => {
                let mut t =
                    name(doc, d, b"BaseEncoding").and_then(named_encoding).map(table_to_texts).unwrap_or_else(builtin);
                if let Some(Object::Array(diffs)) = get(doc, d, b"Differences") {
                    let mut code: usize = 0;
                    for item in diffs {
                        match deref(doc, item) {
                            Object::Integer(c) => code = usize::try_from(*c).unwrap_or(usize::MAX),
                            Object::Name(n) => {
                                if let Some(slot) = t.get_mut(code) {
                                    *slot = glyph_name_to_text(n);
                                }
                                code = code.saturating_add(1);
                            }
                            _ => {}
                        }
                    }
                }
                t
            }
            _ => builtin(),
        };
        table.resize(256, None);

        let (width_scale, height_scale) = if subtype == b"Type3" {
            let fm: Vec<f32> = match get(doc, font, b"FontMatrix") {
                Some(Object::Array(a)) => a.iter().filter_map(|o| num(deref(doc, o))).collect(),
                _ => Vec::new(),
            };
            let sx = fm.first().copied().unwrap_or(0.001);
            let sy = fm.get(3).copied().unwrap_or(0.001);
            (sx, (sy.abs() * 1000.0).max(0.01))
        } else {
            (0.001, 1.0)
        };

        let first = get(doc, font, b"FirstChar").and_then(num).unwrap_or(0.0).max(0.0) as u32;
        let widths: Vec<f32> = match get(doc, font, b"Widths") {
            Some(Object::Array(a)) => a.iter().map(|o| num(deref(doc, o)).unwrap_or(0.0)).collect(),
            _ => Vec::new(),
        };
        let missing = descriptor
            .and_then(|d| get(doc, d, b"MissingWidth"))
            .and_then(num)
            .filter(|w| *w > 0.0)
            .unwrap_or_else(|| standard_width(base_font) / width_scale.max(1e-6));

        Self {
            codespace: Codespace::fixed(1),
            to_unicode,
            simple: Some(table),
            ucs2: false,
            widths: Widths::Simple { first, widths, missing },
            width_scale,
            height_scale,
            vertical: false,
        }
    }

    fn load_composite(doc: &Document, font: &Dictionary, to_unicode: Option<ToUnicode>) -> Self {
        let mut vertical = false;
        let mut ucs2 = false;
        let codespace = match get(doc, font, b"Encoding") {
            Some(Object::Name(n)) => {
                let n = String::from_utf8_lossy(n);
                vertical = n.ends_with("-V");
                ucs2 = n.contains("UCS2") || n.contains("UTF16");
                Codespace::fixed(2)
            }
            Some(o @ Object::Stream(_)) => {
                let cs = stream_bytes(doc, o).map(|b| cmap::parse_codespace(&b)).unwrap_or_default();
                if cs.is_empty() { Codespace::fixed(2) } else { cs }
            }
            _ => Codespace::fixed(2),
        };
        let descendant = match get(doc, font, b"DescendantFonts") {
            Some(Object::Array(a)) => a.first().and_then(|o| deref(doc, o).as_dict().ok()),
            _ => None,
        };
        let mut explicit = HashMap::new();
        let mut ranges = Vec::new();
        let mut default = 1000.0;
        if let Some(cid) = descendant {
            default = get(doc, cid, b"DW").and_then(num).unwrap_or(1000.0);
            if let Some(Object::Array(w)) = get(doc, cid, b"W") {
                let items: Vec<&Object> = w.iter().map(|o| deref(doc, o)).collect();
                let mut i = 0;
                while let Some(first) = items.get(i).and_then(|o| num(o)) {
                    match items.get(i + 1) {
                        Some(Object::Array(list)) => {
                            for (k, o) in list.iter().enumerate() {
                                if let Some(v) = num(deref(doc, o)) {
                                    explicit.insert(first as u32 + k as u32, v);
                                }
                            }
                            i += 2;
                        }
                        Some(o) => {
                            let (Some(last), Some(v)) = (num(o), items.get(i + 2).and_then(|o| num(o))) else {
                                break;
                            };
                            ranges.push((first as u32, last as u32, v));
                            i += 3;
                        }
                        None => break,
                    }
                }
            }
        }
        Self {
            codespace,
            to_unicode,
            simple: None,
            ucs2,
            widths: Widths::Cid { explicit, ranges, default },
            width_scale: 0.001,
            height_scale: 1.0,
            vertical,
        }
    }

    fn width(&self, code: u32) -> f32 {
        let units = match &self.widths {
            Widths::Simple { first, widths, missing } => {
                code.checked_sub(*first).and_then(|i| widths.get(i as usize)).copied().unwrap_or(*missing)
            }
            Widths::Cid { explicit, ranges, default } => explicit
                .get(&code)
                .copied()
                .or_else(|| ranges.iter().find(|r| r.0 <= code && code <= r.1).map(|r| r.2))
                .unwrap_or(*default),
        };
        units * self.width_scale
    }

    /// Decodes a shown string glyph by glyph.
    pub(crate) fn decode(&self, bytes: &[u8], mut f: impl FnMut(DecodedGlyph<'_>)) {
        let mut rest = bytes;
        let mut text = String::new();
        while !rest.is_empty() {
            let (code, n) = self.codespace.next_code(rest);
            rest = rest.get(n..).unwrap_or_default();
            text.clear();
            let mut mapped = false;
            if let Some(s) = self.to_unicode.as_ref().and_then(|m| m.get(code)) {
                text.push_str(&s);
                mapped = true;
            } else if let Some(t) = &self.simple {
                if let Some(Some(s)) = t.get(code as usize) {
                    text.push_str(s);
                    mapped = true;
                }
            } else if self.ucs2
                && let Some(c) = char::from_u32(code)
            {
                text.push(c);
                mapped = true;
            }
            f(DecodedGlyph {
                text: &text,
                advance: self.width(code),
                is_space_code: n == 1 && code == 32,
                unmapped: !mapped,
            });
        }
    }
}

/// Average advance (text-space units per unit of font size) for a standard-14 font whose
/// dictionary gives no widths.
fn standard_width(base_font: &[u8]) -> f32 {
    let n = String::from_utf8_lossy(base_font);
    if n.contains("Courier") {
        0.6
    } else if n.contains("Helvetica") || n.contains("Arial") {
        0.55
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_names() {
        assert_eq!(glyph_name_to_text(b"A").as_deref(), Some("A"));
        assert_eq!(glyph_name_to_text(b"aacute").as_deref(), Some("á"));
        assert_eq!(glyph_name_to_text(b"ntilde").as_deref(), Some("ñ"));
        assert_eq!(glyph_name_to_text(b"fi").as_deref(), Some("\u{FB01}"));
        assert_eq!(glyph_name_to_text(b"uni00E9").as_deref(), Some("é"));
        assert_eq!(glyph_name_to_text(b"u1F600").as_deref(), Some("😀"));
        assert_eq!(glyph_name_to_text(b"f_f_i").as_deref(), Some("ffi"));
        assert_eq!(glyph_name_to_text(b"a.sc").as_deref(), Some("a"));
        assert_eq!(glyph_name_to_text(b"g123"), None);
    }
}
