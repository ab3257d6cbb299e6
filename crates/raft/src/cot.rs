//! Chain-of-thought answers: turning model output into the reference's `cot_answer` text,
//! finding its quotes, checking each against the oracle, extracting the final answer, and
//! checking that the final answer agrees with what was quoted ([`check_answer`]).

use std::collections::HashSet;

use docraft_core::text::{content_words, non_answer, stem};
use serde::Deserialize;

/// Opens a quote in a chain of thought.
pub const BEGIN_QUOTE: &str = "##begin_quote##";
/// Closes a quote.
pub const END_QUOTE: &str = "##end_quote##";
/// Starts the final answer.
pub const ANSWER_TAG: &str = "<ANSWER>:";

/// Why a chain of thought was not accepted. Serialized in snake_case in rejected records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// No quote of at least the required number of words.
    NoQuote,
    /// A `##begin_quote##` without its `##end_quote##` (or the reverse).
    UnbalancedQuote,
    /// A quote whose words are not in the oracle, in that order.
    QuoteNotInOracle,
    /// No `<ANSWER>:`, or no word after it.
    NoAnswer,
    /// The backend failed for good on this request (the detail says how).
    GenerationError,
    /// The prompt did not fit the model's context.
    ContextTooLong,
    /// The question names a chunk that is not among the chunks given.
    UnknownChunk,
    /// The final answer answers nothing: a question, "I don't know", "no se menciona".
    NonAnswer,
    /// The final answer does not agree with the quotes (see [`check_answer`]).
    UnsupportedAnswer,
    /// The final answer ran into the structured prompt's length limit and was cut off
    /// (see [`cut_answer`]).
    CutAnswer,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::NoQuote => "no_quote",
            Self::UnbalancedQuote => "unbalanced_quote",
            Self::QuoteNotInOracle => "quote_not_in_oracle",
            Self::NoAnswer => "no_answer",
            Self::GenerationError => "generation_error",
            Self::ContextTooLong => "context_too_long",
            Self::UnknownChunk => "unknown_chunk",
            Self::NonAnswer => "non_answer",
            Self::UnsupportedAnswer => "unsupported_answer",
            Self::CutAnswer => "cut_answer",
        };
        f.write_str(s)
    }
}

/// A chain of thought that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The text, with quote markers and the answer tag in their canonical spelling.
    pub cot_answer: String,
    /// Its quotes, as written.
    pub quotes: Vec<String>,
    /// The text after `<ANSWER>:`.
    pub final_answer: String,
}

/// A failed check and what it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which check failed.
    pub problem: Problem,
    /// The offending quote, or a short description.
    pub detail: String,
}

/// The oracle's sentences, in order: split after `.`, `!`, `?`, `;` or `:` followed by
/// whitespace, and at blank lines (single line breaks are wrapped lines); each trimmed, kept when it has at least three words. Every sentence is
/// a verbatim slice of `text`.
#[must_use]
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        // A paragraph break ends a sentence; a single line break (PDF text wraps lines) does not.
        let boundary = (c == '\n' && text[..i].ends_with('\n'))
            || (matches!(c, '.' | '!' | '?' | ';' | ':') && bytes.get(end).is_none_or(|b| b.is_ascii_whitespace()));
        if boundary {
            push_sentence(&mut out, &text[start..end]);
            start = end;
        }
    }
    push_sentence(&mut out, &text[start..]);
    out
}

fn push_sentence<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if s.split_whitespace().count() >= 3 {
        out.push(s);
    }
}

#[derive(Deserialize)]
struct Structured {
    reasoning: Vec<Step>,
    answer: String,
}

#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    thought: String,
    quote: String,
}

/// A reply to the structured prompt (JSON, perhaps in a code fence); `None` for free text.
fn structured(raw: &str) -> Option<Structured> {
    let trimmed = raw.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    serde_json::from_str(trimmed).ok()
}

