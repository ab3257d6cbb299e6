//! The llama.cpp backend on the real SmolLM2-135M-Instruct GGUF that `scripts/setup.sh`
//! fetches. One thread per generator: the test binaries run side by side.
//!
//! Every test that loads the model is ignored by default (`scripts/test.sh` runs them with
//! `--include-ignored`); the ones that need no model file run always.
#![cfg(feature = "llama")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chunk;
use docraft_core::{ChatMessage, GenError, GenRequest, Generator, Role, Sampling};
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

/// Five passages of one document.
const PASSAGES: [&str; 5] = [
    "Flange bolts on the P4 pump are tightened to 45 Nm in a star pattern, then checked again after 24 hours.",
    "Visitors sign in at the front desk and wear a badge at all times while they are inside the plant.",
    "The cooling tower is drained every October and refilled in March, after the pipes have been inspected.",
    "Forklift drivers renew their license every three years and take a practical test with a supervisor.",
    "Spare fuses for the main panel are kept in the grey cabinet next to the electrical room door.",
];

/// A system prompt with the rules in it: the start every prompt of a run shares.
const SYSTEM: &str = "You write question and answer pairs for training a model on an organization's documents. \
    You use only the facts in the passage you are given and you reply with JSON only. Rules: each answer states \
    facts from the passage; copy its words where you can. Each question names its subject, so a reader who has \
    not seen the passage understands it. Never write \"the passage\" or \"the text\". Questions and answers \
    are written in English.";

/// A greedy, grammar-constrained Q&A request whose prompt starts with [`SYSTEM`] (over 64
/// tokens) and ends with its own passage and the instructions (over 64 tokens too).
fn shared(text: &str) -> GenRequest {
    let user = format!(
        "Passage from doc.md:\n\"\"\"\n{text}\n\"\"\"\n\nWrite 2 question(s) that this passage alone answers, \
         each with its answer. Reply with JSON only: {{\"pairs\": [{{\"question\": \"...\", \"answer\": \"...\"}}]}}"
    );
    GenRequest {
        messages: vec![ChatMessage::new(Role::System, SYSTEM), ChatMessage::new(Role::User, user)],
        max_tokens: 160,
        sampling: Sampling { temperature: 0.0, ..Sampling::default() },
        json_schema: Some(QaPrompt::new(2).schema()),
        tag: String::new(),
    }
}

/// [`request`] (the built-in prompt), greedy.
fn greedy(text: &str, seed: u64) -> GenRequest {
    let mut r = request(text, seed);
    r.sampling.temperature = 0.0;
    r
}

fn texts(out: &[Result<docraft_core::GenResponse, GenError>]) -> Vec<String> {
    out.iter().map(|r| r.as_ref().expect("generated").text.clone()).collect()
}

fn smollm(parallel: u32) -> LlamaConfig {
    LlamaConfig::new(default_gguf()).with_parallel(parallel).unwrap().with_threads(1).unwrap()
}

// Greedy outputs are compared one sequence at a time (parallel 1). With several sequences
// decoded together llama.cpp's CPU kernels round differently with the cache layout and the
// batch's make-up, so the output of a request depends on its neighbours with or without
// reuse (SmolLM2 at parallel 3 and parallel 1 differ on most of these prompts): there is no
// one "plain" output to compare with.

