//! What makes a question a question a reader can use, in English and Spanish: it is asked as
//! a question, and it does not lean on a passage the reader has not seen ("the text", "el
//! fragmento"). The answer side, whether an answer answers, is
//! [`docraft_core::text::non_answer`] (RAFT's final answers use it too).
//!
//! Every check compares [`words`]: case, accents, punctuation and apostrophes do not matter,
//! and phrases match whole words only ("the textbook" is not "the text").
//!
//! ```
//! use docraft_qa_gen::quality::{is_question, passage_reference};
//!
//! assert!(is_question("¿Cuántos días se conservan las copias?"));
//! assert!(is_question("How long are backups kept"));
//! assert!(!is_question("Las copias se conservan treinta días."));
//! assert_eq!(passage_reference("¿Qué se describe en este texto?"), Some("este texto".to_string()));
//! assert_eq!(passage_reference("Who maintains the document management system?"), None);
//! ```

use docraft_core::text::{contains_phrase, normalize, word_line, words};

/// Question marks of the scripts we meet: `?`, `¿`, the full-width `？`, the Arabic `؟`.
const QUESTION_MARKS: &[char] = &['?', '¿', '\u{ff1f}', '\u{061f}'];

/// English words that open a question (folded).
const EN_OPENERS: &[&str] = &[
    "am", "are", "can", "could", "did", "do", "does", "had", "has", "have", "how", "is", "may", "might", "must",
    "shall", "should", "was", "were", "what", "whats", "when", "where", "which", "who", "whom", "whose", "why", "will",
    "would",
];

/// Prepositions that may come before an English question word ("In which year ...").
const EN_PREPOSITIONS: &[&str] =
    &["at", "by", "during", "for", "from", "in", "of", "on", "since", "to", "under", "until", "with", "within"];

/// Spanish question words, with their written accent: without `¿`/`?`, only the accent tells
/// "Cuándo llega" (a question) from "Cuando llega, ..." (a clause). `qué` after `por`/`para`
/// is matched by the preposition rule.
const ES_OPENERS: &[&str] = &[
    "qué", "cuál", "cuáles", "cuándo", "dónde", "adónde", "cómo", "quién", "quiénes", "cuánto", "cuánta", "cuántos",
    "cuántas",
];

/// Prepositions that may come before a Spanish question word ("Desde cuándo ...").
const ES_PREPOSITIONS: &[&str] = &[
    "a", "ante", "bajo", "con", "de", "desde", "durante", "en", "entre", "hacia", "hasta", "para", "por", "según",
    "sobre", "tras",
];

/// Whether `question` is asked as a question: it has a question mark (`?`, `¿`, `？`, `؟`), or
/// it opens, possibly after a preposition, with an English question word or auxiliary (`what`,
/// `how`, `is`, `does`, `can`, ...) or a Spanish question word written with its accent (`qué`,
/// `cuál`, `cuándo`, `dónde`, `cómo`, `quién`, `cuánto`, ...). Both lists apply whatever the
/// chunk's language (the language filter is a separate check). Statements and instructions
/// ("Describe the procedure.") are not questions.
#[must_use]
pub fn is_question(question: &str) -> bool {
    if question.contains(QUESTION_MARKS) {
        return true;
    }
    // Words as written (normalized: lower case, accents kept) for Spanish; folded for English.
    let lower = normalize(question);
    let raw: Vec<&str> =
        lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(3).collect::<Vec<_>>();
    let folded: Vec<String> = words(question).into_iter().take(3).collect();
    let en = |i: usize| folded.get(i).is_some_and(|w| EN_OPENERS.contains(&w.as_str()));
    let es = |i: usize| raw.get(i).is_some_and(|w| ES_OPENERS.contains(w));
    let en_prep = folded.first().is_some_and(|w| EN_PREPOSITIONS.contains(&w.as_str()));
    let es_prep = raw.first().is_some_and(|w| ES_PREPOSITIONS.contains(w));
    en(0) || es(0) || (en_prep && en(1)) || (es_prep && es(1))
}

/// What follows a question's last question mark, if anything does ("¿Por qué es necesaria?
/// Porque ..." answers itself): a question ends with its question mark, closing quotes,
/// brackets and a stray full stop aside.
#[must_use]
pub fn text_after_question(question: &str) -> Option<&str> {
    let end = ['?', '\u{ff1f}', '\u{061f}'];
    let i = question.rfind(end)?;
    let rest = question[i..]
        .trim_start_matches(end)
        .trim_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ']' | '»' | '”' | '’' | '.'));
    (!rest.is_empty()).then_some(rest)
}

