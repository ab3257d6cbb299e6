//! Quality filters on generated pairs. Each is switchable and each rejection is counted
//! under its [`Reason`]; nothing is dropped silently.
//!
//! In order: length; the question is a question ([`is_question`]) that ends with its
//! question mark ([`text_after_question`]); neither leans on the
//! passage ([`passage_reference`], [`answer_passage_reference`]); the answer answers
//! ([`non_answer`]); the answer is grounded in the chunk ([`grounding`]); the pair is in the
//! chunk's language. Then, across the run, near-duplicate questions ([`Deduper`]).

use std::collections::{BTreeSet, HashMap};

use docraft_core::text::{grounding, is_content_word, non_answer, stem, words};
use docraft_core::{EmbedError, Embedder, guess_language};
use serde::{Deserialize, Serialize};

use crate::parse::RawPair;
use crate::quality::{answer_passage_reference, is_question, passage_reference, text_after_question};

/// Why a candidate record was rejected. Stable snake_case names in files and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The output held no JSON or labelled pairs, even after repair.
    Unparseable,
    /// An item without a question or an answer.
    Incomplete,
    /// The backend failed on this chunk (after its retries).
    BackendError,
    /// The chunk and prompt do not fit in the model's context.
    ContextLength,
    /// More pairs than asked for: the extra ones.
    Surplus,
    /// Question or answer shorter than the bounds.
    TooShort,
    /// Question or answer longer than the bounds.
    TooLong,
    /// Too little of the answer is found in the chunk.
    NotGrounded,
    /// The pair is not in the chunk's language.
    WrongLanguage,
    /// The question repeats one already accepted in this run.
    Duplicate,
    /// The question is not asked as a question (no `?`/`¿` and no question word first).
    NotAQuestion,
    /// The question (or the answer) points at the passage ("the text", "el fragmento"): a
    /// reader without it cannot understand the pair.
    RefersToPassage,
    /// The answer answers nothing: a question, "I don't know", "no se menciona en el texto".
    NonAnswer,
    /// The judge model scored the pair below the threshold.
    JudgeLowScore,
    /// The judge model's output held no scores (kept in the record's `raw`).
    JudgeUnparseable,
    /// The judge model failed on this pair (after its retries).
    JudgeError,
    /// A skipped chunk: a table of contents or an index.
    Toc,
    /// A skipped chunk: copyright or license text.
    Boilerplate,
    /// A skipped chunk: menus, breadcrumbs, link lists.
    Navigation,
}

impl Reason {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::Incomplete => "incomplete",
            Self::BackendError => "backend_error",
            Self::ContextLength => "context_length",
            Self::Surplus => "surplus",
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::NotGrounded => "not_grounded",
            Self::WrongLanguage => "wrong_language",
            Self::Duplicate => "duplicate",
            Self::NotAQuestion => "not_a_question",
            Self::RefersToPassage => "refers_to_passage",
            Self::NonAnswer => "non_answer",
            Self::JudgeLowScore => "judge_low_score",
            Self::JudgeUnparseable => "judge_unparseable",
            Self::JudgeError => "judge_error",
            Self::Toc => "toc",
            Self::Boilerplate => "boilerplate",
            Self::Navigation => "navigation",
        }
    }

    /// Whether this is why a whole chunk was skipped before generation (`toc`,
    /// `boilerplate`, `navigation`) rather than why a candidate pair was rejected.
    #[must_use]
    pub fn is_skip(self) -> bool {
        matches!(self, Self::Toc | Self::Boilerplate | Self::Navigation)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which filters run, with their thresholds. `None` switches a filter off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Least share of the answer's content words that must appear in the chunk (0..=1), as
    /// [`docraft_core::text::grounding`] measures it in the chunk's language.
    pub grounding: Option<f32>,
    /// Question length bounds in characters, inclusive.
    pub question_chars: Option<(usize, usize)>,
    /// Answer length bounds in characters, inclusive.
    pub answer_chars: Option<(usize, usize)>,
    /// Reject pairs whose language differs from the chunk's (when the pair is long enough to
    /// tell).
    pub language: bool,
    /// Reject questions not asked as questions ([`is_question`]) and questions followed by
    /// more text, often their own answer ([`text_after_question`]).
    pub question_form: bool,
    /// Reject pairs that point at the passage: "the text", "este fragmento", "según el
    /// documento" ([`passage_reference`] on the question, [`answer_passage_reference`] on the
    /// answer).
    pub self_contained: bool,
    /// With `self_contained`, also check the answer ([`answer_passage_reference`]). On for
    /// question/answer pairs, whose answer is the training target. RAFT switches it off: the
    /// answer it keeps is the chain of thought's, and the question's draft answer ("Este
    /// fragmento describe ...", "nroff justifica el texto ...") says nothing about whether the
    /// question itself stands alone.
    #[serde(default = "on")]
    pub self_contained_answer: bool,
    /// Reject answers that answer nothing: a question, "I don't know", "no se menciona en el
    /// texto" ([`non_answer`]).
    pub answer_form: bool,
    /// Near-duplicate questions: cosine similarity with an embedder, else the Jaccard
    /// similarity of the questions' tokens (see [`Deduper`]), at or above which a question is
    /// a duplicate.
    pub dedup: Option<f32>,
}