/// The `cot_answer` text of a model reply: JSON steps (the structured prompt) are rendered
/// as `thought ##begin_quote##quote##end_quote##` lines and `<ANSWER>: answer`; anything else
/// is taken as free text. Returns the text and whether it came from JSON.
#[must_use]
pub fn to_cot_text(raw: &str) -> (String, bool) {
    if let Some(s) = structured(raw) {
        let mut text = String::new();
        for step in &s.reasoning {
            let thought = step.thought.trim();
            if !thought.is_empty() {
                text.push_str(thought);
                text.push(' ');
            }
            text.push_str(BEGIN_QUOTE);
            text.push_str(step.quote.trim());
            text.push_str(END_QUOTE);
            text.push('\n');
        }
        text.push_str(ANSWER_TAG);
        text.push(' ');
        text.push_str(s.answer.trim());
        return (text, true);
    }
    (canonical_markers(raw.trim()), false)
}

/// A structured reply whose answer reached `max_chars` characters (give or take the two a trim
/// can take off): the schema's grammar stopped the model there, so the answer ends wherever it
/// was cut, often mid-word. `None` for a shorter answer or a free-text reply.
#[must_use]
pub fn cut_answer(raw: &str, max_chars: usize) -> Option<Failure> {
    let n = structured(raw)?.answer.chars().count();
    (n + 2 >= max_chars).then(|| Failure {
        problem: Problem::CutAnswer,
        detail: format!("the answer reached the {max_chars}-character limit ({n}) and was cut off"),
    })
}

/// Rewrites the spellings small models use for the markers (`## begin_quote ##`,
/// `##BEGIN_QUOTE##`, `<ANSWER>` without the colon, `ANSWER:` at a line start) to the
/// canonical ones. Words are never changed.
#[must_use]
pub fn canonical_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('#') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match marker_at(tail) {
            Some((canon, len)) => {
                out.push_str(canon);
                rest = &tail[len..];
            }
            None => {
                out.push('#');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    answer_tag(&out)
}

/// A quote marker at the start of `s` in any spacing or case: `##`, optional spaces,
/// `begin_quote`/`begin quote`/`end_quote`, optional spaces, `##`.
fn marker_at(s: &str) -> Option<(&'static str, usize)> {
    let body = s.strip_prefix("##")?;
    let lead = body.len() - body.trim_start_matches(' ').len();
    let body = &body[lead..];
    let lower: String = body.chars().take(11).collect::<String>().to_lowercase();
    let (canon, word_len) = if lower.starts_with("begin_quote") || lower.starts_with("begin quote") {
        (BEGIN_QUOTE, 11)
    } else if lower.starts_with("end_quote") || lower.starts_with("end quote") {
        (END_QUOTE, 9)
    } else {
        return None;
    };
    let after = &body[word_len..];
    let trail = after.len() - after.trim_start_matches(' ').len();
    after[trail..].starts_with("##").then_some((canon, 2 + lead + word_len + trail + 2))
}

fn answer_tag(text: &str) -> String {
    if text.contains(ANSWER_TAG) {
        return text.to_string();
    }
    for variant in ["<ANSWER>", "<answer>:", "<answer>", "ANSWER:", "Answer:", "RESPUESTA:", "Respuesta:"] {
        if let Some(pos) = text.rfind(variant) {
            let at_line_start = pos == 0 || text[..pos].ends_with('\n') || variant.starts_with('<');
            if at_line_start {
                let rest = text[pos + variant.len()..].trim_start_matches(':');
                return format!("{}{ANSWER_TAG} {}", &text[..pos], rest.trim_start());
            }
        }
    }
    text.to_string()
}

/// The quotes of a chain of thought (text between the canonical markers), in order.
///
/// # Errors
/// [`Problem::UnbalancedQuote`] when a marker has no partner.
pub fn quotes(cot: &str) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    let mut rest = cot;
    loop {
        let begin = rest.find(BEGIN_QUOTE);
        let end = rest.find(END_QUOTE);
        match (begin, end) {
            (None, None) => return Ok(out),
            (Some(b), Some(e)) if b < e => {
                let inner = &rest[b + BEGIN_QUOTE.len()..e];
                if inner.contains(BEGIN_QUOTE) {
                    return Err(unbalanced(inner));
                }
                out.push(inner.trim().to_string());
                rest = &rest[e + END_QUOTE.len()..];
            }
            (Some(b), _) => return Err(unbalanced(&rest[b..])),
            (None, Some(e)) => return Err(unbalanced(&rest[..e])),
        }
    }
}

fn unbalanced(near: &str) -> Failure {
    Failure { problem: Problem::UnbalancedQuote, detail: near.chars().take(120).collect() }
}

