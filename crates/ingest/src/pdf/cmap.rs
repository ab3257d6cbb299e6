//! A small reader for the CMap programs found in PDFs: `/ToUnicode` maps (bfchar, bfrange)
//! and the code-space ranges of embedded encoding CMaps. Tolerant: anything it does not
//! understand is skipped.

use std::collections::HashMap;

use super::obj::utf16_be;

/// How many bytes the next character code takes, from `begincodespacerange` entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Codespace {
    /// (byte length, low, high) per range.
    ranges: Vec<(u8, u32, u32)>,
}

impl Codespace {
    /// A codespace where every code has `n` bytes.
    pub(crate) fn fixed(n: u8) -> Self {
        let hi = if n >= 4 { u32::MAX } else { (1u32 << (8 * u32::from(n))) - 1 };
        Self { ranges: vec![(n, 0, hi)] }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Splits off the next code from `bytes`: (code, length in bytes).
    pub(crate) fn next_code(&self, bytes: &[u8]) -> (u32, usize) {
        let mut code = 0u32;
        for n in 1..=4usize {
            let Some(&b) = bytes.get(n - 1) else { break };
            code = (code << 8) | u32::from(b);
            if self.ranges.iter().any(|&(len, lo, hi)| usize::from(len) == n && lo <= code && code <= hi) {
                return (code, n);
            }
        }
        // No range matched: take the shortest length declared (or one byte).
        let n = self.ranges.iter().map(|r| usize::from(r.0)).min().unwrap_or(1).clamp(1, 4);
        let n = n.min(bytes.len()).max(1);
        let code = bytes.iter().take(n).fold(0u32, |c, &b| (c << 8) | u32::from(b));
        (code, n)
    }
}

/// A code -> Unicode map from a `/ToUnicode` CMap.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToUnicode {
    chars: HashMap<u32, String>,
    /// (low, high, first destination as UTF-16 units), sorted by low.
    ranges: Vec<(u32, u32, Vec<u16>)>,
    pub(crate) codespace: Codespace,
}