/// Serde's default for switches that default to on.
fn on() -> bool {
    true
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            grounding: Some(0.5),
            question_chars: Some((8, 300)),
            answer_chars: Some((2, 1000)),
            language: true,
            question_form: true,
            self_contained: true,
            self_contained_answer: true,
            answer_form: true,
            dedup: Some(0.9),
        }
    }
}

impl Filters {
    /// Every filter off.
    #[must_use]
    pub fn none() -> Self {
        Self {
            grounding: None,
            question_chars: None,
            answer_chars: None,
            language: false,
            question_form: false,
            self_contained: false,
            self_contained_answer: false,
            answer_form: false,
            dedup: None,
        }
    }

    /// The per-pair checks (all but duplicates), in order: length, question form, reference
    /// to the passage, answer form, grounding, language. Returns the first failure with a
    /// human-readable detail.
    #[must_use]
    pub fn check(&self, pair: &RawPair, chunk_text: &str, lang: &str) -> Option<(Reason, String)> {
        for (what, text, bounds) in
            [("question", &pair.question, self.question_chars), ("answer", &pair.answer, self.answer_chars)]
        {
            if let Some((min, max)) = bounds {
                let n = text.chars().count();
                if n < min {
                    return Some((Reason::TooShort, format!("{what} has {n} characters, fewer than {min}")));
                }
                if n > max {
                    return Some((Reason::TooLong, format!("{what} has {n} characters, more than {max}")));
                }
            }
        }
        if self.question_form && !is_question(&pair.question) {
            return Some((Reason::NotAQuestion, "no question mark and no question word first".into()));
        }
        if self.question_form
            && let Some(rest) = text_after_question(&pair.question)
        {
            let rest: String = rest.chars().take(60).collect();
            return Some((Reason::NotAQuestion, format!("text after the question mark: \"{rest}\"")));
        }
        if self.self_contained {
            if let Some(p) = passage_reference(&pair.question) {
                return Some((Reason::RefersToPassage, format!("the question says \"{p}\"")));
            }
            if self.self_contained_answer
                && let Some(p) = answer_passage_reference(&pair.answer)
            {
                return Some((Reason::RefersToPassage, format!("the answer says \"{p}\"")));
            }
        }
        if self.answer_form
            && let Some(why) = non_answer(&pair.answer)
        {
            return Some((Reason::NonAnswer, format!("the answer is no answer: {why}")));
        }
        if let Some(min) = self.grounding {
            let score = grounding(&pair.answer, chunk_text, lang);
            if score < min {
                return Some((
                    Reason::NotGrounded,
                    format!(
                        "{:.0}% of the answer's words are in the chunk, fewer than {:.0}%",
                        score * 100.0,
                        min * 100.0
                    ),
                ));
            }
        }
        if self.language {
            let both = format!("{} {}", pair.question, pair.answer);
            if let Some(got) = guess_language(&both)
                && got != lang
            {
                return Some((Reason::WrongLanguage, format!("pair is in {got}, chunk is in {lang}")));
            }
        }
        None
    }
}

