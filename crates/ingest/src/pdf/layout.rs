//! Turns positioned glyphs into text: glyphs -> lines (by baseline, with word gaps found
//! from positions) -> paragraphs (by line spacing, font size and indentation), with
//! hyphenated line breaks joined and ligatures expanded (NFKC).

use unicode_normalization::UnicodeNormalization;

use super::content::{Glyph, PageGlyphs};

/// A gap wider than this fraction of the font size between two glyphs is a word break.
const WORD_GAP: f32 = 0.15;
/// A gap wider than this (in font sizes) separates table columns: written as a tab.
const COLUMN_GAP: f32 = 2.0;
/// How many recent lines a line drawn later may join when it continues one of them to the
/// right on the same baseline (table cells drawn one after another).
const ROW_WINDOW: usize = 8;

#[derive(Debug)]
struct Line {
    dir: u8,
    v: f32,
    size: f32,
    u0: f32,
    u1: f32,
    text: String,
    /// Where each glyph's text landed in `text` (start == end: an explicit space), kept to
    /// put right-to-left lines in logical order once they are complete.
    pieces: Vec<Piece>,
    /// Whether any glyph is in a right-to-left script.
    rtl: bool,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    u0: f32,
    u1: f32,
    start: usize,
    end: usize,
}

impl Line {
    fn new(g: &Glyph) -> Self {
        Self {
            dir: g.dir,
            v: g.v,
            size: g.size,
            u0: g.u0,
            u1: g.u1,
            text: String::new(),
            pieces: Vec::new(),
            rtl: false,
        }
    }
}

fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// The combining mark for a spacing accent glyph (TeX's OT1 fonts draw accents as separate
/// glyphs over the letter).
fn combining(accent: &str) -> Option<char> {
    let mut it = accent.chars();
    let c = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(match c {
        '\u{00B4}' | '\u{02CA}' => '\u{0301}',
        '`' | '\u{02CB}' => '\u{0300}',
        '^' | '\u{02C6}' => '\u{0302}',
        '\u{00A8}' => '\u{0308}',
        '~' | '\u{02DC}' => '\u{0303}',
        '\u{00B8}' => '\u{0327}',
        '\u{02C7}' => '\u{030C}',
        '\u{02D8}' => '\u{0306}',
        '\u{02D9}' => '\u{0307}',
        '\u{02DA}' => '\u{030A}',
        '\u{02DD}' => '\u{030B}',
        '\u{00AF}' | '\u{02C9}' => '\u{0304}',
        '\u{02DB}' => '\u{0328}',
        _ => return None,
    })
}

/// Whether an accent centred at `center` sits on the glyph spanning `u0..u1`.
fn covers(u0: f32, u1: f32, center: f32, size: f32) -> bool {
    let slack = 0.05 * size;
    u0 - slack <= center && center <= u1 + slack
}

/// Appends `text` to `out`, with `mark` after its first char (a dotless i takes its dot back).
fn push_marked(out: &mut String, text: &str, mark: char) {
    let mut chars = text.chars();
    if let Some(first) = chars.next() {
        out.push(if first == '\u{0131}' { 'i' } else { first });
        out.push(mark);
        out.push_str(chars.as_str());
    }
}

/// Line assembly state.
#[derive(Default)]
struct LineBuilder {
    out: Vec<Line>,
    cur: Option<Line>,
    pending_space: bool,
}

impl LineBuilder {
    fn same_line(&self, g: &Glyph, text: &str) -> bool {
        self.cur.as_ref().is_some_and(|l| {
            let size = l.size.max(g.size);
            let baseline = l.dir == g.dir && (g.v - l.v).abs() < 0.5 * size;
            // Right-to-left text may be drawn leftwards, and the numbers in it left of it.
            let leftwards =
                (l.rtl || text.chars().any(is_rtl)) && g.u1 <= l.u0 + 0.5 * size && l.u0 - g.u1 < 10.0 * size;
            baseline && (g.u0 > l.u0 - 0.5 * size || leftwards)
        })
    }

    fn end_line(&mut self) {
        if let Some(mut l) = self.cur.take() {
            if l.rtl {
                l.text = logical_order(&l);
            }
            self.out.push(l);
        }
        self.pending_space = false;
    }