#[test]
#[ignore = "needs scripts/setup.sh"]
fn shared_prompt_reuse_gives_the_same_greedy_outputs_from_fewer_evaluated_tokens() {
    let reqs: Vec<GenRequest> = PASSAGES.iter().map(|t| shared(t)).collect();
    let plain = LlamaGenerator::load(smollm(1).with_prefix_reuse(false)).unwrap();
    let reuse = LlamaGenerator::load(smollm(1)).unwrap();
    assert!(!plain.reuses_prefixes() && reuse.reuses_prefixes());

    let want = plain.generate_batch(&reqs);
    for r in &want {
        parse_pairs(&r.as_ref().unwrap().text).expect("the grammar gives the schema's JSON");
    }
    let p = plain.stats();
    assert_eq!((p.requests, p.prompt_tokens_cached), (5, 0));
    assert_eq!(p.prompt_tokens_evaluated, p.prompt_tokens, "without reuse every prompt token is evaluated");

    // One batch: the shared start is evaluated once, then the five tails.
    let got = reuse.generate_batch(&reqs);
    assert_eq!(texts(&got), texts(&want), "the same greedy outputs");
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.as_ref().unwrap().usage, b.as_ref().unwrap().usage, "usage counts whole prompts");
    }
    let r = reuse.stats();
    assert_eq!(r.prompt_tokens, p.prompt_tokens);
    let prefix = r.prompt_tokens_cached / 5;
    assert!(prefix >= 64 && r.prompt_tokens_cached == 5 * prefix, "{r:?}");
    let prefix_evaluated = p.prompt_tokens - 4 * prefix;
    assert_eq!(r.prompt_tokens_evaluated, p.prompt_tokens - 4 * prefix, "the prefix once, then the tails: {r:?}");

    // Later batches start from the kept prefix state, the shared prefix is not evaluated
    // again. (A prompt seen before shares even more with itself: all but its last 64 tokens
    // come from the cache then.)
    let before = reuse.stats();
    let one_by_one: Vec<String> = reqs.iter().map(|r| reuse.generate(r).unwrap().text).collect();
    assert_eq!(one_by_one, texts(&want), "the same outputs one request at a time");
    let run = reuse.stats().since(&before);
    assert!(run.prompt_tokens_cached >= 5 * prefix, "{run:?}");
    assert!(run.prompt_tokens_evaluated < r.prompt_tokens_evaluated, "{run:?}");

    // A fresh generator fed one request at a time finds the shared start from the second
    // request on (the first has nothing to share it with).
    let fresh = LlamaGenerator::load(smollm(1)).unwrap();
    let seq: Vec<String> = reqs.iter().map(|r| fresh.generate(r).unwrap().text).collect();
    assert_eq!(seq, texts(&want));
    let f = fresh.stats();
    assert_eq!(f.prompt_tokens_cached, 4 * prefix, "{f:?}");

    // Several sequences at once: the prefix is shared by all of them.
    let par = LlamaGenerator::load(smollm(3)).unwrap();
    for r in par.generate_batch(&reqs) {
        parse_pairs(&r.unwrap().text).expect("the grammar holds from a shared prefix");
    }
    let s = par.stats();
    assert_eq!(s.prompt_tokens_evaluated, prefix_evaluated, "{s:?}");

    // The built-in prompt puts its rules after the passage: these prompts share less than 64
    // tokens (the system prompt, "Passage from doc.md"). That prefix is evaluated beside
    // throwaway rows and kept too (cut back from the longer one above where they agree):
    // still the same outputs.
    let qa: Vec<GenRequest> = PASSAGES.iter().map(|t| greedy(t, 1)).collect();
    let want = plain.generate_batch(&qa);
    let before = reuse.stats();
    assert_eq!(texts(&reuse.generate_batch(&qa)), texts(&want), "the built-in prompt");
    let run = reuse.stats().since(&before);
    assert!(run.prompt_tokens_cached >= 5 * 16 && run.prompt_tokens_cached < 5 * 64, "{run:?}");
    let before = reuse.stats();
    let one_by_one: Vec<String> = qa.iter().map(|r| reuse.generate(r).unwrap().text).collect();
    assert_eq!(one_by_one, texts(&want));
    assert!(reuse.stats().since(&before).prompt_tokens_cached > 0);

    // A prompt that shares too little (a different system prompt) is evaluated whole.
    let mut other = shared(PASSAGES[0]);
    other.messages[0].content = "Reply with JSON.".into();
    let before = reuse.stats();
    reuse.generate(&other).unwrap();
    assert_eq!(reuse.stats().since(&before).prompt_tokens_cached, 0);
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn speculative_decoding_keeps_the_main_models_greedy_output_and_reports_acceptance() {
    // SmolLM2 drafting for itself: the draft's proposals are the main model's own picks
    // unless the grammar or the repeat penalty says otherwise, so most are accepted.
    let reqs: Vec<GenRequest> = PASSAGES[..3].iter().map(|t| shared(t)).collect();
    let plain = LlamaGenerator::load(smollm(1).with_prefix_reuse(false)).unwrap();
    let want = plain.generate_batch(&reqs);
    for reuse in [false, true] {
        let cfg = smollm(1).with_prefix_reuse(reuse).with_draft_model(Some(default_gguf())).with_draft_max(6).unwrap();
        let spec = LlamaGenerator::load(cfg).unwrap();
        let got = spec.generate_batch(&reqs);
        assert_eq!(texts(&got), texts(&want), "prefix reuse {reuse}: the main model's greedy output");
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.as_ref().unwrap().usage, b.as_ref().unwrap().usage);
            assert_eq!(a.as_ref().unwrap().finish, b.as_ref().unwrap().finish);
        }
        let s = spec.stats();
        assert!(s.draft_tokens > 0 && s.draft_accepted > 0, "{s:?}");
        let rate = s.acceptance_rate().unwrap();
        assert!(rate > 0.5, "a model drafting for itself is mostly right: {rate} {s:?}");
        assert!(s.decode_steps < s.completion_tokens, "several tokens per main pass: {s:?}");
        assert!(s.draft_prompt_tokens_evaluated > 0, "{s:?}");
    }
    // Several sequences drafted for at once: valid output, proposals accepted.
    let cfg = smollm(3).with_draft_model(Some(default_gguf()));
    let spec = LlamaGenerator::load(cfg).unwrap();
    for r in spec.generate_batch(&reqs) {
        parse_pairs(&r.unwrap().text).expect("the grammar holds with a draft");
    }
    assert!(spec.stats().acceptance_rate().unwrap() > 0.5, "{:?}", spec.stats());
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn sampled_requests_are_decoded_without_the_draft() {
    // Speculation is for greedy requests only: a sampled one gives what it gives without a
    // draft model, seed for seed.
    let sampled = request(PASSAGES[0], 5);
    let plain = LlamaGenerator::load(smollm(1)).unwrap();
    let spec = LlamaGenerator::load(smollm(1).with_draft_model(Some(default_gguf()))).unwrap();
    assert_eq!(spec.generate(&sampled).unwrap().text, plain.generate(&sampled).unwrap().text);
    assert_eq!(spec.stats().draft_tokens, 0, "{:?}", spec.stats());
    // In a batch with a greedy one, only the greedy one is drafted for.
    let out = spec.generate_batch(&[sampled, shared(PASSAGES[1])]);
    assert!(out.iter().all(Result::is_ok));
    assert!(spec.stats().draft_tokens > 0, "{:?}", spec.stats());
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_draft_model_with_another_vocabulary_is_refused() {
    let qwen = docraft_core::models_dir().join("qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf");
    let err = LlamaGenerator::load(smollm(1).with_draft_model(Some(qwen.clone()))).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, LlmError::Model { path, .. } if *path == qwen), "{err:?}");
    assert!(msg.contains("vocabulary") && msg.contains("tokenizer"), "{msg}");
    // A missing draft file is named as such.
    let err = LlamaGenerator::load(smollm(1).with_draft_model(Some("/nonexistent/draft.gguf".into()))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/draft.gguf"), "{err}");
    // The settings reach the generator.
    let settings =
        GeneratorSettings { draft_model: Some(qwen), threads: Some(1), parallel: 1, ..GeneratorSettings::default() };
    let err = build_generator(&settings, std::path::Path::new("unused.jsonl")).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

/// A GGUF file of string metadata and 2-D F32 tensors (zeros): enough to try what is checked
/// of a LoRA adapter before it is used. Not a LoRA writer: no real weights.
fn write_gguf(path: &std::path::Path, kv: &[(&str, &str)], tensors: &[(&str, [u64; 2])]) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        string(&mut out, k);
        out.extend(8u32.to_le_bytes()); // a string
        string(&mut out, v);
    }
    let mut data = 0u64;
    for (name, ne) in tensors {
        string(&mut out, name);
        out.extend(2u32.to_le_bytes());
        out.extend(ne[0].to_le_bytes());
        out.extend(ne[1].to_le_bytes());
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(data.to_le_bytes());
        data += (ne[0] * ne[1] * 4).next_multiple_of(32);
    }
    out.resize(out.len().next_multiple_of(32), 0);
    out.resize(out.len() + usize::try_from(data).unwrap(), 0);
    std::fs::write(path, out).unwrap();
}

