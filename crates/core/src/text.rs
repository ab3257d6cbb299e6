//! Text compared across the pipeline: one normalization, one word splitter, one list of
//! stopwords per language, and one measure of "grounded", so qa-gen's filters, ask's
//! citations, RAFT's quote checks and eval's scores agree on what a word is.
//!
//! Two strengths of normalization:
//!
//! - [`normalize`]: compatibility forms (NFKC), lower case, typographic quotes and dashes
//!   as ASCII, runs of whitespace as one space. Letters keep their accents; this is the form
//!   a verbatim quote is checked in.
//! - [`fold`]: [`normalize`] and then accents dropped (`información` and `informacion`
//!   meet, `años` and `anos` too): the form words are compared in.
//!
//! ```
//! use docraft_core::text::{content_words, fold, grounding};
//!
//! assert_eq!(fold("  Información\u{00a0}“útil” "), "informacion \"util\"");
//! assert_eq!(content_words("¿Dónde se guardan los documentos?", "es"), ["guardan", "documentos"]);
//! let chunk = "Los documentos se guardan en el archivo del segundo piso.";
//! assert!(grounding("En el archivo del segundo piso", chunk, "es") > 0.99);
//! ```

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// Text for comparison: NFKC, lower case, typographic quotes and dashes as ASCII (`'`, `"`,
/// `-`), every run of whitespace one space, no leading or trailing space. Accents are kept.
#[must_use]
pub fn normalize(text: &str) -> String {
    let mapped: String = text
        .nfkc()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{2032}' => '\'',
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{00ab}' | '\u{00bb}' => '"',
            '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
            c if c.is_whitespace() => ' ',
            c => c,
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`normalize`], then accents (the combining diacritical marks U+0300..U+036F, after
/// canonical decomposition) dropped and the rest recomposed: `Año` becomes `ano`, `Ça` `ca`.
/// Marks of other scripts (Devanagari vowel signs, ...) are kept, since they are letters.
#[must_use]
pub fn fold(text: &str) -> String {
    normalize(text).nfd().filter(|c| !('\u{300}'..='\u{36f}').contains(c)).nfc().collect()
}

/// The words of `text`: [`fold`]ed, split on every character that is not alphanumeric
/// (`N·m` is two words, `02:00` too), empty pieces dropped.
#[must_use]
pub fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// English function words (and question words), folded.
const EN: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "been", "before", "being", "but", "can", "could",
    "did", "does", "each", "for", "from", "had", "has", "have", "her", "his", "how", "into", "its", "just", "many",
    "may", "more", "most", "much", "must", "need", "needs", "not", "one", "only", "other", "our", "over", "shall",
    "she", "should", "some", "such", "tell", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "under", "very", "was", "were", "what", "when", "where", "which", "who", "whom", "whose", "why",
    "will", "with", "would", "you", "your", "yours",
];

/// Spanish function words (and question words), folded: `como` stands for `cómo` too.
const ES: &[&str] = &[
    "cada", "como", "con", "cual", "cuales", "cuando", "cuanta", "cuantas", "cuanto", "cuantos", "debe", "deben",
    "del", "desde", "donde", "entre", "esa", "esas", "ese", "esos", "esta", "estan", "estas", "este", "esto", "estos",
    "fue", "hace", "hacen", "hasta", "hay", "las", "los", "mas", "muy", "otra", "otras", "otro", "otros", "para",
    "pero", "por", "porque", "puede", "pueden", "que", "quien", "quienes", "segun", "ser", "sin", "sobre", "son",
    "sus", "tambien", "tiene", "tienen", "toda", "todas", "todo", "todos", "una", "unas", "uno", "unos",
];

/// The stopwords of a language: English (`en`) and Spanish (`es`) have their own list; any
/// other code gets both (text in another language often quotes English or Spanish terms,
/// and Portuguese, Catalan or Galician share many Spanish function words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopwords(&'static [&'static [&'static str]]);

impl Stopwords {
    /// The list for the ISO 639-1 code `lang`.
    #[must_use]
    pub fn for_language(lang: &str) -> Self {
        match lang {
            "en" => Self(&[EN]),
            "es" => Self(&[ES]),
            _ => Self(&[EN, ES]),
        }
    }

    /// Whether `word` (already [`fold`]ed) is one.
    #[must_use]
    pub fn contains(&self, word: &str) -> bool {
        self.0.iter().any(|list| list.binary_search(&word).is_ok())
    }

    /// Every word of the list, folded.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().flat_map(|l| l.iter().copied())
    }
}

/// Whether a [`fold`]ed word carries meaning in `lang`: it holds a digit (numbers matter:
/// "45", "2024", "v2"), or it has three letters or more and is not a stopword.
#[must_use]
pub fn is_content_word(word: &str, lang: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit())
        || (word.chars().count() >= 3 && !Stopwords::for_language(lang).contains(word))
}

/// The [`words`] of `text` that carry meaning in `lang` ([`is_content_word`]), in order.
#[must_use]
pub fn content_words(text: &str, lang: &str) -> Vec<String> {
    words(text).into_iter().filter(|w| is_content_word(w, lang)).collect()
}

/// Characters of a word kept by [`stem`].
pub const STEM_CHARS: usize = 5;

/// A crude stem: the first five characters of a word, so "tightened" and "tighten",
/// "conservan" and "conserva" meet.
#[must_use]
pub fn stem(word: &str) -> String {
    word.chars().take(STEM_CHARS).collect()
}

/// The [`stem`]s of the content words of `text`.
#[must_use]
pub fn stems(text: &str, lang: &str) -> HashSet<String> {
    content_words(text, lang).iter().map(|w| stem(w)).collect()
}

