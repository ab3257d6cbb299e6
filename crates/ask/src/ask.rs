//! The question-answering loop: rewrite, retrieve, decline or answer, cite.

use std::path::Path;

use docraft_core::text::{content_words, fold, stem, stems};
use docraft_core::{ChatMessage, Chunk, ChunkId, GenRequest, Generator, Retriever, Role, Sampling, guess_language};
use serde::Serialize;

use crate::cite::{CitationStream, attribute, sentences};
use crate::error::{AskError, Result};
use crate::prompt::Prompts;

/// How questions are answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskOptions {
    /// Chunks retrieved per question.
    pub k: usize,
    /// Below this similarity of the best chunk, the documents are taken not to answer: the
    /// answer is a decline and nothing is generated.
    pub min_score: f32,
    /// Share of the question's content words that must appear (by their first five letters,
    /// so "tightened" finds "tighten") in the retrieved chunks; below it, the documents are
    /// taken not to answer. Embedding similarity alone cannot tell: a small English
    /// embedder scores unrelated Spanish text higher than related English text.
    pub min_word_coverage: f64,
    /// Most characters of source text in the prompt (the best chunks first; small models
    /// have small contexts).
    pub max_context_chars: usize,
    /// Most tokens of an answer.
    pub max_tokens: u32,
    /// Sampling temperature (0: greedy, the same answer every time).
    pub temperature: f32,
    /// Seed of the sampler.
    pub seed: u64,
    /// Share of a sentence's content words that must come from one source for the sentence
    /// to count as taken from it.
    pub min_overlap: f64,
    /// Previous turns shown to the question rewriter.
    pub history_turns: usize,
    /// When no citation of the answer is the source holding the sentence that best matches
    /// the question, add that sentence after the answer, quoted and cited (small models often
    /// answer beside the point; the reader still sees what the documents say).
    pub quote_fallback: bool,
}

impl Default for AskOptions {
    fn default() -> Self {
        Self {
            k: 5,
            min_score: 0.15,
            min_word_coverage: 0.6,
            max_context_chars: 3000,
            max_tokens: 200,
            temperature: 0.0,
            seed: 42,
            min_overlap: 0.6,
            history_turns: 3,
            quote_fallback: true,
        }
    }
}

impl AskOptions {
    /// These options for a retriever whose scores are cosine similarities (`true`: vector
    /// retrieval) or not (keyword scores are BM25's, hybrid ones fused ranks, with no fixed
    /// scale): without similarities there is no similarity floor, and the word-coverage check
    /// alone decides whether the sources can answer.
    #[must_use]
    pub fn for_scores(mut self, similarities: bool) -> Self {
        if !similarities {
            self.min_score = -1.0;
        }
        self
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`AskError::Setting`] naming the first option out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, message: &str| Err(AskError::Setting { name, message: message.to_string() });
        if !(1..=100).contains(&self.k) {
            return bad("k", "must be 1 to 100");
        }
        if !(-1.0..=1.0).contains(&self.min_score) {
            return bad("min_score", "must be between -1 and 1");
        }
        if self.max_context_chars < 200 {
            return bad("max_context_chars", "must be at least 200");
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_word_coverage) {
            return bad("min_word_coverage", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.min_overlap) {
            return bad("min_overlap", "must be between 0 and 1");
        }
        Ok(())
    }
}

/// A retrieved chunk, numbered as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// 1-based number (`[1]` in the prompt).
    pub number: usize,
    /// Similarity to the query.
    pub score: f32,
    /// `file, p. N` (or `file` for unpaged formats).
    pub label: String,
    /// Whether it was shown to the model (the context budget may leave the last ones out).
    pub in_prompt: bool,
    /// The chunk.
    pub chunk: Chunk,
}