    /// The u-range of the last glyph (not space) on the current line.
    fn last(&self) -> Option<(f32, f32)> {
        let line = self.cur.as_ref()?;
        line.pieces.iter().rev().find(|p| p.end > p.start).map(|p| (p.u0, p.u1))
    }

    /// Adds a glyph; `mark` is a combining accent to put after its first char.
    fn push(&mut self, g: &Glyph, text: &str, mark: Option<char>) {
        if !self.same_line(g, text) {
            self.end_line();
            if is_blank(text) {
                return;
            }
            self.cur = Some(Line::new(g));
        }
        let Some(line) = self.cur.as_mut() else {
            return;
        };
        if is_blank(text) {
            self.pending_space = true;
            line.u1 = line.u1.max(g.u1);
            let at = line.text.len();
            line.pieces.push(Piece { u0: g.u0, u1: g.u1, start: at, end: at });
            return;
        }
        let size = line.size.max(g.size);
        // Fake bold draws the same glyph twice, slightly shifted: keep one.
        if g.u0 < line.u1 - 0.3 * size
            && line
                .pieces
                .iter()
                .rev()
                .take(64)
                .any(|p| (p.u0 - g.u0).abs() < 0.3 * size && line.text.get(p.start..p.end) == Some(text))
        {
            return;
        }
        let gap = g.u0 - line.u1;
        if !line.text.is_empty() && !line.text.ends_with([' ', '\t']) {
            if gap > COLUMN_GAP * size {
                line.text.push('\t');
            } else if self.pending_space || gap > WORD_GAP * size {
                line.text.push(' ');
            }
        }
        self.pending_space = false;
        let start = line.text.len();
        match mark {
            Some(m) => push_marked(&mut line.text, text, m),
            None => line.text.push_str(text),
        }
        line.pieces.push(Piece { u0: g.u0, u1: g.u1, start, end: line.text.len() });
        line.rtl |= text.chars().any(is_rtl);
        line.u0 = line.u0.min(g.u0);
        line.u1 = line.u1.max(g.u1);
        // Baseline and size follow the body text, not sub- or superscripts.
        if g.size > line.size * 1.05 {
            line.size = g.size;
            line.v = g.v;
        }
    }

    /// A combining `mark` for an accent centred at `center`, put on the glyph just added if
    /// the accent sits on it. Returns whether it was placed.
    fn mark_last(&mut self, g: &Glyph, center: f32, mark: char) -> bool {
        let Some((u0, u1)) = self.last() else {
            return false;
        };
        if !self.same_line(g, "") || !covers(u0, u1, center, g.size) {
            return false;
        }
        let Some(line) = self.cur.as_mut() else {
            return false;
        };
        if !line.text.chars().last().is_some_and(char::is_alphabetic) {
            return false;
        }
        if line.text.ends_with('\u{0131}') {
            line.text.pop();
            line.text.push('i');
        }
        line.text.push(mark);
        if let Some(p) = line.pieces.last_mut() {
            p.end = line.text.len();
        }
        true
    }
}

/// Right-to-left scripts: Hebrew, Arabic, Syriac, Thaana, N'Ko and their presentation forms.
fn is_rtl(c: char) -> bool {
    matches!(u32::from(c), 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF | 0x10800..=0x10FFF | 0x1E800..=0x1EFFF)
}