/// How much of `claim` is found in `source`, from 0 to 1: the share of the claim's content
/// words (numbers included) that are words of the source, compared [`fold`]ed.
///
/// A quoted span (`"..."`, `«...»`, `“...”`) of three words or more found verbatim in the
/// source grounds the claim by itself. A claim without content words counts by all its
/// words; a claim without words scores 0.
#[must_use]
pub fn grounding(claim: &str, source: &str, lang: &str) -> f32 {
    let source_seq = words(source);
    let source_joined = source_seq.join(" ");
    let source_words: HashSet<String> = source_seq.into_iter().collect();
    for quoted in claim.split(['"', '«', '»', '“', '”']).skip(1).step_by(2) {
        let q = words(quoted);
        if q.len() >= 3 && format!(" {source_joined} ").contains(&format!(" {} ", q.join(" "))) {
            return 1.0;
        }
    }
    let all = words(claim);
    let content: Vec<&String> = all.iter().filter(|w| is_content_word(w, lang)).collect();
    let pool: Vec<&String> = if content.is_empty() { all.iter().collect() } else { content };
    if pool.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let share = pool.iter().filter(|w| source_words.contains(w.as_str())).count() as f32 / pool.len() as f32;
    share
}

/// Articles SQuAD-style scoring drops, English and Spanish.
pub const ARTICLES: &[&str] = &["a", "an", "the", "el", "la", "los", "las", "un", "una", "unos", "unas", "lo"];

/// The tokens of an answer as SQuAD-style scores compare them: [`normalize`]d (so lower
/// case), split on whitespace and punctuation (ASCII punctuation but `·`, and `¿¡«»“”‘’`),
/// articles ([`ARTICLES`]) dropped. Accents are kept, as SQuAD's own normalization does.
#[must_use]
pub fn answer_tokens(text: &str) -> Vec<String> {
    normalize(text)
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '·') || "¿¡«»“”‘’".contains(c))
        .filter(|t| !t.is_empty() && !ARTICLES.contains(t))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_folded_and_lower_case() {
        for list in [EN, ES] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique for binary search");
            assert!(list.iter().all(|w| fold(w) == *w));
        }
    }

    #[test]
    fn normalize_keeps_accents_fold_drops_them() {
        assert_eq!(normalize("El  TÉCNICO\n firma “esto” — ya"), "el técnico firma \"esto\" - ya");
        assert_eq!(fold("El  TÉCNICO\n firma"), "el tecnico firma");
        assert_eq!(fold("Información"), fold("informacion"));
        assert_eq!(fold("AÑOS"), "anos");
        assert_eq!(fold("ﬁle ２"), "file 2", "compatibility forms");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(fold("नमस्ते"), "नमस्ते", "marks of other scripts stay");
    }

    #[test]
    fn words_and_content_words_in_english_and_spanish() {
        assert_eq!(words("Torque: 45 N·m, at 02:00!"), ["torque", "45", "n", "m", "at", "02", "00"]);
        assert_eq!(content_words("What is the torque of the flange bolts?", "en"), ["torque", "flange", "bolts"]);
        assert_eq!(
            content_words("¿Cuántos años se guardan los documentos según la norma 5?", "es"),
            ["anos", "guardan", "documentos", "norma", "5"]
        );
        // Another language gets both lists.
        assert_eq!(content_words("Where are los documentos?", "fr"), ["documentos"]);
        assert!(Stopwords::for_language("es").contains("como"));
        assert!(!Stopwords::for_language("es").contains("the"));
        assert!(Stopwords::for_language("de").contains("the") && Stopwords::for_language("de").contains("segun"));
        assert!(Stopwords::for_language("en").iter().any(|w| w == "which"));
    }

    #[test]
    fn stems_meet_across_inflections() {
        let a = stems("The bolts are tightened", "en");
        assert!(a.contains("tight") && a.contains("bolts"));
        assert!(stems("Se conserva la información", "es").contains("infor"));
        assert!(stems("conservan", "es").contains(&stem("conserva")));
    }

    #[test]
    fn grounding_in_spanish_and_english() {
        let chunk = "Los documentos confidenciales se guardan en el archivo del segundo piso durante 5 años.";
        assert!(grounding("En el archivo del segundo piso, durante 5 años.", chunk, "es") > 0.99);
        assert!(grounding("En una caja fuerte del banco central.", chunk, "es") < 0.2);
        assert!(grounding("Durante 5 anos", chunk, "es") > 0.99, "accents dropped by the model still match");
        assert!((grounding("Como dice \"se guardan en el archivo\", y nada más", chunk, "es") - 1.0).abs() < 1e-6);
        // A quoted span must be whole words of the source.
        assert!(grounding("\"ocumentos confidenciales se\" inventado", chunk, "es") < 1.0);
        let en = "Tighten the flange bolts to 45 Nm with a calibrated wrench.";
        assert!(grounding("To 45 Nm.", en, "en") > 0.99);
        assert!(grounding("To 50 Nm.", en, "en") < 0.6);
        assert!(grounding("the", en, "en") > 0.99, "only stopwords: all words count");
        assert!(grounding("", en, "en").abs() < 1e-6);
    }

    #[test]
    fn answer_tokens_drop_case_punctuation_and_articles() {
        assert_eq!(answer_tokens("The Archive, room B!"), ["archive", "room", "b"]);
        assert_eq!(answer_tokens("«La sala B»."), ["sala", "b"]);
        assert_eq!(answer_tokens("45 N·m"), ["45", "n·m"]);
        assert_eq!(answer_tokens("¿Información?"), ["información"]);
        assert_eq!(answer_tokens("room\u{2014}B"), ["room", "b"], "dashes split like hyphens");
    }
}