/// Text compared for quotes: the pipeline's one comparison form (compatibility-normalized,
/// lower case, typographic quotes and dashes as ASCII, every run of whitespace one space;
/// accents kept, since a quote must be verbatim).
pub use docraft_core::text::normalize;

/// Whether `quote` is in `oracle` up to whitespace, case and the quote marks or end
/// punctuation a model wraps around a quote. An elision (`...` or `…`) may join parts that
/// each appear, in order; no word may be missing from the oracle.
#[must_use]
pub fn quote_in(quote: &str, oracle_normalized: &str) -> bool {
    let q = normalize(quote);
    let mut from = 0;
    let mut any = false;
    for part in q.split("...").flat_map(|p| p.split('…')) {
        let part = part.trim_matches(|c: char| c.is_whitespace() || "\"'.,;:!?¿¡()[]".contains(c));
        if part.is_empty() {
            continue;
        }
        match oracle_normalized[from..].find(part) {
            Some(pos) => {
                from += pos + part.len();
                any = true;
            }
            None => return false,
        }
    }
    any
}

/// Checks a chain of thought against its oracle: every quote found in it, at least one quote
/// of `min_quote_words` words, and a non-empty final answer.
///
/// # Errors
/// The first [`Failure`].
pub fn verify(cot: &str, oracle: &str, min_quote_words: usize) -> Result<Verified, Failure> {
    let cot = canonical_markers(cot.trim());
    let found = quotes(&cot)?;
    let oracle_n = normalize(oracle);
    if let Some(bad) = found.iter().find(|q| !quote_in(q, &oracle_n)) {
        return Err(Failure { problem: Problem::QuoteNotInOracle, detail: bad.chars().take(200).collect() });
    }
    if !found.iter().any(|q| q.split_whitespace().count() >= min_quote_words) {
        let detail = format!("{} quote(s), none of {min_quote_words}+ words", found.len());
        return Err(Failure { problem: Problem::NoQuote, detail });
    }
    let Some(final_answer) = final_answer(&cot).filter(|a| a.chars().any(char::is_alphanumeric)) else {
        return Err(Failure { problem: Problem::NoAnswer, detail: String::new() });
    };
    Ok(Verified { cot_answer: cot, quotes: found, final_answer })
}

/// How a final answer stands to its chain of thought: counts of its claim words (see
/// [`check_answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// Content words of the final answer that are not in the question.
    pub claim_words: usize,
    /// Of those, words found in the quotes.
    pub in_quotes: usize,
    /// Of those, words found in the quotes or anywhere in the oracle.
    pub in_oracle: usize,
}