impl Source {
    /// `file, p. N`, `file, pp. A-B` or `file`: the file name, not its whole path.
    #[must_use]
    pub fn label_of(chunk: &Chunk) -> String {
        let file =
            Path::new(&chunk.source).file_name().map_or(chunk.source.clone(), |f| f.to_string_lossy().into_owned());
        match chunk.pages {
            Some(p) if p.first == p.last => format!("{file}, p. {}", p.first),
            Some(p) => format!("{file}, pp. {}-{}", p.first, p.last),
            None => file,
        }
    }
}

/// How a citation was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// The model cited the source by number.
    Marker,
    /// A sentence of the answer uses the source's words.
    Overlap,
    /// The sentence of the sources that best matches the question, quoted after the answer
    /// because the answer cited no source holding it.
    Quote,
}

/// One cited source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The source's number.
    pub number: usize,
    /// `file, p. N`.
    pub label: String,
    /// The source file as ingested.
    pub source: String,
    /// Pages of the chunk, for paged formats.
    pub pages: Option<docraft_core::PageRange>,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// How it was established.
    pub how: Attribution,
    /// The sentence it supports (overlap and quote).
    pub sentence: Option<String>,
}

/// One exchange of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    /// What the user asked.
    pub question: String,
    /// What was answered.
    pub answer: String,
}

/// The outcome of a question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The question as asked.
    pub question: String,
    /// What was searched for (the question made standalone in a conversation).
    pub query: String,
    /// The question's language (ISO 639-1).
    pub language: String,
    /// The answer as shown, citation markers rewritten to `[file, page]`.
    pub text: String,
    /// The documents do not answer (low retrieval score, or the model said so).
    pub declined: bool,
    /// Why it declined.
    pub decline_reason: Option<String>,
    /// At least one sentence of the model's answer was found in, or cited from, a source.
    pub grounded: bool,
    /// The sources cited, in order.
    pub citations: Vec<Citation>,
    /// Every retrieved chunk.
    pub sources: Vec<Source>,
    /// The model that answered.
    pub model: String,
}

/// Answers questions from an index's chunks through a generator.
pub struct Asker<'a> {
    retriever: &'a dyn Retriever,
    generator: &'a dyn Generator,
    options: AskOptions,
}

impl std::fmt::Debug for Asker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asker").field("model", &self.generator.model_id()).field("options", &self.options).finish()
    }
}

impl<'a> Asker<'a> {
    /// An asker searching `retriever` (whose hits carry the chunks' texts), answering with
    /// `generator`; default options.
    #[must_use]
    pub fn new(retriever: &'a dyn Retriever, generator: &'a dyn Generator) -> Self {
        Self { retriever, generator, options: AskOptions::default() }
    }

    /// Other options.
    ///
    /// # Errors
    /// [`AskError::Setting`] when one is out of range.
    pub fn with_options(mut self, options: AskOptions) -> Result<Self> {
        options.validate()?;
        self.options = options;
        Ok(self)
    }

    /// The options in force.
    #[must_use]
    pub fn options(&self) -> &AskOptions {
        &self.options
    }

    fn sampling(&self) -> Sampling {
        Sampling { temperature: self.options.temperature, seed: self.options.seed, ..Sampling::default() }
    }

    /// The follow-up `question` made standalone with the conversation `history` (the question
    /// itself when there is none). The generator's line is kept when it is one line, not too
    /// long, and shares a content word with the conversation's questions; otherwise the last
    /// question and the new one are searched together.
    ///
    /// # Errors
    /// [`AskError::Generate`] when the generator fails, [`AskError::Prompt`] for a broken
    /// prompt file.
    pub fn rewrite(&self, question: &str, history: &[Turn]) -> Result<String> {
        let Some(last) = history.last() else {
            return Ok(question.to_string());
        };
        let lang = language_of(question);
        let prompts = Prompts::new(&lang);
        let (user, assistant) = (prompts.phrase("user"), prompts.phrase("assistant"));
        let from = history.len().saturating_sub(self.options.history_turns.max(1));
        let text: Vec<String> = history[from..]
            .iter()
            .map(|t| format!("{user}: {}\n{assistant}: {}", t.question, first_chars(&t.answer, 300)))
            .collect();
        let request = GenRequest {
            messages: vec![ChatMessage::new(Role::User, prompts.rewrite(&text.join("\n"), question)?)],
            max_tokens: 64,
            sampling: self.sampling(),
            json_schema: None,
            tag: "rewrite".into(),
        };
        let out = self
            .generator
            .generate(&request)
            .map_err(|source| AskError::Generate { question: first_chars(question, 80), source })?;
        let line = out.text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let line = line.trim_matches(|c: char| c == '"' || c == '«' || c == '»' || c == '*').trim();
        let known: Vec<String> = content_words(&format!("{} {question}", last.question), &lang);
        let shares_word = content_words(line, &lang).iter().any(|w| known.contains(w));
        let fits =
            !line.is_empty() && line.chars().count() <= 3 * (question.chars().count() + last.question.chars().count());
        Ok(if fits && shares_word { line.to_string() } else { format!("{} {question}", last.question) })
    }