impl ToUnicode {
    pub(crate) fn get(&self, code: u32) -> Option<String> {
        if let Some(s) = self.chars.get(&code) {
            return Some(s.clone());
        }
        let i = self.ranges.partition_point(|r| r.0 <= code);
        let (lo, hi, dst) = self.ranges.get(i.checked_sub(1)?)?;
        if code > *hi {
            return None;
        }
        let mut units = dst.clone();
        let last = units.last_mut()?;
        *last = last.wrapping_add(u16::try_from(code - lo).ok()?);
        Some(String::from_utf16_lossy(&units))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chars.is_empty() && self.ranges.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Hex(Vec<u8>),
    Name(Vec<u8>),
    Word(Vec<u8>),
    Int(i64),
    Open,
    Close,
}

fn lex(data: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        match c {
            b'%' => {
                while data.get(i).is_some_and(|&c| c != b'\n' && c != b'\r') {
                    i += 1;
                }
            }
            b'<' if data.get(i + 1) == Some(&b'<') => i += 2,
            b'>' if data.get(i + 1) == Some(&b'>') => i += 2,
            b'<' => {
                i += 1;
                let mut nibbles = Vec::new();
                while let Some(&c) = data.get(i) {
                    i += 1;
                    if c == b'>' {
                        break;
                    }
                    if let Some(v) = (c as char).to_digit(16) {
                        nibbles.push(v as u8);
                    }
                }
                if nibbles.len() % 2 == 1 {
                    nibbles.push(0);
                }
                out.push(Tok::Hex(nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()));
            }
            b'[' => {
                out.push(Tok::Open);
                i += 1;
            }
            b']' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'(' => {
                // Literal strings are rare in CMaps; skip them with nesting.
                let mut depth = 0;
                while let Some(&c) = data.get(i) {
                    i += 1;
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            c if c.is_ascii_whitespace() || c == b'{' || c == b'}' => i += 1,
            _ => {
                let start = i;
                i += 1;
                while data.get(i).is_some_and(|&c| {
                    !c.is_ascii_whitespace() && !matches!(c, b'/' | b'<' | b'>' | b'[' | b']' | b'(' | b'%')
                }) {
                    i += 1;
                }
                let word = data.get(start..i).unwrap_or_default();
                if let Some(name) = word.strip_prefix(b"/") {
                    out.push(Tok::Name(name.to_vec()));
                } else if let Some(n) = std::str::from_utf8(word).ok().and_then(|s| s.parse().ok()) {
                    out.push(Tok::Int(n));
                } else {
                    out.push(Tok::Word(word.to_vec()));
                }
            }
        }
    }
    out
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |c, &b| (c << 8) | u32::from(b))
}

fn text_of(bytes: &[u8]) -> String {
    // Destinations are UTF-16BE; a single byte (seen in some files) is Latin-1.
    if bytes.len() == 1 {
        return char::from(bytes[0]).to_string();
    }
    String::from_utf16_lossy(&utf16_be(bytes))
}

/// Parses the code-space ranges of a CMap program.
pub(crate) fn parse_codespace(data: &[u8]) -> Codespace {
    parse(data).codespace
}

/// Parses a ToUnicode CMap program.
pub(crate) fn parse(data: &[u8]) -> ToUnicode {
    let toks = lex(data);
    let mut map = ToUnicode::default();
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        i += 1;
        let Tok::Word(w) = t else { continue };
        match w.as_slice() {
            b"begincodespacerange" => {
                while let (Some(Tok::Hex(lo)), Some(Tok::Hex(hi))) = (toks.get(i), toks.get(i + 1)) {
                    let n = u8::try_from(lo.len().clamp(1, 4)).unwrap_or(1);
                    map.codespace.ranges.push((n, be(lo), be(hi)));
                    i += 2;
                }
            }
            b"beginbfchar" => {
                while let (Some(Tok::Hex(src)), Some(dst)) = (toks.get(i), toks.get(i + 1)) {
                    match dst {
                        Tok::Hex(d) => {
                            map.chars.insert(be(src), text_of(d));
                        }
                        Tok::Name(n) => {
                            if let Some(s) = super::font::glyph_name_to_text(n) {
                                map.chars.insert(be(src), s);
                            }
                        }
                        _ => break,
                    }
                    i += 2;
                }
            }
            b"beginbfrange" => {
                while let (Some(Tok::Hex(lo)), Some(Tok::Hex(hi))) = (toks.get(i), toks.get(i + 1)) {
                    let (lo, hi) = (be(lo), be(hi));
                    match toks.get(i + 2) {
                        Some(Tok::Hex(d)) => {
                            if hi >= lo && !d.is_empty() {
                                map.ranges.push((lo, hi, utf16_be(d)));
                            }
                            i += 3;
                        }
                        Some(Tok::Open) => {
                            i += 3;
                            let mut code = lo;
                            while let Some(Tok::Hex(d)) = toks.get(i) {
                                if code <= hi {
                                    map.chars.insert(code, text_of(d));
                                }
                                code = code.saturating_add(1);
                                i += 1;
                            }
                            if toks.get(i) == Some(&Tok::Close) {
                                i += 1;
                            }
                        }
                        _ => break,
                    }
                }
            }
            _ => {}
        }
    }
    map.ranges.sort_by_key(|r| r.0);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfchar_and_bfrange() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
            1 begincodespacerange <0000> <FFFF> endcodespacerange
            2 beginbfchar <0003> <0020> <0011> <00660069> endbfchar
            2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<00E1> <00F1>] endbfrange
            endcmap";
        let m = parse(cmap);
        assert_eq!(m.get(3).as_deref(), Some(" "));
        assert_eq!(m.get(0x11).as_deref(), Some("fi"));
        assert_eq!(m.get(0x24).as_deref(), Some("A"));
        assert_eq!(m.get(0x26).as_deref(), Some("C"));
        assert_eq!(m.get(0x27), None);
        assert_eq!(m.get(0x30).as_deref(), Some("á"));
        assert_eq!(m.get(0x31).as_deref(), Some("ñ"));
        assert_eq!(m.codespace.next_code(&[0x00, 0x24, 0x00]), (0x24, 2));
    }

    #[test]
    fn mixed_codespace_lengths() {
        let cs = parse_codespace(b"2 begincodespacerange <00> <80> <8140> <9FFC> endcodespacerange");
        assert_eq!(cs.next_code(&[0x41, 0x42]), (0x41, 1));
        assert_eq!(cs.next_code(&[0x81, 0x40]), (0x8140, 2));
    }
}