/// Phrases that point at the passage: no reader without it knows what they mean. Each is
/// `(phrase, unless_followed_by)`: "the text" is a reference, "the text of the label" is not.
const ALWAYS: &[(&str, &[&str])] = &[
    ("the text", &["of"]),
    ("the passage", &["of"]),
    ("the excerpt", &[]),
    ("the fragment", &[]),
    ("the snippet", &[]),
    ("the paragraph", &[]),
    ("the chunk", &[]),
    ("the context", &["of"]),
    ("the above", &[]),
    ("mentioned above", &[]),
    ("described above", &[]),
    ("listed above", &[]),
    ("stated above", &[]),
    ("shown above", &[]),
    ("given above", &[]),
    ("the given text", &[]),
    ("the provided text", &[]),
    ("the given information", &[]),
    ("the provided information", &[]),
    ("the information provided", &[]),
    ("the information given", &[]),
    ("which of the following", &[]),
    ("el texto", &["de"]),
    ("del texto", &[]),
    ("al texto", &[]),
    ("el pasaje", &["de"]),
    ("del pasaje", &[]),
    ("el fragmento", &[]),
    ("del fragmento", &[]),
    ("al fragmento", &[]),
    ("el extracto", &[]),
    ("del extracto", &[]),
    ("el parrafo", &[]),
    ("del parrafo", &[]),
    ("el contexto", &["de"]),
    ("del contexto", &[]),
    ("lo anterior", &[]),
    ("mencionado anteriormente", &[]),
    ("mencionada anteriormente", &[]),
    ("descrito anteriormente", &[]),
    ("descrita anteriormente", &[]),
    ("citado anteriormente", &[]),
    ("mencionado arriba", &[]),
    ("descrito arriba", &[]),
    ("la informacion proporcionada", &[]),
    ("la informacion dada", &[]),
    ("el texto proporcionado", &[]),
    ("cual de los siguientes", &[]),
    ("cual de las siguientes", &[]),
];

/// Demonstratives that, before a word for a document ([`DOCUMENT_NOUNS`]), point at the
/// passage ("this handbook", "esta guía": which one?).
const DEMONSTRATIVES: &[&str] = &["this", "these", "este", "esta", "estos", "estas", "dicho", "dicha", "presente"];

/// Words for a passage or the document it comes from, English and Spanish (folded).
const DOCUMENT_NOUNS: &[&str] = &[
    "text",
    "texts",
    "passage",
    "excerpt",
    "fragment",
    "snippet",
    "paragraph",
    "chunk",
    "document",
    "article",
    "section",
    "chapter",
    "page",
    "handbook",
    "manual",
    "guide",
    "policy",
    "report",
    "memo",
    "bulletin",
    "book",
    "note",
    "letter",
    "reading",
    "material",
    "context",
    "information",
    "texto",
    "pasaje",
    "extracto",
    "fragmento",
    "parrafo",
    "documento",
    "articulo",
    "seccion",
    "apartado",
    "capitulo",
    "pagina",
    "guia",
    "politica",
    "informe",
    "memorando",
    "boletin",
    "libro",
    "nota",
    "carta",
    "lectura",
    "contexto",
    "informacion",
    "acta",
];

/// Words for a document that are also everyday objects ("who signs the document?"): a
/// reference only when the passage is made to speak ("the document says") or is the place
/// asked about ("what is described in the document?").
const SPEAKING_NOUNS: &[&str] = &[
    "document",
    "article",
    "section",
    "chapter",
    "author",
    "authors",
    "writer",
    "documento",
    "articulo",
    "seccion",
    "apartado",
    "capitulo",
    "autor",
    "autora",
    "autores",
];

/// Articles before a [`SPEAKING_NOUNS`] word.
const ARTICLES: &[&str] = &["the", "el", "la", "los", "las", "del", "al"];