/// The text of a line with right-to-left glyphs, in logical (reading) order: glyphs sorted
/// left to right on the page (visual order), then the visual order undone (a simplified
/// inverse of the Unicode bidi algorithm: a right-to-left line reads right to left except for
/// its left-to-right runs such as numbers and Latin words; a left-to-right line reverses its
/// right-to-left runs). Each glyph's text is kept whole, so ligatures keep their order.
fn logical_order(line: &Line) -> String {
    let mut pieces = line.pieces.clone();
    pieces.sort_by(|a, b| a.u0.total_cmp(&b.u0));
    let mut units: Vec<&str> = Vec::with_capacity(pieces.len() * 2);
    let mut prev_u1: Option<f32> = None;
    for p in &pieces {
        let text = line.text.get(p.start..p.end).unwrap_or_default();
        let gap = prev_u1.is_some_and(|u1| p.u0 - u1 > WORD_GAP * line.size);
        if (text.is_empty() || gap) && units.last().is_some_and(|u| *u != " ") {
            units.push(" ");
        }
        if !text.is_empty() {
            units.push(text);
        }
        prev_u1 = Some(prev_u1.map_or(p.u1, |u| u.max(p.u1)));
    }
    while units.last() == Some(&" ") {
        units.pop();
    }
    let rtl_unit = |u: &str| u.chars().next().is_some_and(is_rtl);
    let ltr_unit = |u: &str| u.chars().next().is_some_and(|c| c.is_alphanumeric() && !is_rtl(c));
    let rtl = units.iter().filter(|u| rtl_unit(u)).count();
    let ltr = units.iter().filter(|u| ltr_unit(u)).count();
    if rtl > ltr {
        units.reverse();
        reverse_runs(&mut units, ltr_unit, rtl_unit);
    } else {
        reverse_runs(&mut units, rtl_unit, ltr_unit);
    }
    units.concat()
}

/// Reverses every maximal run that starts and ends with a `strong` unit and holds no `other`.
fn reverse_runs(units: &mut [&str], strong: impl Fn(&str) -> bool, other: impl Fn(&str) -> bool) {
    let mut i = 0;
    while i < units.len() {
        if !units.get(i).is_some_and(|u| strong(u)) {
            i += 1;
            continue;
        }
        let mut last = i;
        let mut j = i;
        while let Some(u) = units.get(j) {
            if other(u) {
                break;
            }
            if strong(u) {
                last = j;
            }
            j += 1;
        }
        if let Some(run) = units.get_mut(i..=last) {
            run.reverse();
        }
        i = last + 1;
    }
}

/// Builds lines in drawing order.
fn lines(page: &PageGlyphs) -> Vec<Line> {
    let mut b = LineBuilder::default();
    // An accent drawn before its letter waits here: (glyph, its text, mark).
    let mut pending: Option<(&Glyph, &str, char)> = None;
    for g in &page.glyphs {
        let text = page.text.get(g.start as usize..g.end as usize).unwrap_or_default();
        let center = (g.u0 + g.u1) / 2.0;
        if let Some((a, a_text, mark)) = pending.take() {
            let a_center = (a.u0 + a.u1) / 2.0;
            let on_this = text.chars().next().is_some_and(char::is_alphabetic)
                && a.dir == g.dir
                && (a.v - g.v).abs() < g.size
                && covers(g.u0, g.u1, a_center, g.size);
            if on_this {
                b.push(g, text, Some(mark));
                continue;
            }
            b.push(a, a_text, None);
        }
        if let Some(mark) = combining(text) {
            if b.mark_last(g, center, mark) {
                continue;
            }
            pending = Some((g, text, mark));
            continue;
        }
        b.push(g, text, None);
    }
    if let Some((a, a_text, _)) = pending {
        b.push(a, a_text, None);
    }
    b.end_line();
    let mut out: Vec<Line> = Vec::with_capacity(b.out.len());
    for mut l in b.out {
        let t = l.text.trim_end();
        l.text.truncate(t.len());
        if l.text.is_empty() {
            continue;
        }
        // A table cell drawn after the cells below its row-mates joins their row.
        let start = out.len().saturating_sub(ROW_WINDOW);
        let row = out.get_mut(start..).and_then(|recent| {
            recent.iter_mut().rev().find(|m| {
                let size = m.size.max(l.size);
                m.dir == l.dir && (m.v - l.v).abs() < 0.3 * size && l.u0 >= m.u1 - 0.2 * size
            })
        });
        match row {
            Some(m) => {
                let sep = if l.u0 - m.u1 > COLUMN_GAP * m.size.max(l.size) { '\t' } else { ' ' };
                m.text.push(sep);
                m.text.push_str(&l.text);
                m.u1 = m.u1.max(l.u1);
            }
            None => out.push(l),
        }
    }
    out
}

fn median(mut v: Vec<f32>) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied()
}

