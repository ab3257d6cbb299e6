//! Citations: `[n]` markers rewritten while the text streams, and sentences attributed to the
//! source whose words they use.

use docraft_core::text::stems;

/// Rewrites `[1]`, `[1, 2]` and `[1][2]` markers to the sources' labels as text streams in.
///
/// Text is passed through as it comes, except from an opening `[` until it is clear whether a
/// marker follows (at most a few characters are held back). Numbers that name no source are
/// left as written.
#[derive(Debug, Clone)]
pub struct CitationStream {
    labels: Vec<String>,
    held: String,
    cited: Vec<usize>,
}

/// Characters a marker may hold before it is clearly not one.
const MAX_MARKER: usize = 16;

impl CitationStream {
    /// A rewriter for sources labelled `labels[0]` (marker `[1]`), `labels[1]`, ...
    #[must_use]
    pub fn new(labels: Vec<String>) -> Self {
        Self { labels, held: String::new(), cited: Vec::new() }
    }

    /// The 1-based source numbers cited so far, in order of first citation.
    #[must_use]
    pub fn cited(&self) -> &[usize] {
        &self.cited
    }

    /// Takes the next piece of text; returns what can be shown now.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if self.held.is_empty() {
                if c == '[' {
                    self.held.push(c);
                } else {
                    out.push(c);
                }
                continue;
            }
            self.held.push(c);
            if c == ']' {
                out += &self.resolve();
            } else if !(c.is_ascii_digit() || c == ',' || c == ' ') || self.held.len() > MAX_MARKER {
                // Not a marker: show it; a new `[` may start one.
                let mut held = std::mem::take(&mut self.held);
                if held.ends_with('[') {
                    held.pop();
                    self.held.push('[');
                }
                out += &held;
            }
        }
        out
    }

    /// What is still held back (an unfinished `[...` at the end of the text).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn resolve(&mut self) -> String {
        let held = std::mem::take(&mut self.held);
        let inner = &held[1..held.len() - 1];
        let nums: Option<Vec<usize>> = inner.split(',').map(|n| n.trim().parse::<usize>().ok()).collect();
        match nums {
            Some(nums) if !nums.is_empty() && nums.iter().all(|n| (1..=self.labels.len()).contains(n)) => {
                for n in &nums {
                    if !self.cited.contains(n) {
                        self.cited.push(*n);
                    }
                }
                let labels: Vec<&str> = nums.iter().map(|n| self.labels[n - 1].as_str()).collect();
                format!("[{}]", labels.join("; "))
            }
            _ => held,
        }
    }
}

/// The sentences of `text` (split after `.`, `!`, `?` and line breaks), trimmed, non-empty.
#[must_use]
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end_here = match c {
            // A wrapped line (PDF text) goes on: "...se guardan en\nel servidor".
            '\n' => !docraft_core::text::continues(&text[start..i], &text[i + 1..]),
            '.' | '!' | '?' => chars.peek().is_none_or(|(_, n)| n.is_whitespace()),
            _ => false,
        };
        if end_here {
            let s = text[start..i + c.len_utf8()].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + c.len_utf8();
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// The source (index into `sources`) that supports `sentence`, with the share of support,
/// when that share is at least `min_share`.
///
/// Words are compared as [`docraft_core::text::stems`] of the content words of `lang`
/// (accents folded, so a model that writes "informacion" still uses "información"). Only
/// what the sentence adds to the `question` counts: words (stems) already in the question
/// prove nothing, since a model that restates the question uses them too. A sentence adding
/// fewer than two such words is not attributed (too little to tell).
#[must_use]
pub fn attribute(sentence: &str, question: &str, sources: &[&str], min_share: f64, lang: &str) -> Option<(usize, f64)> {
    let asked = stems(question, lang);
    let new: Vec<String> = stems(sentence, lang).into_iter().filter(|w| !asked.contains(w)).collect();
    if new.len() < 2 {
        return None;
    }
    let mut best: Option<(usize, f64)> = None;
    for (i, text) in sources.iter().enumerate() {
        let vocab = stems(text, lang);
        #[allow(clippy::cast_precision_loss)]
        let share = new.iter().filter(|w| vocab.contains(*w)).count() as f64 / new.len() as f64;
        if share >= min_share && best.is_none_or(|b| share > b.1) {
            best = Some((i, share));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(labels: &[&str], pieces: &[&str]) -> (String, Vec<usize>) {
        let mut s = CitationStream::new(labels.iter().map(|l| (*l).to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            out += &s.push(p);
        }
        out += &s.finish();
        (out, s.cited().to_vec())
    }

    #[test]
    fn markers_are_rewritten_across_pieces() {
        let (out, cited) = run(&["a.pdf, p. 1", "b.md"], &["X [", "2", "] and Y [1, 2]", "[1]."]);
        assert_eq!(out, "X [b.md] and Y [a.pdf, p. 1; b.md][a.pdf, p. 1].");
        assert_eq!(cited, vec![2, 1]);
    }

    #[test]
    fn other_brackets_pass_through_unchanged() {
        let (out, cited) = run(&["a"], &["see [note] and [3] and [x[1]", " and an open [12"]);
        assert_eq!(out, "see [note] and [3] and [x[a] and an open [12");
        assert_eq!(cited, vec![1]);
    }

    #[test]
    fn sentences_split_on_ends_not_decimals() {
        assert_eq!(
            sentences("Torque is 4.5 N·m. Then stop!\nNext line"),
            vec!["Torque is 4.5 N·m.", "Then stop!", "Next line"]
        );
        // Wrapped lines are one sentence; a list or a new capitalized line is not.
        assert_eq!(
            sentences(
                "Los documentos en papel de\nnivel confidencial se guardan en la oficina de\nCalamocha. Fin\n- uno\nDos"
            ),
            vec![
                "Los documentos en papel de\nnivel confidencial se guardan en la oficina de\nCalamocha.",
                "Fin",
                "- uno",
                "Dos"
            ]
        );
    }

    #[test]
    fn attribution_picks_the_source_with_the_words_the_question_lacks() {
        let sources = ["Las copias de seguridad se hacen cada noche a las 02:00.", "El café está en la cocina."];
        let q = "¿Cuándo se hacen las copias de seguridad?";
        let got = attribute("Las copias de seguridad se hacen cada noche a las 02:00.", q, &sources, 0.5, "es");
        assert_eq!(got.map(|g| g.0), Some(0));
        assert_eq!(attribute("Something entirely different happens here.", q, &sources, 0.5, "es"), None);
        // Restating the question is not support.
        assert_eq!(attribute("Las copias de seguridad se hacen.", q, &sources, 0.0, "es"), None);
        // Accents the model left out still attribute.
        let sources = ["La información confidencial se guarda en el archivo.", "El café está en la cocina."];
        let got = attribute("La informacion se guarda en el archivo.", "¿Dónde está?", &sources, 0.9, "es");
        assert_eq!(got.map(|g| g.0), Some(0));
    }
}
