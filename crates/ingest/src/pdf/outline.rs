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

/// Where `title` stands in `hay` as a heading (on a line of its own, after at most a
/// section number), ignoring case, punctuation and how whitespace is laid out: outline titles
/// say "TeX" where the page prints "TEX", break lines differently, and the same words appear in
/// tables of contents ("Introduction .... 3") and running text, which do not count.
fn find_words(hay: &str, title: &str) -> Option<usize> {
    let (needle, _) = folded(title);
    let needle: Vec<char> = needle.into_iter().collect::<String>().trim().chars().collect();
    if needle.is_empty() {
        return None;
    }
    let (chars, at) = folded(hay);
    let n = needle.len();
    (0..chars.len().saturating_sub(n - 1)).filter(|&i| chars.get(i..i + n) == Some(needle.as_slice())).find_map(|i| {
        let start = *at.get(i)?;
        let last = *at.get(i + n - 1)?;
        let end = last + hay.get(last..)?.chars().next().map_or(1, char::len_utf8);
        let line_start = hay.get(..start)?.rfind('\n').map_or(0, |p| p + 1);
        let line_end = hay.get(end..)?.find('\n').map_or(hay.len(), |p| end + p);
        let before = hay.get(line_start..start)?.trim();
        let after = hay.get(end..line_end)?.trim();
        let numbering =
            before.len() <= 12 && before.chars().all(|c| c.is_ascii_digit() || c == '.' || c.is_whitespace());
        // The section starts with its number, if it has one.
        let line = hay.get(line_start..start)?;
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
    for e in entries {
        let Some(page) = e.page.checked_sub(1).and_then(|i| pages.get(i)) else { continue };
        // Some producers' destinations are a page early: look on the next page too.
        let window_end = pages.get(e.page).map_or(page.end, |next| next.end);
        let from = cursor.max(page.start);
        let at =
            text.get(from..window_end.max(from)).and_then(|hay| find_words(hay, &e.title)).map_or(from, |i| from + i);
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