fn ends_sentence(s: &str) -> bool {
    s.trim_end().ends_with(['.', '!', '?', ':', ';', '"', '\u{201D}', ')'])
}

/// Whether `prev` ends in a hyphen that splits a word continued by `next`.
fn hyphen_join(prev: &str, next: &str) -> bool {
    let mut rev = prev.chars().rev();
    let (Some(h), Some(before)) = (rev.next(), rev.next()) else {
        return false;
    };
    matches!(h, '-' | '\u{00AD}' | '\u{2010}')
        && before.is_alphabetic()
        && before.is_lowercase()
        && next.chars().next().is_some_and(|c| c.is_alphabetic() && c.is_lowercase())
}

/// The text of one page: lines separated by `\n`, paragraphs by a blank line.
pub(crate) fn page_text(page: &PageGlyphs) -> String {
    let lines = lines(page);
    if lines.is_empty() {
        return String::new();
    }
    // Typical line spacing on this page.
    let spacing = median(
        lines
            .windows(2)
            .filter_map(|w| {
                let (a, b) = (&w[0], &w[1]);
                let dv = a.v - b.v;
                let size = a.size.max(b.size);
                (a.dir == b.dir && dv > 0.5 * size && dv < 2.5 * size).then_some(dv / size)
            })
            .collect(),
    )
    .unwrap_or(1.2);
    let right = lines.iter().filter(|l| l.dir == 0).map(|l| l.u1).fold(f32::MIN, f32::max);

    let mut out = String::with_capacity(page.text.len() + lines.len() * 2);
    for (i, line) in lines.iter().enumerate() {
        let Some(prev) = i.checked_sub(1).and_then(|j| lines.get(j)) else {
            out.push_str(&line.text);
            continue;
        };
        let size = prev.size.max(line.size);
        let dv = prev.v - line.v;
        let same_block = prev.dir == line.dir && dv > 0.0 && dv < 3.0 * size;
        let size_change = (prev.size - line.size).abs() > 0.15 * size;
        let gap_break = dv / size > spacing * 1.3 + 0.1;
        let indent = line.u0 - prev.u0;
        let indent_break =
            indent > 0.9 * size && indent < 8.0 * size && (ends_sentence(&prev.text) || prev.u1 < right - 4.0 * size);
        let short_break = ends_sentence(&prev.text) && prev.dir == 0 && prev.u1 < right - 8.0 * size;
        let paragraph = !same_block || size_change || gap_break || indent_break || short_break;
        if paragraph {
            out.push_str("\n\n");
            out.push_str(&line.text);
        } else if hyphen_join(&out, &line.text) {
            out.pop();
            out.push_str(&line.text);
        } else {
            out.push('\n');
            out.push_str(&line.text);
        }
    }
    // Soft hyphens left inside lines are invisible break points.
    let cleaned: String = out.replace('\u{00AD}', "").nfkc().collect();
    cleaned.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_to_left_lines_in_logical_order() {
        // Glyphs laid out left to right as they appear on the page (visual order).
        let visual = [".", "3", "0", "0", " ", "ל", "ה", "ו", "נ", " ", "ה", "נ", "ו", "מ", "ה"];
        let mut line =
            Line { dir: 0, v: 0.0, size: 10.0, u0: 0.0, u1: 0.0, text: String::new(), pieces: Vec::new(), rtl: true };
        // Drawn in any order: here right to left.
        for (i, t) in visual.iter().enumerate().rev() {
            let start = line.text.len();
            if *t != " " {
                line.text.push_str(t);
            }
            let u0 = i as f32 * 6.0;
            line.pieces.push(Piece { u0, u1: u0 + 5.0, start, end: line.text.len() });
        }
        assert_eq!(logical_order(&line), "המונה נוהל 300.");
    }

    #[test]
    fn hyphenation_rules() {
        assert!(hyphen_join("manip-", "ulation"));
        assert!(hyphen_join("informa-", "ción"));
        assert!(!hyphen_join("Jean-", "Paul"));
        assert!(!hyphen_join("1-", "x"));
        assert!(!hyphen_join("-", "x"));
    }
}
