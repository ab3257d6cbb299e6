//! The prompt files and the phrases of each language.

const ANSWER_SYSTEM_EN: &str = include_str!("../prompts/answer.system.en.txt");
const ANSWER_SYSTEM_ES: &str = include_str!("../prompts/answer.system.es.txt");
const ANSWER_USER_EN: &str = include_str!("../prompts/answer.user.en.txt");
const ANSWER_USER_ES: &str = include_str!("../prompts/answer.user.es.txt");
const REWRITE_EN: &str = include_str!("../prompts/rewrite.en.txt");
const REWRITE_ES: &str = include_str!("../prompts/rewrite.es.txt");
const PHRASES: &str = include_str!("../prompts/phrases.txt");

/// Every prompt file by name, for lineage (the run manifest hashes them).
pub const PROMPTS: &[(&str, &str)] = &[
    ("ask/answer.system.en.txt", ANSWER_SYSTEM_EN),
    ("ask/answer.system.es.txt", ANSWER_SYSTEM_ES),
    ("ask/answer.user.en.txt", ANSWER_USER_EN),
    ("ask/answer.user.es.txt", ANSWER_USER_ES),
    ("ask/rewrite.en.txt", REWRITE_EN),
    ("ask/rewrite.es.txt", REWRITE_ES),
    ("ask/phrases.txt", PHRASES),
];

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
    #[must_use]
    pub fn answer_system(&self) -> String {
        if self.spanish() {
            ANSWER_SYSTEM_ES.trim_end().to_string()
        } else {
            ANSWER_SYSTEM_EN.trim_end().replace("{language}", &docraft_core::language_name(&self.lang))
        }
    }

    /// The user message of an answer: the numbered sources, then the question.
    #[must_use]
    pub fn answer_user(&self, sources: &str, question: &str) -> String {
        let t = if self.spanish() { ANSWER_USER_ES } else { ANSWER_USER_EN };
        t.trim_end().replace("{sources}", sources).replace("{question}", question)
    }

    /// The request to make a follow-up question standalone.
    #[must_use]
    pub fn rewrite(&self, history: &str, question: &str) -> String {
        let t = if self.spanish() { REWRITE_ES } else { REWRITE_EN };
        t.trim_end().replace("{history}", history).replace("{question}", question)
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
