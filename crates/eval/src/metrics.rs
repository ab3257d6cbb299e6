//! Answer scores, SQuAD-style: answers are normalized (lowercase, punctuation and articles
//! removed, English and Spanish) before comparing, by [`docraft_core::text::answer_tokens`].

use std::collections::HashMap;

/// Marks of a quote in a chain of thought.
pub const BEGIN_QUOTE: &str = "##begin_quote##";
/// End of a quote.
pub const END_QUOTE: &str = "##end_quote##";
/// What precedes the final answer.
pub const ANSWER_TAG: &str = "<ANSWER>:";

/// The tokens of `text` after normalization ([`docraft_core::text::answer_tokens`]).
#[must_use]
pub fn tokens(text: &str) -> Vec<String> {
    docraft_core::text::answer_tokens(text)
}

/// `prediction` and `gold` are the same after normalization.
#[must_use]
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    tokens(prediction) == tokens(gold)
}

/// Harmonic mean of token precision and recall (bag of tokens).
#[must_use]
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let (p, g) = (tokens(prediction), tokens(gold));
    if p.is_empty() || g.is_empty() {
        return if p == g { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t.as_str()).filter(|c| **c > 0) {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let (precision, recall) = (common as f64 / p.len() as f64, common as f64 / g.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// The normalized gold answer appears, as a token sequence, in the normalized prediction.
#[must_use]
pub fn contains_gold(prediction: &str, gold: &str) -> bool {
    let (p, g) = (tokens(prediction), tokens(gold));
    !g.is_empty() && p.windows(g.len()).any(|w| w == g.as_slice())
}

/// The final answer of a chain of thought: the text after the last `<ANSWER>:` (spellings
/// small models use are accepted), else the whole output.
#[must_use]
pub fn final_answer(output: &str) -> &str {
    for tag in [ANSWER_TAG, "<ANSWER>", "ANSWER:", "Answer:", "RESPUESTA:", "Respuesta:"] {
        if let Some(pos) = output.rfind(tag) {
            return output[pos + tag.len()..].trim();
        }
    }
    output.trim()
}

/// The quotes of a chain of thought (text between the quote marks).
#[must_use]
pub fn quotes(output: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = output;
    while let Some(b) = rest.find(BEGIN_QUOTE) {
        let after = &rest[b + BEGIN_QUOTE.len()..];
        let Some(e) = after.find(END_QUOTE) else { break };
        let q = after[..e].trim();
        if !q.is_empty() {
            out.push(q);
        }
        rest = &after[e + END_QUOTE.len()..];
    }
    out
}

/// How many of `quotes` appear in `context` (compared after normalization).
#[must_use]
pub fn quotes_found(quotes: &[&str], context: &str) -> usize {
    let ctx = tokens(context).join(" ");
    quotes.iter().filter(|q| !tokens(q).is_empty() && ctx.contains(&tokens(q).join(" "))).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_drops_case_punctuation_and_articles() {
        assert!(exact_match("The Archive, room B!", "archive room b"));
        assert!(exact_match("«La sala B».", "sala b"));
        assert!(!exact_match("room B", "room C"));
    }

    #[test]
    fn f1_counts_shared_tokens_once() {
        assert!((token_f1("room b room", "room b") - 0.8).abs() < 1e-9);
        assert!(token_f1("nothing shared", "room b").abs() < 1e-12);
        assert!((token_f1("", "") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn contains_needs_the_whole_sequence() {
        assert!(contains_gold("They keep it in the archive room B daily.", "archive room B"));
        assert!(!contains_gold("room archive B", "archive room B"));
        assert!(!contains_gold("anything", ""));
    }

    #[test]
    fn final_answer_and_quotes_from_a_chain_of_thought() {
        let out = "It says ##begin_quote##backups run nightly##end_quote## and \
                   ##begin_quote##invented text##end_quote##.\n<ANSWER>: nightly";
        assert_eq!(final_answer(out), "nightly");
        assert_eq!(final_answer("just text"), "just text");
        let q = quotes(out);
        assert_eq!(q, vec!["backups run nightly", "invented text"]);
        assert_eq!(quotes_found(&q, "Backups run nightly, at 02:00."), 1);
        assert!(quotes("##begin_quote## unterminated").is_empty());
    }
}
