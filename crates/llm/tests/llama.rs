//! The llama.cpp backend on the real SmolLM2-135M-Instruct GGUF that `scripts/setup.sh`
//! fetches. One thread per generator: the test binaries run side by side.
//!
//! Every test that loads the model is ignored by default (`scripts/test.sh` runs them with
//! `--include-ignored`); the ones that need no model file run always.
#![cfg(feature = "llama")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chunk;
use docraft_core::{GenError, GenRequest, Generator, Sampling};
use docraft_llm::{GeneratorSettings, LlamaConfig, LlamaGenerator, LlmError, build_generator, default_gguf};
use docraft_qa_gen::{QaPrompt, parse_pairs};

fn load(parallel: u32) -> LlamaGenerator {
    let cfg = LlamaConfig::new(default_gguf()).with_parallel(parallel).unwrap().with_threads(1).unwrap();
    LlamaGenerator::load(cfg).expect("the SmolLM2 GGUF (run scripts/setup.sh)")
}

fn request(text: &str, seed: u64) -> GenRequest {
    let c = chunk("doc.md", text);
    let prompt = QaPrompt::new(2);
    GenRequest {
        messages: prompt.render(&c, &QaPrompt::language_of(&c)).unwrap(),
        max_tokens: 160,
        sampling: Sampling { seed, ..Sampling::default() },
        json_schema: Some(prompt.schema()),
        tag: c.id.to_string(),
    }
}

const TEXTS: [&str; 3] = [
    "Flange bolts on the P4 pump are tightened to 45 Nm in a star pattern, then checked again after 24 hours.",
    "Los documentos confidenciales se guardan en el archivo del segundo piso durante cinco años.",
    "Visitors sign in at the front desk and wear a badge at all times while they are inside the plant.",
];

#[test]
#[ignore = "needs scripts/setup.sh"]
fn batched_grammar_constrained_output_always_parses() {
    let g = load(3);
    let reqs: Vec<GenRequest> = TEXTS.iter().map(|t| request(t, 1)).collect();
    let out = g.generate_batch(&reqs);
    assert_eq!(out.len(), 3);
    for (r, res) in reqs.iter().zip(&out) {
        let res = res.as_ref().expect("generated");
        // The grammar allows only JSON of the schema: it parses, with 1..=2 complete pairs
        // (unless max_tokens cut it, which the repair then handles).
        let parsed = parse_pairs(&res.text).unwrap_or_else(|e| panic!("{e}: {}", res.text));
        assert!(!parsed.pairs.is_empty() && parsed.pairs.len() <= 2, "{}", res.text);
        if res.finish == docraft_core::FinishReason::Stop {
            let v: serde_json::Value = serde_json::from_str(&res.text).expect("complete JSON");
            assert!(v["pairs"].is_array());
        }
        // Results come back in request order: each one's prompt size is its own prompt's.
        let prompt_text = g.render(r).unwrap();
        assert_eq!(res.usage.prompt_tokens as usize, g.count_tokens(&prompt_text).unwrap());
        assert!(res.usage.completion_tokens > 0 && res.usage.completion_tokens <= 160);
    }
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn same_seed_same_text_other_seed_other_text() {
    let g = load(1);
    let a = g.generate(&request(TEXTS[0], 7)).unwrap();
    let b = g.generate(&request(TEXTS[0], 7)).unwrap();
    assert_eq!(a.text, b.text);
    let texts: std::collections::HashSet<String> =
        (8..12).map(|s| g.generate(&request(TEXTS[0], s)).unwrap().text).collect();
    assert!(texts.len() > 1, "seeds change the sampling");
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn chat_template_comes_from_the_file_and_model_id_from_its_bytes() {
    let g = load(1);
    let text = g.render(&request("Hello there, this is a short passage.", 0)).unwrap();
    assert!(text.starts_with("<|im_start|>system\n"), "{text}");
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
    assert!(g.model_id().starts_with("SmolLM2-135M-Instruct.Q4_1.gguf#"));
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn prompts_too_long_for_the_context_are_refused_per_request() {
    let cfg = LlamaConfig::new(default_gguf()).with_context(512).unwrap().with_threads(1).unwrap();
    let g = LlamaGenerator::load(cfg).unwrap();
    let long = TEXTS[2].repeat(12);
    let out = g.generate_batch(&[request(&long, 0), request("Short passage about badges for visitors.", 0)]);
    assert!(matches!(out[0], Err(GenError::ContextLengthExceeded { limit: 512, .. })), "{:?}", out[0]);
    assert!(out[1].is_ok(), "the other request is unaffected");
}

#[test]
fn missing_or_invalid_model_files_are_typed_errors() {
    let err = LlamaGenerator::load(LlamaConfig::new("/nonexistent/model.gguf")).unwrap_err();
    assert!(matches!(err, LlmError::Model { .. }) && err.to_string().contains("/nonexistent/model.gguf"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = LlamaGenerator::load(LlamaConfig::new(&junk)).unwrap_err();
    assert!(err.to_string().contains("junk.gguf"), "{err}");
    assert!(LlamaConfig::new("x").with_parallel(0).is_err());
}

#[test]
fn settings_name_the_missing_model_file() {
    let settings = GeneratorSettings { model: Some("/nonexistent/other.gguf".into()), ..GeneratorSettings::default() };
    let err = build_generator(&settings, std::path::Path::new("unused.jsonl")).map(|_| ()).unwrap_err();
    assert!(matches!(err, LlmError::Model { .. }) && err.to_string().contains("/nonexistent/other.gguf"), "{err}");
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn settings_build_the_default_model_with_their_values() {
    let settings = GeneratorSettings { parallel: 3, threads: Some(1), ..GeneratorSettings::default() };
    assert_eq!(settings.local_model(), Some(default_gguf()));
    let g = build_generator(&settings, std::path::Path::new("unused.jsonl")).unwrap();
    assert_eq!(g.preferred_batch(), 3, "parallel reached the backend");
    // The same file gives the same id as loading it directly; the id is the file's, not "unknown".
    assert_eq!(g.model_id(), load(1).model_id());
    assert!(g.model_id().starts_with("SmolLM2-135M-Instruct.Q4_1.gguf#"));
    let out = g.generate(&request(TEXTS[1], 3)).unwrap();
    assert!(parse_pairs(&out.text).is_ok(), "the grammar is on by default: {}", out.text);
}
