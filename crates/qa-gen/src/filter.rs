//! Quality filters on generated pairs. Each is switchable and each rejection is counted
//! under its [`Reason`]; nothing is dropped silently.

use std::collections::{HashMap, HashSet};

use docraft_core::text::{grounding, words};
use docraft_core::{EmbedError, Embedder, guess_language};
use serde::{Deserialize, Serialize};

use crate::parse::RawPair;

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
        }
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
    /// Near-duplicate questions: cosine similarity with an embedder, else character-trigram
    /// Jaccard similarity of the normalized text, at or above which a question is a duplicate.
    pub dedup: Option<f32>,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            grounding: Some(0.5),
            question_chars: Some((8, 300)),
            answer_chars: Some((2, 1000)),
            language: true,
            dedup: Some(0.9),
        }
    }
}

impl Filters {
    /// Every filter off.
    #[must_use]
    pub fn none() -> Self {
        Self { grounding: None, question_chars: None, answer_chars: None, language: false, dedup: None }
    }

    /// The per-pair checks (all but duplicates), in order: length, grounding, language.
    /// Returns the first failure with a human-readable detail.
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

/// Finds near-duplicate questions across a run: by embeddings when an [`Embedder`] is given,
/// else by character-trigram Jaccard similarity of the normalized text (with an inverted
/// index, so each check touches only questions sharing trigrams).
pub struct Deduper<'e> {
    threshold: f32,
    embedder: Option<&'e dyn Embedder>,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    grams: Vec<usize>,
    postings: HashMap<u64, Vec<u32>>,
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
            grams: Vec::new(),
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

    /// For each question in order: `None` if it is new (and it is added), or the index of the
    /// earlier question it duplicates and their similarity. Questions in the same call are
    /// compared with each other too.
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
        let grams = trigrams(q);
        self.grams.push(grams.len());
        for g in grams {
            self.postings.entry(g).or_default().push(id);
        }
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
        let grams = trigrams(q);
        if grams.is_empty() {
            return None;
        }
        let mut shared: HashMap<u32, usize> = HashMap::new();
        for g in &grams {
            for id in self.postings.get(g).into_iter().flatten() {
                *shared.entry(*id).or_default() += 1;
            }
        }
        shared
            .into_iter()
            .map(|(id, s)| {
                let j = id as usize;
                #[allow(clippy::cast_precision_loss)]
                let sim = s as f32 / (grams.len() + self.grams[j] - s) as f32;
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

/// Distinct character trigrams of the normalized text (words joined by single spaces).
fn trigrams(text: &str) -> HashSet<u64> {
    let chars: Vec<char> = format!(" {} ", words(text).join(" ")).chars().collect();
    chars
        .windows(3)
        .map(|w| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect()
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