    /// Answers `question` (in a conversation: after `history`), streaming the answer's text
    /// to `on_text` with citations rewritten as they come.
    ///
    /// # Errors
    /// [`AskError::Retrieve`] when the search fails, [`AskError::Generate`] when the generator
    /// does, [`AskError::Prompt`] for a broken prompt file.
    pub fn ask(&self, question: &str, history: &[Turn], on_text: &mut dyn FnMut(&str)) -> Result<Answer> {
        let o = &self.options;
        let lang = language_of(question);
        let prompts = Prompts::new(&lang);
        let query = self.rewrite(question, history)?;
        let hits = self.retriever.search(&query, o.k)?;
        let mut sources = Vec::new();
        let mut budget = o.max_context_chars;
        for (i, hit) in hits.into_iter().enumerate() {
            let chunk = hit.chunk;
            let in_prompt = i == 0 || chunk.text.len() <= budget;
            budget = budget.saturating_sub(chunk.text.len());
            sources.push(Source {
                number: sources.len() + 1,
                score: hit.score,
                label: Source::label_of(&chunk),
                in_prompt,
                chunk,
            });
        }
        let mut answer = Answer {
            question: question.to_string(),
            query: query.clone(),
            language: lang.clone(),
            text: String::new(),
            declined: false,
            decline_reason: None,
            grounded: false,
            citations: Vec::new(),
            sources,
            model: self.generator.model_id(),
        };
        if let Some(reason) = self.unanswerable(&query, &answer.sources, &lang) {
            answer.text = prompts.phrase("decline").to_string();
            on_text(&answer.text);
            answer.declined = true;
            answer.decline_reason = Some(reason);
            return Ok(answer);
        }
        let shown: Vec<&Source> = answer.sources.iter().filter(|s| s.in_prompt).collect();
        let context: Vec<String> =
            shown.iter().map(|s| format!("[{}] ({})\n{}", s.number, s.label, s.chunk.text.trim())).collect();
        let request = GenRequest {
            messages: vec![
                ChatMessage::new(Role::System, prompts.answer_system()?),
                ChatMessage::new(Role::User, prompts.answer_user(&context.join("\n\n"), question)?),
            ],
            max_tokens: o.max_tokens,
            sampling: self.sampling(),
            json_schema: None,
            tag: first_chars(question, 80),
        };
        let mut stream = CitationStream::new(answer.sources.iter().map(|s| s.label.clone()).collect());
        let mut text = String::new();
        let raw = self
            .generator
            .generate_stream(&request, &mut |piece| {
                let shown = stream.push(piece);
                if !shown.is_empty() {
                    on_text(&shown);
                    text += &shown;
                }
            })
            .map_err(|source| AskError::Generate { question: first_chars(question, 80), source })?;
        let rest = stream.finish();
        on_text(&rest);
        text += &rest;
        let (text, _) = (text.trim_end().to_string(), raw);
        answer.text = text;
        for &n in stream.cited() {
            answer.citations.push(citation(&answer.sources[n - 1], Attribution::Marker, None));
        }
        let lowered = answer.text.to_lowercase();
        if Prompts::all_phrases("decline_match").iter().any(|p| lowered.contains(p)) && answer.text.len() < 200 {
            answer.declined = true;
            answer.decline_reason = Some("the model found no answer in the sources".into());
            answer.citations.clear();
            return Ok(answer);
        }
        let texts: Vec<&str> = shown.iter().map(|s| s.chunk.text.as_str()).collect();
        for sentence in sentences(&answer.text) {
            if let Some((i, _)) = attribute(sentence, question, &texts, o.min_overlap, &lang) {
                let number = shown[i].number;
                if !answer.citations.iter().any(|c| c.number == number) {
                    answer.citations.push(citation(shown[i], Attribution::Overlap, Some(sentence.to_string())));
                }
                answer.grounded = true;
            }
        }
        answer.grounded |= !answer.citations.is_empty();
        // The evidence: the sentence of the sources that best matches the question. When the
        // answer cites its source, the answer stands on its own; otherwise the sentence is
        // added, quoted and cited, so the reader sees what the documents say.
        if let Some((src, sentence)) = best_sentence(&query, &shown, &lang).filter(|_| o.quote_fallback)
            && !answer.citations.iter().any(|c| c.number == src.number)
        {
            let added = format!("\n\n{}: «{sentence}» [{}]", prompts.phrase("from_sources"), src.label);
            on_text(&added);
            answer.text += &added;
            answer.citations.push(citation(src, Attribution::Quote, Some(sentence)));
        }
        Ok(answer)
    }

