//! Language guesses, shared by ingest (document metadata) and qa-gen (chunk and answer
//! language checks).

/// Guesses the language of `text` (ISO 639-1 where one exists, e.g. `es`, `en`); `None`
/// when the text is too short or the guess unreliable.
#[must_use]
pub fn guess_language(text: &str) -> Option<String> {
    // A sample from the start is enough and keeps this cheap on long documents.
    let end = text.char_indices().nth(4000).map_or(text.len(), |(i, _)| i);
    let sample = text.get(..end)?;
    if sample.split_whitespace().count() < 5 {
        return None;
    }
    let info = whatlang::detect(sample)?;
    if info.confidence() < 0.3 {
        return None;
    }
    let code = info.lang().code();
    Some(iso639_1(code).unwrap_or(code).to_string())
}

fn iso639_1(code3: &str) -> Option<&'static str> {
    Some(match code3 {
        "eng" => "en",
        "spa" => "es",
        "por" => "pt",
        "fra" => "fr",
        "deu" => "de",
        "ita" => "it",
        "cat" => "ca",
        "nld" => "nl",
        "rus" => "ru",
        "ukr" => "uk",
        "pol" => "pl",
        "ces" => "cs",
        "swe" => "sv",
        "dan" => "da",
        "nob" => "nb",
        "fin" => "fi",
        "ell" => "el",
        "tur" => "tr",
        "ara" => "ar",
        "heb" => "he",
        "hin" => "hi",
        "jpn" => "ja",
        "kor" => "ko",
        "cmn" => "zh",
        "vie" => "vi",
        "ron" => "ro",
        "hun" => "hu",
        _ => return None,
    })
}

/// The English name of an ISO 639-1 (or 639-3) code, e.g. `es` -> `Spanish`; the code itself
/// when unknown.
#[must_use]
pub fn language_name(code: &str) -> String {
    let lang = whatlang::Lang::from_code(code)
        .or_else(|| whatlang::Lang::all().iter().copied().find(|l| iso639_1(l.code()) == Some(code)));
    lang.map_or_else(|| code.to_string(), |l| l.eng_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        let es = "El sistema guarda los documentos de la empresa en su propia máquina y nunca los envía fuera.";
        let en = "The system keeps the company's documents on its own machine and never sends them out.";
        assert_eq!(guess_language(es).as_deref(), Some("es"));
        assert_eq!(guess_language(en).as_deref(), Some("en"));
        assert_eq!(guess_language("hola"), None);
        assert_eq!(language_name("es"), "Spanish");
        assert_eq!(language_name("eng"), "English");
        assert_eq!(language_name("xx"), "xx");
    }
}
