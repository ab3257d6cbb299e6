//! The demo config's generator (docraft.toml `[models] generator`) is a real instruction model
//! that answers fixture questions from their passage, greedily, in English and Spanish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use docraft_core::{ChatMessage, GenRequest, Generator, Role, Sampling};
use docraft_ingest::{AutoLoader, ChunkSettings, Chunker, Loader, TextChunker};
use docraft_llm::{LlamaConfig, LlamaGenerator};
use docraft_pipeline::Settings;

/// The fixture chunk of `file` holding `needle`.
fn passage(file: &str, needle: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/docs").join(file);
    let bytes = std::fs::read(&path).unwrap();
    let doc = AutoLoader::new().load(&path, bytes.as_slice()).unwrap();
    let chunks = TextChunker::new(ChunkSettings::default()).chunk(&doc).unwrap();
    chunks.into_iter().find(|c| c.text.contains(needle)).map(|c| c.text).expect("the fixture chunk")
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn the_demo_generator_answers_fixture_questions_from_their_passage() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docraft.toml");
    let settings = Settings::from_file(&demo).unwrap();
    let gguf = settings.models.generator_path();
    assert!(gguf.to_string_lossy().contains("qwen2.5"), "the demo generator is a Qwen2.5 model: {}", gguf.display());
    let generator = LlamaGenerator::load(LlamaConfig::new(gguf).with_threads(2).unwrap()).unwrap();
    let cases = [
        ("handbook-en.pdf", "18 Nm", "What torque should the flange bolts be tightened to?", "18 Nm"),
        (
            "politica-es.pdf",
            "armarios con llave",
            "¿Dónde se guardan los documentos en papel confidenciales?",
            "armarios con llave",
        ),
    ];
    for (file, needle, question, expected) in cases {
        let request = GenRequest {
            messages: vec![
                ChatMessage::new(Role::System, "Answer the question from the passage, briefly, in its language."),
                ChatMessage::new(Role::User, format!("Passage:\n{}\n\nQuestion: {question}", passage(file, needle))),
            ],
            max_tokens: 60,
            sampling: Sampling { temperature: 0.0, ..Sampling::default() },
            json_schema: None,
            tag: file.into(),
        };
        let answer = generator.generate(&request).unwrap().text;
        assert!(answer.contains(expected), "{question} -> {answer:?}");
    }
}
