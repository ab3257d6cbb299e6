//! Heading sections for PDFs from their outline (bookmarks): each entry's title is found in
//! the text of its page, and the text from there to the next entry carries its heading path.

use docraft_core::{Section, Span};
use unicode_normalization::UnicodeNormalization;

/// One outline entry: nesting level (1 = top), title, 1-based page.
pub(crate) struct Entry {
    pub level: usize,
    pub title: String,
    pub page: usize,
}

/// The outline of `pdf`, in document order; empty when it has none.
pub(crate) fn entries(pdf: &lopdf::Document) -> Vec<Entry> {
    let Ok(toc) = pdf.get_toc() else { return Vec::new() };
    toc.toc
        .into_iter()
        .map(|t| Entry {
            level: t.level.max(1),
            title: t.title.nfkc().collect::<String>().trim().to_string(),
            page: t.page,
        })
        .filter(|e| !e.title.is_empty())
        .collect()
}

/// Letters and digits lower-cased, every other run of characters one space, with the byte
/// offset in `s` of each kept character.
fn folded(s: &str) -> (Vec<char>, Vec<usize>) {
    let (mut chars, mut at) = (Vec::with_capacity(s.len()), Vec::with_capacity(s.len()));
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                chars.push(l);
                at.push(i);
            }
        } else if chars.last().is_some_and(|l| *l != ' ') {
            chars.push(' ');
            at.push(i);
        }
    }
    (chars, at)
}

/// A text folded once by [`folded`].
struct Folded<'a> {
    chars: &'a [char],
    at: &'a [usize],
}

/// Where `title` stands as a heading in the bytes `from..to` of `text` (folded as `f`): on a
/// line of its own, after at most a section number. Case, punctuation and line breaks do not
/// matter (outline titles say "TeX" where the page prints "TEX"), and the same words in a table
/// of contents ("Introduction .... 3") or in running text do not count.
fn find_heading(text: &str, f: &Folded<'_>, from: usize, to: usize, title: &str) -> Option<usize> {
    let (needle, _) = folded(title);
    let needle: Vec<char> = needle.into_iter().collect::<String>().trim().chars().collect();
    let n = needle.len();
    if n == 0 {
        return None;
    }
    let lo = f.at.partition_point(|&b| b < from);
    let hi = f.at.partition_point(|&b| b < to);
    (lo..hi.saturating_sub(n - 1)).filter(|&i| f.chars.get(i..i + n) == Some(needle.as_slice())).find_map(|i| {
        let start = *f.at.get(i)?;
        let last = *f.at.get(i + n - 1)?;
        let end = last + text.get(last..)?.chars().next().map_or(1, char::len_utf8);
        let line_start = text.get(..start)?.rfind('\n').map_or(0, |p| p + 1).max(from);
        let line_end = text.get(end..)?.find('\n').map_or(text.len(), |p| end + p);
        let before = text.get(line_start..start)?.trim();
        let after = text.get(end..line_end)?.trim();
        let numbering =
            before.len() <= 12 && before.chars().all(|c| c.is_ascii_digit() || c == '.' || c.is_whitespace());
        // The section starts with its number, if it has one.
        let line = text.get(line_start..start)?;
        let lead = line.len() - line.trim_start().len();
        (numbering && after.chars().all(|c| !c.is_alphanumeric() && c != '.')).then_some(line_start + lead)
    })
}

/// Sections tiling `text` from the outline `entries`, with `pages` the page spans of `text`.
/// Empty when there is no outline.
pub(crate) fn sections(entries: &[Entry], text: &str, pages: &[Span]) -> Vec<Section> {
    if entries.is_empty() {
        return Vec::new();
    }
    // Start of each entry: its title on its page (not before the previous entry), else the
    // page start.
    let mut starts: Vec<(usize, Vec<String>)> = Vec::with_capacity(entries.len());
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut cursor = 0;
    let (chars, at) = folded(text);
    let fold = Folded { chars: &chars, at: &at };
    for e in entries {
        let Some(page) = e.page.checked_sub(1).and_then(|i| pages.get(i)) else { continue };
        // Some producers' destinations are a page early: look on the next page too.
        let window_end = pages.get(e.page).map_or(page.end, |next| next.end);
        let from = cursor.max(page.start);
        let at = find_heading(text, &fold, from, window_end.max(from), &e.title).unwrap_or(from);
        while path.last().is_some_and(|(l, _)| *l >= e.level) {
            path.pop();
        }
        path.push((e.level, e.title.clone()));
        cursor = at;
        starts.push((at, path.iter().map(|(_, t)| t.clone()).collect()));
    }
    let mut out = Vec::with_capacity(starts.len() + 1);
    let mut prev = (0, Vec::new());
    for (at, headings) in starts {
        if at > prev.0 {
            out.push(Section { span: Span::new(prev.0, at), headings: prev.1.clone() });
            prev = (at, headings);
        } else {
            // Two entries at the same place: the later (deeper) one wins.
            prev.1 = headings;
        }
    }
    out.push(Section { span: Span::new(prev.0, text.len()), headings: prev.1 });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_words(hay: &str, title: &str) -> Option<usize> {
        let (chars, at) = folded(hay);
        find_heading(hay, &Folded { chars: &chars, at: &at }, 0, hay.len(), title)
    }

    #[test]
    fn titles_found_across_line_breaks() {
        assert_eq!(find_words("x\n1 Purpose and\nscope\ny", "Purpose and scope"), Some(2));
        assert_eq!(find_words("Purposeful.\n2.1 Purpose  and scope", "Purpose and scope"), Some(12));
        assert_eq!(find_words("x\n1 TEX Live y la Colección\n", "TeX Live y la colección"), Some(2));
        // A table of contents line and a mention in running text are not the heading.
        let page = "Contents\n1 Scope\t3\nAs the scope says,\n\n1 Scope\n\nText.";
        assert_eq!(find_words(page, "Scope"), page.find("1 Scope\n\n"));
        assert_eq!(find_words("nothing here", "Purpose"), None);
    }

    #[test]
    fn sections_tile_the_text() {
        let text = "Intro\n\n1 Scope\n\nText one.\n\n1.1 Detail\n\nMore.\n\n2 End\n\nLast.";
        let p1_end = text.find("\n\n2 End").unwrap();
        let pages = vec![Span::new(0, p1_end), Span::new(p1_end + 2, text.len())];
        let entries = vec![
            Entry { level: 1, title: "Scope".into(), page: 1 },
            Entry { level: 2, title: "Detail".into(), page: 1 },
            Entry { level: 1, title: "End".into(), page: 2 },
        ];
        let s = sections(&entries, text, &pages);
        let heads: Vec<_> = s.iter().map(|s| s.headings.join("/")).collect();
        assert_eq!(heads, ["", "Scope", "Scope/Detail", "End"]);
        assert_eq!(s[0].span.start, 0);
        assert_eq!(s.last().map(|s| s.span.end), Some(text.len()));
        assert!(s.windows(2).all(|w| w[0].span.end == w[1].span.start));
        assert_eq!(&text[s[1].span.start..s[1].span.start + 7], "1 Scope");
    }
}
