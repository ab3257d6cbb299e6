//! The rendered chain-of-thought prompts and schema, snapshot-tested: a prompt change shows
//! up as a reviewed diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use docraft_raft::CotPrompt;

const ORACLE_EN: &str =
    "Flange bolts on the P4 pump are tightened to 45 Nm in a star pattern. They are checked again after 24 hours.";
const ORACLE_ES: &str =
    "Los documentos confidenciales se guardan en el armario B. Solo el responsable de archivo tiene la llave.";

fn render(structured: bool, question: &str, oracle: &str, lang: &str) -> String {
    let chat = CotPrompt::new(structured).render(question, oracle, lang).unwrap();
    chat.iter().map(|m| format!("[{}]\n{}", m.role.as_str(), m.content)).collect::<Vec<_>>().join("\n\n")
}

#[test]
fn free_text_prompts_follow_the_reference() {
    insta::assert_snapshot!("cot_free_en", render(false, "What torque do the P4 flange bolts need?", ORACLE_EN, "en"));
    insta::assert_snapshot!(
        "cot_free_es",
        render(false, "¿Dónde se guardan los documentos confidenciales?", ORACLE_ES, "es")
    );
    assert!(CotPrompt::new(false).schema(ORACLE_EN).is_none());
}

#[test]
fn structured_prompts_restrict_quotes_to_the_oracle_sentences() {
    insta::assert_snapshot!("cot_json_en", render(true, "What torque do the P4 flange bolts need?", ORACLE_EN, "en"));
    insta::assert_snapshot!(
        "cot_json_es",
        render(true, "¿Dónde se guardan los documentos confidenciales?", ORACLE_ES, "es")
    );
    let schema = CotPrompt::new(true).schema(ORACLE_ES).unwrap();
    insta::assert_snapshot!("cot_schema", serde_json::to_string_pretty(&schema).unwrap());
    let allowed = schema.pointer("/properties/reasoning/items/properties/quote/enum").unwrap().as_array().unwrap();
    assert_eq!(allowed.len(), 2);
    assert!(allowed.iter().all(|s| ORACLE_ES.contains(s.as_str().unwrap())));
    assert_ne!(CotPrompt::new(true).id(), CotPrompt::new(false).id());
}

#[test]
fn question_and_oracle_are_inserted_verbatim() {
    let question = "What does {{context}} mean in {{language}} and {question}?";
    let oracle = "The manual writes {{question}} and {{context}} literally; see {\"answer\": 1}.";
    for (structured, lang) in [(false, "en"), (false, "es"), (true, "en"), (true, "es")] {
        let chat = CotPrompt::new(structured).render(question, oracle, lang).unwrap();
        let user = &chat[1].content;
        assert_eq!(user.matches(question).count(), 1, "{user}");
        assert_eq!(user.matches(oracle).count(), 1, "{user}");
        let rest = user.replacen(question, "", 1).replacen(oracle, "", 1);
        assert!(!rest.contains("{{"), "every template placeholder filled: {rest}");
    }
}
