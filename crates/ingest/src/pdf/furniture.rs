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
    for p in pages.iter_mut() {
        let mut lines: Vec<&str> = p.lines().collect();
        let mut changed = false;
        // Up to two lines at each end: a header line and a page number, say.
        for _ in 0..2 {
            while lines.first().is_some_and(|l| l.trim().is_empty()) {
                lines.remove(0);
            }
            match lines.first() {
                Some(l) if lines.len() > 1 && (is_page_number(l) || headers.contains(&shape(l))) => {
                    lines.remove(0);
                    changed = true;
                    removed += 1;
                }
                _ => break,
            }
        }
        for _ in 0..2 {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            match lines.last() {
                Some(l) if lines.len() > 1 && (is_page_number(l) || footers.contains(&shape(l))) => {
                    lines.pop();
                    changed = true;
                    removed += 1;
                }
                _ => break,
            }
        }
        if changed {
            *p = lines.join("\n").trim().to_string();
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