    /// Why the sources cannot answer `query`, if they cannot: too few of its content words
    /// (by [`stem`], accents folded) appear in them.
    fn unanswerable(&self, query: &str, sources: &[Source], lang: &str) -> Option<String> {
        // The best score, not the first: a fused ranking need not be in score order.
        let Some(best) = sources.iter().map(|s| s.score).reduce(f32::max) else {
            return Some("the index returned no chunks".into());
        };
        if best < self.options.min_score {
            return Some(format!("the closest chunk's similarity {best:.2} is below {:.2}", self.options.min_score));
        }
        let words = content_words(query, lang);
        if !words.is_empty() {
            let text: String = sources.iter().map(|s| fold(&s.chunk.text)).collect::<Vec<_>>().join("\n");
            let found = words.iter().filter(|w| text.contains(&stem(w))).count();
            #[allow(clippy::cast_precision_loss)]
            let coverage = found as f64 / words.len() as f64;
            if coverage < self.options.min_word_coverage {
                return Some(format!(
                    "only {found} of the question's {} content words appear in the retrieved chunks",
                    words.len()
                ));
            }
        }
        None
    }
}

fn citation(s: &Source, how: Attribution, sentence: Option<String>) -> Citation {
    Citation {
        number: s.number,
        label: s.label.clone(),
        source: s.chunk.source.clone(),
        pages: s.chunk.pages,
        chunk_id: s.chunk.id.clone(),
        how,
        sentence,
    }
}

/// The sentence of the sources sharing the most content words with the query (ties: the
/// better-ranked source), as a quote.
fn best_sentence<'s>(query: &str, shown: &[&'s Source], lang: &str) -> Option<(&'s Source, String)> {
    let words = stems(query, lang);
    let mut best: Option<(&Source, String, usize)> = None;
    for s in shown {
        for sentence in sentences(&s.chunk.text) {
            let n = stems(sentence, lang).intersection(&words).count();
            if n > 0 && best.as_ref().is_none_or(|b| n > b.2) {
                // Wrapped lines joined: the quote reads as one line.
                let line = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
                best = Some((s, first_chars(&line, 400), n));
            }
        }
    }
    best.map(|b| (b.0, b.1))
}

/// The question's language; for a question too short to tell, Spanish when it has Spanish's
/// own punctuation or letters (`¿`, `¡`, `ñ`), else English.
fn language_of(text: &str) -> String {
    guess_language(text).unwrap_or_else(|| if text.contains(['¿', '¡', 'ñ']) { "es".into() } else { "en".into() })
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
