//! The rendered prompts, snapshot-tested: a prompt change shows up as a reviewed diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chunk;
use docraft_qa_gen::{Judge, JudgeOptions, QaPrompt, RawPair};

fn render(doc: &str, text: &str, headings: &[&str]) -> (String, String) {
    let mut c = chunk(doc, text);
    c.headings = headings.iter().map(|h| (*h).to_string()).collect();
    let lang = QaPrompt::language_of(&c);
    let chat = QaPrompt::new(3).render(&c, &lang).unwrap();
    let text = chat.iter().map(|m| format!("[{}]\n{}", m.role.as_str(), m.content)).collect::<Vec<_>>().join("\n\n");
    (lang, text)
}

#[test]
fn english_chunk_gets_the_english_prompt() {
    let (lang, text) = render(
        "handbook-en.pdf",
        "Flange bolts on the P4 pump are tightened to 45 Nm in a star pattern, then checked after 24 hours.",
        &["Maintenance", "Pumps"],
    );
    assert_eq!(lang, "en");
    insta::assert_snapshot!("prompt_en", text);
}

#[test]
fn spanish_chunk_gets_the_spanish_prompt() {
    let (lang, text) = render(
        "politica-es.pdf",
        "Los documentos confidenciales se guardan en el archivo del segundo piso durante cinco años.",
        &[],
    );
    assert_eq!(lang, "es");
    insta::assert_snapshot!("prompt_es", text);
}

#[test]
fn other_languages_get_the_english_prompt_naming_their_language() {
    let (lang, text) = render(
        "note-fr.md",
        "Les documents confidentiels sont conservés aux archives du deuxième étage pendant cinq ans.",
        &[],
    );
    assert_eq!(lang, "fr");
    assert!(text.contains("Questions and answers are written in French."), "{text}");
}

#[test]
fn schema_and_id_are_stable() {
    let p = QaPrompt::new(2);
    insta::assert_snapshot!("schema", serde_json::to_string_pretty(&p.schema()).unwrap());
    assert_eq!(p.id(), QaPrompt::new(2).id());
    assert_ne!(p.id(), QaPrompt::new(3).id(), "the schema bounds the pair count, so it is part of the id");
}

#[test]
fn chunk_text_and_names_are_inserted_verbatim() {
    // Every placeholder syntax the prompt files use or used, plus the JSON braces.
    let hostile = "Section {{text}} names {{source}}, {{headings}}, {{n}}, {{language}}, {text} and {\"pairs\": []}.";
    for lang in ["en", "es"] {
        let mut c = chunk("{{text}}.md", hostile);
        c.headings = vec!["{{n}}".to_string()];
        let chat = QaPrompt::new(3).render(&c, lang).unwrap();
        let user = &chat[1].content;
        assert_eq!(user.matches(hostile).count(), 1, "{user}");
        assert!(user.contains("{{text}}.md"), "{user}");
        assert!(user.contains("\"{{n}}\""), "{user}");
        // The template's own placeholders were all filled: only the hostile ones remain.
        let rendered_without_values =
            user.replacen(hostile, "", 1).replacen("{{text}}.md", "", 1).replacen("{{n}}", "", 1);
        assert!(!rendered_without_values.contains("{{"), "{rendered_without_values}");
    }
}

fn render_judge(doc: &str, text: &str, question: &str, answer: &str) -> String {
    struct Nobody;
    impl docraft_core::Generator for Nobody {
        fn generate_batch(
            &self,
            _: &[docraft_core::GenRequest],
        ) -> Vec<Result<docraft_core::GenResponse, docraft_core::GenError>> {
            Vec::new()
        }
        fn model_id(&self) -> String {
            "nobody".into()
        }
    }
    let c = chunk(doc, text);
    let lang = QaPrompt::language_of(&c);
    let judge = Judge::new(&Nobody, JudgeOptions::default()).unwrap();
    let pair = RawPair { question: question.into(), answer: answer.into() };
    let chat = judge.render(&c, &lang, &pair).unwrap();
    chat.iter().map(|m| format!("[{}]\n{}", m.role.as_str(), m.content)).collect::<Vec<_>>().join("\n\n")
}

#[test]
fn judge_prompts_in_english_and_spanish() {
    insta::assert_snapshot!(
        "judge_en",
        render_judge(
            "handbook-en.pdf",
            "Flange bolts on the P4 pump are tightened to 45 Nm in a star pattern, then checked after 24 hours.",
            "What torque are the P4 flange bolts tightened to?",
            "To 45 Nm, in a star pattern.",
        )
    );
    insta::assert_snapshot!(
        "judge_es",
        render_judge(
            "politica-es.pdf",
            "Los documentos confidenciales se guardan en el archivo del segundo piso durante cinco años.",
            "¿Dónde se guardan los documentos confidenciales?",
            "En el archivo del segundo piso.",
        )
    );
    insta::assert_snapshot!("judge_schema", serde_json::to_string_pretty(&docraft_qa_gen::judge::schema()).unwrap());
}
