//! Page furniture: running headers and footers, and page numbers. They repeat on every page,
//! carry no content, and would otherwise land in the middle of chunks ("... the meter is\n\n
//! 12\n\nreplaced ..."). Only a page's first and last lines are candidates, and a line is
//! furniture when it is a bare page number or when the same line (digits ignored) opens or
//! closes most pages of the document.

use std::collections::HashMap;

/// Fewer pages than this and repetition proves nothing.
const MIN_PAGES: usize = 3;
/// Share of the pages a first/last line must appear on to count as a running header/footer.
const MIN_SHARE: f64 = 0.6;

/// A line with its digits masked, so "Page 3 of 10" and "Page 4 of 10" compare equal.
fn shape(line: &str) -> String {
    line.trim().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
}

/// "12", "- 12 -", "Page 12", "Página 3 de 10", "12 / 40", "iv".
fn is_page_number(line: &str) -> bool {
    let t = line.trim().trim_matches(|c: char| c == '-' || c == '–' || c == '—' || c.is_whitespace());
    if t.is_empty() || t.len() > 24 {
        return false;
    }
    let lower = t.to_lowercase();
    let rest = ["page", "página", "pagina", "pág.", "pag.", "p."]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower)
        .trim();
    let mut parts = rest.split(|c: char| c == '/' || c.is_whitespace()).filter(|w| !w.is_empty());
    let Some(first) = parts.next() else {
        return false;
    };
    let number = |w: &str| w.chars().all(|c| c.is_ascii_digit()) && w.len() <= 5;
    let roman = |w: &str| w.len() <= 6 && w.chars().all(|c| "ivxlc".contains(c));
    if !(number(first) || roman(first)) {
        return false;
    }
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => true,
        (Some(w), None, _) if number(w) => true,                 // "12 / 40"
        (Some("of" | "de"), Some(w), None) if number(w) => true, // "3 of 10"
        _ => false,
    }
}

fn first_line(p: &str) -> Option<&str> {
    p.lines().find(|l| !l.trim().is_empty())
}

fn last_line(p: &str) -> Option<&str> {
    p.lines().rev().find(|l| !l.trim().is_empty())
}

/// Removes running headers, footers and page numbers from the pages' texts, in place.
/// Returns how many lines were removed.
pub(crate) fn strip(pages: &mut [String]) -> usize {
    let text_pages = pages.iter().filter(|p| !p.trim().is_empty()).count();
    let repeated = |pick: fn(&str) -> Option<&str>| -> Vec<String> {
        if text_pages < MIN_PAGES {
            return Vec::new();
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in pages.iter() {
            if let Some(l) = pick(p) {
                *counts.entry(shape(l)).or_default() += 1;
            }
        }
        counts.into_iter().filter(|(_, n)| *n as f64 >= MIN_SHARE * text_pages as f64).map(|(s, _)| s).collect()
    };
    let headers = repeated(first_line);
    let footers = repeated(last_line);
    let mut removed = 0;
    let blank = |l: &str| l.trim().is_empty();
    for p in pages.iter_mut() {
        let lines: Vec<&str> = p.lines().collect();
        // The kept lines are lines[lo..hi]; up to two go at each end (a header and a page
        // number, say), and a page keeps at least one line.
        let (mut lo, mut hi) = (0, lines.len());
        for (top, running) in [(true, &headers), (false, &footers)] {
            for _ in 0..2 {
                while lo < hi && lines.get(if top { lo } else { hi - 1 }).is_some_and(|l| blank(l)) {
                    if top { lo += 1 } else { hi -= 1 }
                }
                let edge = if top { lo } else { hi.saturating_sub(1) };
                match lines.get(edge) {
                    Some(l) if hi - lo > 1 && (is_page_number(l) || running.contains(&shape(l))) => {
                        if top {
                            lo += 1
                        } else {
                            hi -= 1
                        }
                        removed += 1;
                    }
                    _ => break,
                }
            }
        }
        if lo > 0 || hi < lines.len() {
            *p = lines.get(lo..hi).unwrap_or_default().join("\n").trim().to_string();
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers() {
        for yes in ["12", "- 12 -", "Page 3", "Página 3 de 10", "12 / 40", "iv", "3 of 10"] {
            assert!(is_page_number(yes), "{yes}");
        }
        for no in ["12 monkeys", "Table 3", "1. Objeto", "I am here", ""] {
            assert!(!is_page_number(no), "{no}");
        }
    }

    #[test]
    fn strips_running_lines_and_numbers_only() {
        let mut pages: Vec<String> =
            (1..=4).map(|n| format!("ACME Handbook — rev 4\n\nBody text of page {n}.\n\nMore text.\n\n{n}")).collect();
        pages.push("Short last page without furniture.\nSecond line.".into());
        let removed = strip(&mut pages);
        assert_eq!(removed, 8);
        assert_eq!(pages[0], "Body text of page 1.\n\nMore text.");
        assert_eq!(pages[4], "Short last page without furniture.\nSecond line.");
        // A two-page document: repetition proves nothing, only bare numbers go.
        let mut two = vec!["Title\nText\n1".to_string(), "Title\nMore\n2".to_string()];
        strip(&mut two);
        assert_eq!(two, ["Title\nText", "Title\nMore"]);
        // A page that is only a number keeps it (nothing else to keep).
        let mut lone = vec!["7".to_string()];
        strip(&mut lone);
        assert_eq!(lone, ["7"]);
    }
}