/// Verbs that make a document speak, English and Spanish (folded).
const SPEAKING_VERBS: &[&str] = &[
    "say",
    "says",
    "said",
    "state",
    "states",
    "mention",
    "mentions",
    "mentioned",
    "describe",
    "describes",
    "described",
    "explain",
    "explains",
    "discuss",
    "discusses",
    "cover",
    "covers",
    "talk",
    "talks",
    "refer",
    "refers",
    "suggest",
    "suggests",
    "indicate",
    "indicates",
    "show",
    "shows",
    "tell",
    "tells",
    "provide",
    "provides",
    "present",
    "presents",
    "define",
    "defines",
    "outline",
    "outlines",
    "focus",
    "focuses",
    "highlight",
    "highlights",
    "emphasize",
    "emphasizes",
    "claim",
    "claims",
    "propose",
    "proposes",
    "address",
    "addresses",
    "deal",
    "deals",
    "note",
    "notes",
    "recommend",
    "recommends",
    "argue",
    "argues",
    "want",
    "wants",
    "dice",
    "menciona",
    "describe",
    "explica",
    "trata",
    "habla",
    "establece",
    "senala",
    "presenta",
    "muestra",
    "expone",
    "plantea",
    "aborda",
    "propone",
    "recoge",
    "detalla",
    "define",
    "indica",
    "afirma",
    "sugiere",
    "refiere",
    "destaca",
    "sostiene",
    "considera",
    "recomienda",
    "quiere",
    "comenta",
    "cuenta",
];

/// Words before a [`SPEAKING_NOUNS`] word that make it the place asked about when it ends the
/// question ("in the document?", "según el documento").
const PLACE_WORDS: &[&str] = &["in", "from", "within", "en", "segun"];

/// The phrase of `text` that points at a passage its reader has not seen, if any (as
/// [`words`], e.g. `"el fragmento"`): "the text", "this passage", "the above", "este
/// artículo", "el fragmento", "lo anterior"; a demonstrative before a word for a document
/// ("this handbook", "esta guía"); "the document", "el autor" and their kin when the document
/// speaks ("what does the document say", "según el documento") or is the place asked about
/// ("what is described in the document?"), but not as an object ("who signs the document?").
#[must_use]
pub fn passage_reference(text: &str) -> Option<String> {
    let w = words(text);
    let line = word_line(text);
    for (phrase, unless) in ALWAYS {
        let p = words(phrase);
        let n = p.len();
        for i in 0..w.len().saturating_sub(n - 1) {
            if w[i..i + n] == p[..] && !w.get(i + n).is_some_and(|next| unless.contains(&next.as_str())) {
                return Some(p.join(" "));
            }
        }
    }
    for (i, pair) in w.windows(2).enumerate() {
        let (a, b) = (pair[0].as_str(), pair[1].as_str());
        if DEMONSTRATIVES.contains(&a) && DOCUMENT_NOUNS.contains(&b) {
            // "this page" as in "this page of the form" is still a pointer; "presente" needs
            // an article before it ("el presente documento").
            if a != "presente" || i > 0 {
                return Some(format!("{a} {b}"));
            }
        }
        if ARTICLES.contains(&a) && SPEAKING_NOUNS.contains(&b) {
            let next = w.get(i + 2).map(String::as_str);
            let before = i.checked_sub(1).and_then(|j| w.get(j)).map(String::as_str);
            // "the document says" / "qué dice el documento", but not "qué establece el
            // artículo 5" (a numbered article is a thing, not the passage).
            let numbered = next.is_some_and(|n| n.chars().any(|c| c.is_ascii_digit()));
            let speaks = next.is_some_and(|v| SPEAKING_VERBS.contains(&v))
                || (!numbered && before.is_some_and(|v| SPEAKING_VERBS.contains(&v)));
            let according = before == Some("segun") || (before == Some("to") && contains_phrase(&line, "according to"));
            let place_at_end = next.is_none() && before.is_some_and(|p| PLACE_WORDS.contains(&p));
            if speaks || according || place_at_end {
                return Some(format!("{a} {b}"));
            }
        }
    }
    None
}