fn lora_kv(arch: &str) -> [(&str, &str); 3] {
    [("general.type", "adapter"), ("general.architecture", arch), ("adapter.type", "lora")]
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_lora_adapter_that_does_not_fit_the_model_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |lora: &std::path::Path, why: &str| {
        let err = LlamaGenerator::load(smollm(1).with_lora(Some(lora.to_path_buf()))).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(&err, LlmError::Model { path, .. } if path == lora), "{err:?}");
        assert!(msg.contains(&lora.display().to_string()) && msg.contains("LoRA") && msg.contains(why), "{msg}");
    };
    // Not a GGUF file.
    let junk = dir.path().join("junk-adapter.gguf");
    std::fs::write(&junk, b"not an adapter").unwrap();
    refused(&junk, "not a GGUF file");
    // No file.
    refused(std::path::Path::new("/nonexistent/adapter.gguf"), "no such file");
    // A model, not an adapter.
    refused(&default_gguf(), "a model, not an adapter");
    // An adapter of another architecture (SmolLM2 is llama).
    let qwen = dir.path().join("qwen2-adapter.gguf");
    write_gguf(&qwen, &lora_kv("qwen2"), &[]);
    refused(&qwen, "architecture qwen2");
    // The right architecture, tensors of another shape (SmolLM2's attention is 576 wide).
    let shapes = dir.path().join("other-shapes.gguf");
    let tensors = [("blk.0.attn_q.weight.lora_a", [64, 4]), ("blk.0.attn_q.weight.lora_b", [4, 64])];
    write_gguf(&shapes, &lora_kv("llama"), &tensors);
    refused(&shapes, "shape");
    // The settings reach the generator.
    let settings = GeneratorSettings { lora: Some(junk.clone()), threads: Some(1), ..GeneratorSettings::default() };
    let err = build_generator(&settings, std::path::Path::new("unused.jsonl")).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains(&junk.display().to_string()), "{err}");
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn an_empty_lora_adapter_is_applied_to_every_main_context_and_changes_nothing() {
    // An adapter without tensors loads and is applied, but changes no weight: the greedy
    // output is the plain model's, with shared-prompt reuse and with a draft model (which
    // gets no adapter). Its id is another model's.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-adapter.gguf");
    write_gguf(&empty, &lora_kv("llama"), &[]);
    let reqs: Vec<GenRequest> = PASSAGES[..2].iter().map(|t| shared(t)).collect();
    let plain = LlamaGenerator::load(smollm(1)).unwrap();
    let want = texts(&plain.generate_batch(&reqs));
    let tuned = LlamaGenerator::load(smollm(1).with_lora(Some(empty.clone()))).unwrap();
    assert_eq!(texts(&tuned.generate_batch(&reqs)), want);
    assert!(tuned.stats().prompt_tokens_cached > 0, "{:?}", tuned.stats());
    assert_ne!(tuned.model_id(), plain.model_id());
    assert!(tuned.model_id().starts_with(&plain.model_id()) && tuned.model_id().contains("empty-adapter.gguf#"));
    let spec = LlamaGenerator::load(smollm(1).with_lora(Some(empty)).with_draft_model(Some(default_gguf()))).unwrap();
    assert_eq!(texts(&spec.generate_batch(&reqs)), want);
    assert!(spec.stats().draft_accepted > 0, "{:?}", spec.stats());
}