/// Finds near-duplicate questions across a run (every chunk of it, and the pairs an earlier
/// run accepted): by embeddings when an [`Embedder`] is given, else by the Jaccard similarity
/// of the questions' [`tokens`](question_tokens) (with an inverted index, so each check
/// touches only questions sharing a token).
///
/// Tokens make the text measure see through wording that does not change a question: case,
/// accents, punctuation, articles and other function words, word order, inflections ("se
/// guardan" / "se deben guardar"). They keep what does change it: the question word
/// ("¿cuándo ...?" is not "¿cómo ...?") and numbers: questions whose numbers differ are never
/// duplicates ("at 20 %" and "at 50 %").
pub struct Deduper<'e> {
    threshold: f32,
    embedder: Option<&'e dyn Embedder>,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    tokens: Vec<QuestionTokens>,
    postings: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for Deduper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduper")
            .field("threshold", &self.threshold)
            .field("embeddings", &self.embedder.is_some())
            .field("questions", &self.texts.len())
            .finish_non_exhaustive()
    }
}

impl<'e> Deduper<'e> {
    /// A deduper at `threshold` similarity, by embeddings when `embedder` is given.
    #[must_use]
    pub fn new(threshold: f32, embedder: Option<&'e dyn Embedder>) -> Self {
        Self {
            threshold,
            embedder,
            texts: Vec::new(),
            vectors: Vec::new(),
            tokens: Vec::new(),
            postings: HashMap::new(),
        }
    }