impl Support {
    /// Share of the claim words found in the quotes or the oracle (1 with no claim word).
    #[must_use]
    pub fn share(&self) -> f32 {
        if self.claim_words == 0 {
            return 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let share = self.in_oracle as f32 / self.claim_words as f32;
        share
    }
}

/// A word as answers and quotes are compared: numbers whole, other words without a plural
/// `s` and cut to a [`stem`] ("pumps" and "pump", "documentos" and "documento" meet).
fn claim_key(word: &str) -> String {
    if word.chars().any(|c| c.is_ascii_digit()) {
        return word.to_string();
    }
    let singular = if word.chars().count() >= 4 { word.strip_suffix('s').unwrap_or(word) } else { word };
    stem(singular)
}

/// Words that answer a yes/no question without claiming anything (folded).
const AFFIRMATIONS: &[&str] =
    &["yes", "yeah", "true", "false", "correct", "incorrect", "cierto", "falso", "verdadero", "correcto"];

fn keys(text: &str, lang: &str) -> HashSet<String> {
    content_words(text, lang).iter().map(|w| claim_key(w)).collect()
}

/// The [`Support`] of `final_answer` by `quotes` and `oracle`: its claim words are its content
/// words in `lang` (numbers included), compared by their claim keys (singular and stemmed; numbers as written), less those of the question
/// (restating the question claims nothing).
#[must_use]
pub fn answer_support(final_answer: &str, quotes: &[String], oracle: &str, question: &str, lang: &str) -> Support {
    let asked = keys(question, lang);
    let quoted: HashSet<String> = quotes.iter().flat_map(|q| keys(q, lang)).collect();
    let in_oracle = keys(oracle, lang);
    let claim: Vec<String> = content_words(final_answer, lang)
        .iter()
        .filter(|w| !AFFIRMATIONS.contains(&w.as_str()))
        .map(|w| claim_key(w))
        .filter(|k| !asked.contains(k))
        .collect();
    Support {
        claim_words: claim.len(),
        in_quotes: claim.iter().filter(|k| quoted.contains(*k)).count(),
        in_oracle: claim.iter().filter(|k| quoted.contains(*k) || in_oracle.contains(*k)).count(),
    }
}

/// Checks that a verified chain of thought's final answer agrees with what it quoted. The
/// rule:
///
/// 1. The final answer is an answer: not a question, not "I don't know" or "no se menciona
///    en el texto" ([`non_answer`]), else [`Problem::NonAnswer`].
/// 2. Its claim words ([`answer_support`]: content words and numbers not already in the
///    question, "yes"/"sí"/"true" left out) are, at least `min_support` of them, found in the quotes or the oracle, and
///    at least half that share (and at least one word) in the quotes themselves
///    ([`quoted_needed`]): the answer says what the quoted text says, not something the model
///    added or took from elsewhere, and its quotes are the ones that support it, not a true
///    sentence beside the point. Else [`Problem::UnsupportedAnswer`].
///
/// An answer without claim words (it restates the question, or is "Yes") agrees.
///
/// # Errors
/// The [`Failure`], with the counts in its detail.
pub fn check_answer(v: &Verified, oracle: &str, question: &str, lang: &str, min_support: f32) -> Result<(), Failure> {
    if let Some(why) = non_answer(&v.final_answer) {
        return Err(Failure { problem: Problem::NonAnswer, detail: format!("{why}: {}", v.final_answer) });
    }
    let s = answer_support(&v.final_answer, &v.quotes, oracle, question, lang);
    if s.claim_words == 0 {
        return Ok(());
    }
    let needed = quoted_needed(s.claim_words, min_support);
    if s.in_quotes < needed || s.share() < min_support {
        let detail = format!(
            "of the final answer's {} claim words, {} are in the quotes and {} in the quotes or the oracle \
             (needs {needed} in the quotes and {:.0}% in all)",
            s.claim_words,
            s.in_quotes,
            s.in_oracle,
            min_support * 100.0
        );
        return Err(Failure { problem: Problem::UnsupportedAnswer, detail });
    }
    Ok(())
}

/// How many of an answer's `claim_words` its quotes must hold under [`check_answer`] with
/// `min_support`: half the share asked of quotes and oracle together, rounded up, at least one.
/// The RAFT measurement (docs/QUALITY.md) found answers that quote a true sentence next to the
/// one that supports them ("The default preprocessor list is system dependent." for what
/// `$MANROFFSEQ` does): one shared word let them through.
#[must_use]
pub fn quoted_needed(claim_words: usize, min_support: f32) -> usize {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = (claim_words as f32 * min_support / 2.0).ceil() as usize;
    needed.max(1)
}

/// The text after the last `<ANSWER>:`, trimmed (the reference's `extract_final_answer`).
#[must_use]
pub fn final_answer(cot: &str) -> Option<String> {
    cot.rfind(ANSWER_TAG).map(|pos| cot[pos + ANSWER_TAG.len()..].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORACLE: &str = "Tighten the flange bolts to 45 Nm.\nUse a calibrated torque wrench; check it every  six months.\n\nEl técnico\nfirma la hoja";

    #[test]
    fn sentences_are_verbatim_slices() {
        let s = sentences(ORACLE);
        assert_eq!(
            s,
            vec![
                "Tighten the flange bolts to 45 Nm.",
                "Use a calibrated torque wrench;",
                "check it every  six months.",
                "El técnico\nfirma la hoja"
            ]
        );
        assert!(s.iter().all(|x| ORACLE.contains(x)));
        assert_eq!(sentences("Version 1.2 of the tool ships today"), vec!["Version 1.2 of the tool ships today"]);
    }

    #[test]
    fn quotes_tolerate_case_and_whitespace_but_not_new_words() {
        let o = normalize(ORACLE);
        assert!(quote_in("tighten the FLANGE bolts\n to 45 nm", &o));
        assert!(quote_in("\u{201c}check it every six months.\u{201d}", &o));
        assert!(quote_in("Tighten the flange bolts ... six months", &o));
        assert!(quote_in("el TÉCNICO firma", &o));
        assert!(!quote_in("Tighten the flange bolts to 50 Nm", &o));
        assert!(!quote_in("Tighten all the flange bolts", &o));
        assert!(!quote_in("six months ... Tighten the flange bolts", &o), "parts must keep their order");
        assert!(!quote_in("...", &o));
    }

    #[test]
    fn verify_accepts_a_good_cot_and_names_each_failure() {
        let good = "The manual says ## Begin_Quote ##Tighten the flange bolts to 45 Nm.##end_quote## so the torque is known.\n<ANSWER>: 45 Nm";
        let v = verify(good, ORACLE, 3).unwrap();
        assert_eq!(v.final_answer, "45 Nm");
        assert_eq!(v.quotes, vec!["Tighten the flange bolts to 45 Nm."]);
        assert!(v.cot_answer.contains("##begin_quote##Tighten"));

        let invented = "##begin_quote##Tighten the bolts to 50 Nm##end_quote## <ANSWER>: 50 Nm";
        assert_eq!(verify(invented, ORACLE, 3).unwrap_err().problem, Problem::QuoteNotInOracle);
        let open = "##begin_quote##Tighten the flange bolts <ANSWER>: 45";
        assert_eq!(verify(open, ORACLE, 3).unwrap_err().problem, Problem::UnbalancedQuote);
        let none = "It is 45 Nm. <ANSWER>: 45 Nm";
        assert_eq!(verify(none, ORACLE, 3).unwrap_err().problem, Problem::NoQuote);
        let short = "##begin_quote##45 Nm##end_quote## <ANSWER>: 45 Nm";
        assert_eq!(verify(short, ORACLE, 3).unwrap_err().problem, Problem::NoQuote);
        let no_answer = "##begin_quote##Tighten the flange bolts##end_quote## so 45.";
        assert_eq!(verify(no_answer, ORACLE, 3).unwrap_err().problem, Problem::NoAnswer);
        let dots = "##begin_quote##Tighten the flange bolts##end_quote## <ANSWER>: ...";
        assert_eq!(verify(dots, ORACLE, 3).unwrap_err().problem, Problem::NoAnswer);
        let variant = "##begin_quote##Tighten the flange bolts##end_quote##\nAnswer: 45 Nm";
        assert_eq!(verify(variant, ORACLE, 3).unwrap().final_answer, "45 Nm");
    }

    #[test]
    fn final_answers_must_agree_with_their_quotes() {
        let q = "What torque are the flange bolts tightened to?";
        let cot = |answer: &str| {
            verify(
                &format!("##begin_quote##Tighten the flange bolts to 45 Nm.##end_quote##\n<ANSWER>: {answer}"),
                ORACLE,
                3,
            )
            .unwrap()
        };
        let ok = |answer: &str| check_answer(&cot(answer), ORACLE, q, "en", 0.5);
        let problem = |answer: &str| ok(answer).unwrap_err().problem;
        assert_eq!(ok("45 Nm"), Ok(()));
        assert_eq!(ok("The flange bolts are tightened to 45 Nm."), Ok(()), "words of the question are no claim");
        assert_eq!(ok("45 Nm, with a calibrated torque wrench."), Ok(()), "the rest of the oracle supports it");
        assert_eq!(ok("Yes."), Ok(()), "nothing claimed beyond the question");
        assert_eq!(problem("50 Nm"), Problem::UnsupportedAnswer, "a number the quote does not give");
        assert_eq!(problem("Hand tight, then a quarter turn with pliers."), Problem::UnsupportedAnswer);
        assert_eq!(
            problem("Every six months."),
            Problem::UnsupportedAnswer,
            "in the oracle but not in what was quoted"
        );
        assert_eq!(problem("I don't know."), Problem::NonAnswer);
        assert_eq!(problem("What torque?"), Problem::NonAnswer);
        assert!(ok("50 Nm").unwrap_err().detail.contains("1 claim words"), "{:?}", ok("50 Nm"));
        // Spanish, with plurals and inflections meeting.
        let oracle =
            "Las copias de seguridad se conservan treinta días. Pasado ese plazo, el archivo no se puede recuperar.";
        let v = verify(
            "##begin_quote##Las copias de seguridad se conservan treinta días.##end_quote##\n<ANSWER>: Treinta días.",
            oracle,
            3,
        )
        .unwrap();
        let q = "¿Cuánto tiempo se conserva una copia de seguridad?";
        assert_eq!(check_answer(&v, oracle, q, "es", 0.5), Ok(()));
        let v = Verified { final_answer: "Un año, en la nube.".into(), ..v };
        assert_eq!(check_answer(&v, oracle, q, "es", 0.5).unwrap_err().problem, Problem::UnsupportedAnswer);
        let v = Verified { final_answer: "No se menciona en el texto.".into(), ..v };
        assert_eq!(check_answer(&v, oracle, q, "es", 0.5).unwrap_err().problem, Problem::NonAnswer);
    }

    /// A quote beside the point: true, in the oracle, sharing one word with the answer, but not
    /// what supports it (two records of the RAFT measurement, man(1)'s `$MANROFFSEQ`).
    #[test]
    fn quotes_must_be_the_ones_that_support_the_answer() {
        let oracle = "$MANROFFSEQ If $MANROFFSEQ is set, its value is used to determine the set of \
                      preprocessors to pass each manual page through. The default preprocessor list is \
                      system dependent.";
        let check = |question: &str, quote: &str, answer: &str| {
            let v = verify(&format!("##begin_quote##{quote}##end_quote##\n<ANSWER>: {answer}"), oracle, 3).unwrap();
            check_answer(&v, oracle, question, "en", 0.5)
        };
        let what = "What does $MANROFFSEQ do?";
        let answer =
            "The value of $MANROFFSEQ is used to determine which preprocessors are applied to each manual page.";
        let beside = check(what, "The default preprocessor list is system dependent.", answer).unwrap_err();
        assert_eq!(beside.problem, Problem::UnsupportedAnswer);
        assert!(beside.detail.contains("1 are in the quotes") && beside.detail.contains("needs 2"), "{beside:?}");
        let right = "If $MANROFFSEQ is set, its value is used to determine the set of preprocessors";
        assert_eq!(check(what, right, answer), Ok(()));
        assert_eq!(
            check(
                "What is the default value of $MANROFFSEQ?",
                "The default preprocessor list is system dependent.",
                "The default value of $MANROFFSEQ is system dependent."
            ),
            Ok(())
        );
        assert_eq!(quoted_needed(0, 0.5), 1);
        assert_eq!(quoted_needed(7, 0.5), 2);
        assert_eq!(quoted_needed(8, 0.5), 2);
        assert_eq!(quoted_needed(9, 0.5), 3);
    }

    #[test]
    fn structured_replies_render_as_reference_text() {
        let raw = r#"{"reasoning": [{"thought": "The torque is given.", "quote": "Tighten the flange bolts to 45 Nm."}], "answer": "45 Nm"}"#;
        let (text, structured) = to_cot_text(raw);
        assert!(structured);
        assert_eq!(
            text,
            "The torque is given. ##begin_quote##Tighten the flange bolts to 45 Nm.##end_quote##\n<ANSWER>: 45 Nm"
        );
        assert_eq!(verify(&text, ORACLE, 3).unwrap().final_answer, "45 Nm");
        let (free, structured) = to_cot_text("plain text <ANSWER>: x");
        // An answer the schema's length limit cut off is caught; a shorter one and free text
        // are not.
        let long = serde_json::json!({"reasoning": [{"thought": "t", "quote": "q"}], "answer": "x".repeat(300)});
        let cut = cut_answer(&long.to_string(), 300).unwrap();
        assert_eq!(cut.problem, Problem::CutAnswer);
        assert!(cut.detail.contains("300"), "{}", cut.detail);
        let short = serde_json::json!({"reasoning": [{"thought": "t", "quote": "q"}], "answer": "18 Nm."});
        assert!(cut_answer(&short.to_string(), 300).is_none());
        assert!(cut_answer(&"x".repeat(400), 300).is_none());
        assert!(!structured);
        assert_eq!(free, "plain text <ANSWER>: x");
    }
}