/// The narrower check for answers, which may copy the chunk's own words ("This handbook
/// describes ..."): only phrases that name the passage itself ("the text", "the passage",
/// "el fragmento", "according to the document", "según el texto").
#[must_use]
pub fn answer_passage_reference(answer: &str) -> Option<String> {
    let w = words(answer);
    const NAMES: &[&str] =
        &["text", "passage", "excerpt", "fragment", "snippet", "chunk", "texto", "pasaje", "fragmento", "extracto"];
    for (i, pair) in w.windows(2).enumerate() {
        let (a, b) = (pair[0].as_str(), pair[1].as_str());
        let names_passage = NAMES.contains(&b) && !w.get(i + 2).is_some_and(|n| n == "of" || n == "de");
        if (ARTICLES.contains(&a) || DEMONSTRATIVES.contains(&a)) && names_passage {
            return Some(format!("{a} {b}"));
        }
        if ARTICLES.contains(&a) && SPEAKING_NOUNS.contains(&b) {
            let before = i.checked_sub(1).and_then(|j| w.get(j)).map(String::as_str);
            let before2 = i.checked_sub(2).and_then(|j| w.get(j)).map(String::as_str);
            if before == Some("segun") || (before == Some("to") && before2 == Some("according")) {
                return Some(format!("{a} {b}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_in_english_and_spanish() {
        for q in [
            "How long are backups kept?",
            "How long are backups kept",
            "What torque do the flange bolts need",
            "Is the backup line used during the work",
            "In which city is the workshop",
            "¿Cuántos días se conservan las copias?",
            "Cuántos días se conservan las copias",
            "¿Se permite usar herramientas externas?",
            "Se permite usar herramientas externas?",
            "Desde cuándo se aplica la política",
            "Por qué es necesaria la política",
            "Para qué sirven las copias de seguridad",
            "Quién mantiene la lista de herramientas",
            "Qué nivel tienen las nóminas",
        ] {
            assert!(is_question(q), "{q}");
        }
        for s in [
            "The backups are kept for thirty days.",
            "Describe the calibration procedure.",
            "Explain how the meter is installed",
            "Las copias se conservan treinta días.",
            "Cuando la conexión falla, comprueba la contraseña.",
            "Como se indica en la guía, las copias son diarias.",
            "Existe un fragmento para cada respuesta a la entrada,",
            "BIM-2026-07",
            "Marlena Jensen",
        ] {
            assert!(!is_question(s), "{s}");
        }
    }

    #[test]
    fn references_to_the_passage_in_english_and_spanish() {
        for (q, found) in [
            ("What is described in the text?", "the text"),
            ("According to the passage, how long are backups kept?", "the passage"),
            ("What does this document explain?", "this document"),
            ("What does the document say about backups?", "the document"),
            ("What is described in the document?", "the document"),
            ("According to the document, who signs the report?", "the document"),
            ("Who does this handbook apply to?", "this handbook"),
            ("What is mentioned above about the valve?", "mentioned above"),
            ("What does the author recommend?", "the author"),
            ("¿Qué se describe en este texto?", "este texto"),
            ("¿En qué se encuentra el fragmento?", "el fragmento"),
            ("Según el texto, ¿cuántos días se guardan?", "el texto"),
            ("¿Qué dice el documento sobre las copias?", "el documento"),
            ("¿Qué se explica en el documento?", "el documento"),
            ("¿De qué trata este artículo?", "este articulo"),
            ("¿A quién se aplica esta política?", "esta politica"),
            ("¿Qué establece el pasaje sobre las copias?", "el pasaje"),
            ("¿Qué se menciona en lo anterior?", "lo anterior"),
            ("¿Qué recomienda el autor?", "el autor"),
        ] {
            assert_eq!(passage_reference(q).as_deref(), Some(found), "{q}");
        }
        for q in [
            "Who maintains the document management system?",
            "Who signs the document?",
            "¿Quién firma el documento?",
            "¿Quién asigna el nivel a un documento?",
            "What is the text of the warning label?",
            "¿Qué dice el texto de la etiqueta?",
            "What happens in the context of a permit to work?",
            "Who is the author of the calibration log template?",
            "¿Quién es el autor del acta?",
            "¿Dónde se guardan los documentos confidenciales?",
            "What does article 5 establish?",
            "¿Qué establece el artículo 5?",
            "Which textbook is used in training?",
            "How long does the self-test take?",
        ] {
            assert_eq!(passage_reference(q), None, "{q}");
        }
    }

    #[test]
    fn answers_may_quote_the_document_but_not_point_at_the_passage() {
        assert_eq!(answer_passage_reference("This handbook applies to every engineer on site."), None);
        assert_eq!(answer_passage_reference("It is kept in the document management system."), None);
        assert_eq!(answer_passage_reference("El artículo 5 lo establece."), None);
        assert_eq!(answer_passage_reference("The text of the label is red."), None);
        assert_eq!(answer_passage_reference("The passage is about the equipment."), Some("the passage".into()));
        assert_eq!(answer_passage_reference("Según el documento, treinta días."), Some("el documento".into()));
        assert_eq!(answer_passage_reference("According to the document, 18 Nm."), Some("the document".into()));
        assert_eq!(answer_passage_reference("El fragmento dice que treinta días."), Some("el fragmento".into()));
    }
}
