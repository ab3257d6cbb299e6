//! The prompt files and the phrases of each language. Templates are rendered by
//! [`docraft_core::prompt::render`]: sources, questions and history are inserted verbatim.

use docraft_core::prompt::{PromptError, render};

const ANSWER_SYSTEM_EN: &str = include_str!("../prompts/answer.system.en.txt");
const ANSWER_SYSTEM_ES: &str = include_str!("../prompts/answer.system.es.txt");
const ANSWER_USER_EN: &str = include_str!("../prompts/answer.user.en.txt");
const ANSWER_USER_ES: &str = include_str!("../prompts/answer.user.es.txt");
const REWRITE_EN: &str = include_str!("../prompts/rewrite.en.txt");
const REWRITE_ES: &str = include_str!("../prompts/rewrite.es.txt");
const PHRASES: &str = include_str!("../prompts/phrases.txt");

/// Every prompt file by name, for lineage (the run manifest hashes them).
pub const PROMPTS: &[(&str, &str)] = &[
    FILE_ANSWER_SYSTEM_EN,
    FILE_ANSWER_SYSTEM_ES,
    FILE_ANSWER_USER_EN,
    FILE_ANSWER_USER_ES,
    FILE_REWRITE_EN,
    FILE_REWRITE_ES,
    ("ask/phrases.txt", PHRASES),
];

const FILE_ANSWER_SYSTEM_EN: (&str, &str) = ("ask/answer.system.en.txt", ANSWER_SYSTEM_EN);
const FILE_ANSWER_SYSTEM_ES: (&str, &str) = ("ask/answer.system.es.txt", ANSWER_SYSTEM_ES);
const FILE_ANSWER_USER_EN: (&str, &str) = ("ask/answer.user.en.txt", ANSWER_USER_EN);
const FILE_ANSWER_USER_ES: (&str, &str) = ("ask/answer.user.es.txt", ANSWER_USER_ES);
const FILE_REWRITE_EN: (&str, &str) = ("ask/rewrite.en.txt", REWRITE_EN);
const FILE_REWRITE_ES: (&str, &str) = ("ask/rewrite.es.txt", REWRITE_ES);

/// The prompts and phrases for one language: Spanish has its own, every other language the
/// English ones with "answer in LANGUAGE".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    lang: String,
}

impl Prompts {
    /// The prompts for the ISO 639-1 code `lang`.
    #[must_use]
    pub fn new(lang: &str) -> Self {
        Self { lang: lang.to_string() }
    }

    fn spanish(&self) -> bool {
        self.lang == "es"
    }

    /// The system message of an answer.
    ///
    /// # Errors
    /// [`PromptError`] when the template names a variable not given (a broken prompt file).
    pub fn answer_system(&self) -> Result<String, PromptError> {
        let (name, t) = if self.spanish() { FILE_ANSWER_SYSTEM_ES } else { FILE_ANSWER_SYSTEM_EN };
        let language = docraft_core::language_name(&self.lang);
        render(name, t.trim_end(), &[("language", language.as_str())])
    }

    /// The user message of an answer: the numbered sources, then the question.
    ///
    /// # Errors
    /// [`PromptError`] when the template names a variable not given (a broken prompt file).
    pub fn answer_user(&self, sources: &str, question: &str) -> Result<String, PromptError> {
        let (name, t) = if self.spanish() { FILE_ANSWER_USER_ES } else { FILE_ANSWER_USER_EN };
        render(name, t.trim_end(), &[("sources", sources), ("question", question)])
    }

    /// The request to make a follow-up question standalone.
    ///
    /// # Errors
    /// [`PromptError`] when the template names a variable not given (a broken prompt file).
    pub fn rewrite(&self, history: &str, question: &str) -> Result<String, PromptError> {
        let (name, t) = if self.spanish() { FILE_REWRITE_ES } else { FILE_REWRITE_EN };
        render(name, t.trim_end(), &[("history", history), ("question", question)])
    }

    /// The phrases under `key` in this language (English where it has none).
    #[must_use]
    pub fn phrases(&self, key: &str) -> Vec<&'static str> {
        let of = |lang: &str| -> Vec<&'static str> { entries(key).filter(|e| e.0 == lang).map(|e| e.1).collect() };
        let mine = of(&self.lang);
        if mine.is_empty() { of("en") } else { mine }
    }

    /// The first phrase under `key`.
    #[must_use]
    pub fn phrase(&self, key: &str) -> &'static str {
        self.phrases(key).first().copied().unwrap_or("")
    }

    /// Every language's phrases under `key` (a model may decline in another language).
    #[must_use]
    pub fn all_phrases(key: &str) -> Vec<&'static str> {
        entries(key).map(|e| e.1).collect()
    }
}

/// `(language, text)` of the phrase lines under `key`.
fn entries(key: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    PHRASES.lines().filter(|l| !l.starts_with('#')).filter_map(move |l| {
        let mut f = l.splitn(3, '\t');
        match (f.next(), f.next(), f.next()) {
            (Some(k), Some(lang), Some(text)) if k == key => Some((lang, text)),
            _ => None,
        }
    })
}