    /// How many questions it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// For each question in order: `None` if it is new (and it is added), or the earlier
    /// question it duplicates and their similarity. Questions in the same call are compared
    /// with each other too.
    ///
    /// # Errors
    /// [`EmbedError`] from the embedder.
    pub fn check_all(&mut self, questions: &[&str]) -> Result<Vec<Option<(String, f32)>>, EmbedError> {
        let vectors = match self.embedder {
            Some(e) if !questions.is_empty() => Some(e.embed(questions)?),
            _ => None,
        };
        let mut out = Vec::with_capacity(questions.len());
        for (i, q) in questions.iter().enumerate() {
            let hit = match &vectors {
                Some(v) => self.nearest_vector(&v[i]),
                None => self.nearest_text(q),
            };
            match hit {
                Some((j, s)) if s >= self.threshold => out.push(Some((self.texts[j].clone(), s))),
                _ => {
                    self.add(q, vectors.as_ref().map(|v| v[i].clone()));
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// Adds already-accepted questions (a resumed run's earlier output) without checking.
    ///
    /// # Errors
    /// [`EmbedError`] from the embedder.
    pub fn preload(&mut self, questions: &[&str]) -> Result<(), EmbedError> {
        let vectors = match self.embedder {
            Some(e) if !questions.is_empty() => Some(e.embed(questions)?),
            _ => None,
        };
        for (i, q) in questions.iter().enumerate() {
            self.add(q, vectors.as_ref().map(|v| v[i].clone()));
        }
        Ok(())
    }

    fn add(&mut self, q: &str, vector: Option<Vec<f32>>) {
        let id = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        self.texts.push(q.to_string());
        if let Some(v) = vector {
            self.vectors.push(normalize(v));
            return;
        }
        let t = question_tokens(q);
        for token in &t.tokens {
            self.postings.entry(token.clone()).or_default().push(id);
        }
        self.tokens.push(t);
    }

    fn nearest_vector(&self, v: &[f32]) -> Option<(usize, f32)> {
        let v = normalize(v.to_vec());
        self.vectors
            .iter()
            .enumerate()
            .map(|(j, u)| (j, u.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn nearest_text(&self, q: &str) -> Option<(usize, f32)> {
        let t = question_tokens(q);
        if t.tokens.is_empty() {
            return None;
        }
        let mut shared: HashMap<u32, usize> = HashMap::new();
        for token in &t.tokens {
            for id in self.postings.get(token).into_iter().flatten() {
                *shared.entry(*id).or_default() += 1;
            }
        }
        shared
            .into_iter()
            .map(|(id, s)| {
                let j = id as usize;
                let other = &self.tokens[j];
                let sim = if other.numbers == t.numbers {
                    #[allow(clippy::cast_precision_loss)]
                    let jaccard = s as f32 / (t.tokens.len() + other.tokens.len() - s) as f32;
                    jaccard
                } else {
                    0.0
                };
                (j, sim)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Question words, English and Spanish (as [`words`]), each with the form it is compared in:
/// the tokens keep them, since they change what is asked.
const QUESTION_WORDS: &[(&str, &str)] = &[
    ("who", "who"),
    ("whom", "who"),
    ("whose", "whose"),
    ("what", "what"),
    ("when", "when"),
    ("where", "where"),
    ("which", "which"),
    ("why", "why"),
    ("how", "how"),
    ("que", "que"),
    ("cual", "cual"),
    ("cuales", "cual"),
    ("cuando", "cuando"),
    ("donde", "donde"),
    ("adonde", "donde"),
    ("como", "como"),
    ("quien", "quien"),
    ("quienes", "quien"),
    ("cuanto", "cuanto"),
    ("cuanta", "cuanto"),
    ("cuantos", "cuanto"),
    ("cuantas", "cuanto"),
];

/// The tokens a question is compared by in [`Deduper`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionTokens {
    /// Content words as [`stem`]s (function words of English and Spanish left out), question
    /// words, and numbers whole.
    pub tokens: BTreeSet<String>,
    /// The numbers (words holding a digit), sorted.
    pub numbers: BTreeSet<String>,
}

/// The [`QuestionTokens`] of a question: its [`words`] (folded), content words stemmed
/// (function words of both English and Spanish dropped, whatever the language), question
/// words kept, numbers whole. A question of function words only keeps all its words.
#[must_use]
pub fn question_tokens(question: &str) -> QuestionTokens {
    let all = words(question);
    let mut tokens = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for w in &all {
        if w.chars().any(|c| c.is_ascii_digit()) {
            numbers.insert(w.clone());
            tokens.insert(w.clone());
        } else if let Some((_, canon)) = QUESTION_WORDS.iter().find(|(q, _)| q == w) {
            tokens.insert((*canon).to_string());
        } else if is_content_word(w, "*") {
            tokens.insert(stem(w));
        }
    }
    if tokens.is_empty() {
        tokens = all.into_iter().collect();
    }
    QuestionTokens { tokens, numbers }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "Los documentos confidenciales se guardan en el archivo del segundo piso durante 5 años.";

    fn pair(q: &str, a: &str) -> RawPair {
        RawPair { question: q.into(), answer: a.into() }
    }

    #[test]
    fn checks_in_order_with_reasons() {
        let f = Filters::default();
        let ok = pair("¿Dónde se guardan los documentos confidenciales?", "En el archivo del segundo piso.");
        assert_eq!(f.check(&ok, CHUNK, "es"), None);
        // Accents the model dropped still ground the answer.
        let unaccented = pair("¿Cuántos años se guardan los documentos?", "Durante 5 anos.");
        assert_eq!(f.check(&unaccented, CHUNK, "es"), None);
        let short = pair("¿Dónde?", "En el archivo.");
        assert_eq!(f.check(&short, CHUNK, "es").map(|r| r.0), Some(Reason::TooShort));
        let invented = pair("¿Dónde se guardan los documentos confidenciales?", "En una caja fuerte del banco.");
        assert_eq!(f.check(&invented, CHUNK, "es").map(|r| r.0), Some(Reason::NotGrounded));
        let english = pair(
            "Where are the confidential documents kept by the company?",
            "They are kept in the archivo del segundo piso during 5 years, which is where documents go.",
        );
        let f_no_ground = Filters { grounding: None, ..Filters::default() };
        assert_eq!(f_no_ground.check(&english, CHUNK, "es").map(|r| r.0), Some(Reason::WrongLanguage));
        assert_eq!(Filters::none().check(&short, CHUNK, "es"), None);
    }

    const EN_CHUNK: &str = "Routine maintenance takes place every twelve months. Meters installed in corrosive media \
                            are inspected every six months instead.";

    /// Each new filter rejects its bad pairs with its reason, in English and Spanish, lets the
    /// good ones through, and is switched off by its own field.
    #[test]
    fn question_passage_and_answer_filters() {
        let f = Filters::default();
        let good = [
            (pair("How often does routine maintenance take place?", "Every twelve months."), EN_CHUNK, "en"),
            (pair("How often are meters in corrosive media inspected", "Every six months."), EN_CHUNK, "en"),
            (pair("¿Dónde se guardan los documentos confidenciales?", "En el archivo del segundo piso."), CHUNK, "es"),
            (pair("Cuántos años se guardan los documentos confidenciales", "Durante 5 años."), CHUNK, "es"),
            (
                pair("¿Dónde se guardan los documentos confidenciales?\u{bb}.", "En el archivo del segundo piso."),
                CHUNK,
                "es",
            ),
        ];
        for (p, chunk, lang) in &good {
            assert_eq!(f.check(p, chunk, lang), None, "{p:?}");
        }
        let bad = [
            (
                pair("Routine maintenance every twelve months.", "Every twelve months."),
                EN_CHUNK,
                "en",
                Reason::NotAQuestion,
            ),
            (
                pair("Describe the maintenance of the meters.", "Every twelve months."),
                EN_CHUNK,
                "en",
                Reason::NotAQuestion,
            ),
            (
                pair("Los documentos confidenciales se guardan", "En el archivo del segundo piso."),
                CHUNK,
                "es",
                Reason::NotAQuestion,
            ),
            (
                pair(
                    "¿Por qué es necesaria? Porque la cooperativa trata datos personales.",
                    "Por los datos personales.",
                ),
                CHUNK,
                "es",
                Reason::NotAQuestion,
            ),
            (
                pair("What is described in this text?", "Routine maintenance of meters."),
                EN_CHUNK,
                "en",
                Reason::RefersToPassage,
            ),
            (
                pair("According to the passage, how often are meters inspected?", "Every twelve months."),
                EN_CHUNK,
                "en",
                Reason::RefersToPassage,
            ),
            (
                pair("How often are meters inspected?", "The passage says every twelve months."),
                EN_CHUNK,
                "en",
                Reason::RefersToPassage,
            ),
            (
                pair("¿Qué se describe en este texto?", "El archivo del segundo piso."),
                CHUNK,
                "es",
                Reason::RefersToPassage,
            ),
            (
                pair("¿En qué se encuentra el fragmento?", "En el archivo del segundo piso."),
                CHUNK,
                "es",
                Reason::RefersToPassage,
            ),
            (
                pair("Según el documento, ¿dónde se guardan los documentos?", "En el archivo del segundo piso."),
                CHUNK,
                "es",
                Reason::RefersToPassage,
            ),
            (pair("How often are meters inspected?", "I don't know."), EN_CHUNK, "en", Reason::NonAnswer),
            (
                pair("How often are meters inspected?", "How often are they inspected?"),
                EN_CHUNK,
                "en",
                Reason::NonAnswer,
            ),
            (
                pair("How often are meters inspected?", "It cannot be determined from the maintenance section."),
                EN_CHUNK,
                "en",
                Reason::NonAnswer,
            ),
            (pair("¿Dónde se guardan los documentos confidenciales?", "No lo sé."), CHUNK, "es", Reason::NonAnswer),
            (
                pair("¿Dónde se guardan los documentos confidenciales?", "No se especifica."),
                CHUNK,
                "es",
                Reason::NonAnswer,
            ),
            (
                pair("¿Dónde se guardan los documentos confidenciales?", "¿En el archivo?"),
                CHUNK,
                "es",
                Reason::NonAnswer,
            ),
        ];
        for (p, chunk, lang, reason) in &bad {
            assert_eq!(f.check(p, chunk, lang).map(|r| r.0), Some(*reason), "{p:?}");
        }
        // Each switch turns its own check off (grounding off too: the bad answers are not in
        // the chunk either).
        let off = |g: &dyn Fn(&mut Filters)| {
            let mut f = Filters { grounding: None, ..Filters::default() };
            g(&mut f);
            f
        };
        for i in [0, 3] {
            let (p, chunk, lang, _) = &bad[i];
            assert_eq!(off(&|f| f.question_form = false).check(p, chunk, lang), None, "{p:?}");
        }
        let (p, chunk, lang, _) = &bad[4];
        assert_eq!(off(&|f| f.self_contained = false).check(p, chunk, lang), None);
        let (p, chunk, lang, _) = &bad[13];
        assert_eq!(off(&|f| f.answer_form = false).check(p, chunk, lang), None);
        // RAFT's setting: the draft answer's wording no longer rejects a good question (the
        // Spanish false positive the RAFT measurement found), the question's still does.
        let questions_only = off(&|f| f.self_contained_answer = false);
        let (p, chunk, lang, _) = &bad[6];
        assert_eq!(questions_only.check(p, chunk, lang), None);
        let draft = pair(
            "¿Dónde se guardan los documentos confidenciales?",
            "Este fragmento dice que en el archivo del segundo piso.",
        );
        assert_eq!(off(&|_| ()).check(&draft, CHUNK, "es").map(|r| r.0), Some(Reason::RefersToPassage));
        assert_eq!(questions_only.check(&draft, CHUNK, "es"), None);
        for i in [4, 7, 8] {
            let (p, chunk, lang, reason) = &bad[i];
            assert_eq!(questions_only.check(p, chunk, lang).map(|r| r.0), Some(*reason), "{p:?}");
        }
        // Settings written before the switch existed read as on.
        let mut old = serde_json::to_value(Filters::default()).unwrap();
        old.as_object_mut().unwrap().remove("self_contained_answer");
        assert_eq!(serde_json::from_value::<Filters>(old).unwrap(), Filters::default());
    }

    #[test]
    fn text_dedup_finds_near_duplicates_only() -> anyhow::Result<()> {
        let mut d = Deduper::new(0.8, None);
        let out = d.check_all(&[
            "Where are confidential documents kept?",
            "Where are the confidential documents kept?",
            "WHERE are confidential documents kept",
            "How long are records retained?",
        ])?;
        assert!(out[0].is_none());
        assert!(out[1].is_some(), "{out:?}");
        assert!(out[2].is_some(), "case and punctuation do not matter");
        assert!(out[3].is_none());
        assert_eq!(d.len(), 2);
        Ok(())
    }

    /// Near duplicates at the default threshold, English and Spanish, asked about different
    /// chunks of one run (one deduper), and the distinct questions that look alike.
    #[test]
    fn default_dedup_catches_rewordings_but_not_different_questions() -> anyhow::Result<()> {
        let threshold = Filters::default().dedup.unwrap();
        let dup = [
            ("What torque are the flange bolts tightened to?", "To what torque are the flange bolts tightened?"),
            ("What is the purpose of the handbook?", "What is the purpose of this handbook"),
            ("When is the office network unavailable?", "When will the office network be unavailable?"),
            ("¿Dónde se guardan los documentos electrónicos?", "¿Dónde se deben guardar los documentos electrónicos?"),
            ("¿Cuántos días se conservan las copias?", "Cuantos dias se conservan las copias"),
            ("¿Quién mantiene la lista de herramientas?", "¿Quiénes mantienen la lista de las herramientas?"),
        ];
        let distinct = [
            ("¿Cuándo se destruyen los documentos en papel?", "¿Cómo se destruyen los documentos en papel?"),
            ("What is the deviation limit at 20 % of the range?", "What is the deviation limit at 50 % of the range?"),
            ("¿Dónde se guardan los documentos electrónicos?", "¿Dónde se guardan los documentos en papel?"),
            ("¿Qué nivel tienen las nóminas?", "¿Qué nivel tienen los contratos?"),
            ("Who maintains the calibration log template?", "Who maintains the list of approved tools?"),
            ("How many years are internal documents kept?", "How many years are confidential documents kept?"),
        ];
        for (a, b) in dup {
            let mut d = Deduper::new(threshold, None);
            // Different chunks of a run: the first question is already accepted.
            assert!(d.check_all(&[a])?[0].is_none());
            assert!(d.check_all(&[b])?[0].is_some(), "{a} | {b} not caught");
        }
        for (a, b) in distinct {
            let mut d = Deduper::new(threshold, None);
            let out = d.check_all(&[a, b])?;
            assert!(out.iter().all(Option::is_none), "{a} | {b} taken for duplicates: {out:?}");
        }
        // A resumed run preloads what was accepted before: the same checks apply.
        let mut d = Deduper::new(threshold, None);
        d.preload(&["¿Cuántos días se conservan las copias?"])?;
        assert!(d.check_all(&["¿Cuántos días se deben conservar las copias?"])?[0].is_some());
        Ok(())
    }

    #[test]
    fn tokens_keep_question_words_and_numbers() {
        let t = question_tokens("¿Cuántos años se guardan los documentos según la norma 5?");
        assert_eq!(
            t.tokens.iter().map(String::as_str).collect::<Vec<_>>(),
            ["5", "anos", "cuanto", "docum", "guard", "norma"]
        );
        assert_eq!(t.numbers.iter().map(String::as_str).collect::<Vec<_>>(), ["5"]);
        assert_eq!(question_tokens("Is it?").tokens.len(), 2, "only function words: all kept");
    }

    struct Bag;
    impl Embedder for Bag {
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
        fn model_id(&self) -> String {
            "test:length-bag".into()
        }
    }

    #[test]
    fn embedding_dedup_uses_cosine() -> anyhow::Result<()> {
        let bag = Bag;
        let mut d = Deduper::new(0.9999, Some(&bag));
        d.preload(&["abcd"])?;
        let out = d.check_all(&["wxyz", "a"])?;
        assert!(out[0].is_some(), "same length means same vector here");
        assert!(out[1].is_none());
        Ok(())
    }
}
