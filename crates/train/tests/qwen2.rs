//! Qwen2 (q/k/v biases, untied output, gpt2 BPE with the `qwen2` pre-tokenizer, ChatML with a
//! default system prompt): a tiny random one through Hugging Face layout and merge, and the real
//! Qwen2.5-Coder-0.5B-Instruct GGUF (what `scripts/setup.sh` fetches) against llama.cpp: token ids,
//! logits, a few training steps, merge round trip through HF layout, and a greedy chat answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use common::{argmax, pearson};
use docraft_core::{ChatMessage, Role};
use docraft_train::data::{Dataset, Encoder};
use docraft_train::generate::{ChatModel, GenOptions};
use docraft_train::{
    Adapter, BaseModel, BatchSize, GgufTokenizer, Inputs, Llama, LoraConfig, ModelConfig, Settings, StepInfo, Target,
    Trainer, byte_tokenizer_json,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

fn gguf() -> PathBuf {
    let p = docraft_core::models_dir().join("qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh", p.display());
    p
}

/// The model tests each hold ~2.5 GB (f32 weights) and both cores: one at a time.
fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The dequantized 0.5B, loaded once for all tests of this file.
fn base() -> &'static BaseModel {
    static BASE: OnceLock<BaseModel> = OnceLock::new();
    BASE.get_or_init(|| BaseModel::load(&gguf(), &Device::Cpu).unwrap())
}

/// llama.cpp's backend may be initialized once per process.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().unwrap();
        b.void_logs();
        b
    })
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// An adapter on `targets` with every B random (B starts at zero, which would hide bugs).
fn random_adapter(config: &ModelConfig, targets: &[Target], seed: u64, std: f64) -> Adapter {
    let cfg = LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, targets: targets.to_vec(), use_rslora: false };
    let adapter = Adapter::new(config, cfg, seed, DType::F32, &Device::Cpu).unwrap();
    for pair in adapter.layers.iter().flat_map(|row| row.iter().flatten()) {
        pair.b.set(&pair.b.as_tensor().randn_like(0.0, std).unwrap()).unwrap();
    }
    adapter
}

/// Logits of every position of `ids`, `[len, vocab]`.
fn all_logits(model: &Llama, ids: &[u32], adapter: Option<&Adapter>) -> Tensor {
    let inputs = Inputs::single(ids, model.dtype(), model.device()).unwrap();
    model.logits(&model.hidden(&inputs, adapter, None).unwrap()).unwrap()
}

#[test]
fn a_tiny_qwen2_keeps_its_biases_through_hf_layout_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ModelConfig::tiny(256 + common::SPECIALS.len(), 64, 2);
    config.architectures = vec!["Qwen2ForCausalLM".into()];
    config.model_type = "qwen2".into();
    config.attention_bias = true;
    config.tie_word_embeddings = false;
    config.rope_theta = 1e6;
    let model = Llama::random(&config, 3, DType::F32, &Device::Cpu).unwrap();
    let base = BaseModel {
        config: config.clone(),
        weights: model.weights(),
        tokenizer_json: byte_tokenizer_json(&common::SPECIALS),
        chat_template: docraft_train::CHATML.to_string(),
        bos: None,
        eos: Some("<|im_end|>".into()),
        source: tmp.path().to_path_buf(),
    };
    let w = base.weights.keys().filter(|k| k.ends_with(".bias")).count();
    assert_eq!(w, 2 * 3, "q/k/v biases in both layers");
    assert!(base.weights.contains_key("lm_head.weight"));

    // Hugging Face's Qwen2 config.json does not spell out the biases: drop the key, as theirs.
    let dir = tmp.path().join("hf");
    base.save_hf(&dir).unwrap();
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "qwen2");
    assert_eq!(cfg["architectures"], serde_json::json!(["Qwen2ForCausalLM"]));
    cfg.as_object_mut().unwrap().remove("attention_bias");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(st.contains_key("model.layers.1.self_attn.k_proj.bias"));
    let back = BaseModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
    assert!(back.config.attention_bias);
    let reloaded = Llama::new(&back, DType::F32, &Device::Cpu).unwrap();
    let ids: Vec<u32> = "qwen biases".bytes().map(|b| u32::from(b) + 3).collect();
    let want = all_logits(&model, &ids, None);
    assert_eq!(max_diff(&want, &all_logits(&reloaded, &ids, None)), 0.0);

    // The biases matter (a model without them gives other logits) ...
    let mut unbiased = model.weights();
    unbiased.retain(|k, _| !k.ends_with(".bias"));
    let plain = Llama::from_weights(&config, &unbiased, DType::F32, &Device::Cpu).unwrap();
    assert!(max_diff(&want, &all_logits(&plain, &ids, None)) > 1e-3);
    // ... and survive a merge, which only touches the weights LoRA adapts.
    let adapter = random_adapter(&config, &Target::ALL, 4, 0.1);
    let with = all_logits(&model, &ids, Some(&adapter));
    let mut merged_w = model.weights();
    adapter.merge_into(&mut merged_w).unwrap();
    assert_eq!(merged_w.keys().filter(|k| k.ends_with(".bias")).count(), 6);
    let merged = Llama::from_weights(&config, &merged_w, DType::F32, &Device::Cpu).unwrap();
    assert!(max_diff(&with, &want) > 1e-2, "the adapter must change the logits for this test to mean anything");
    assert!(max_diff(&with, &all_logits(&merged, &ids, None)) < 1e-4);
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn config_and_weights_come_from_the_qwen2_metadata() {
    let _g = heavy();
    let b = base();
    let c = &b.config;
    assert_eq!(c.model_type, "qwen2");
    assert_eq!(c.architectures, vec!["Qwen2ForCausalLM".to_string()]);
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.kv_heads(), c.intermediate_size),
        (896, 24, 14, 2, 4864)
    );
    assert_eq!((c.head_dim(), c.vocab_size, c.max_position_embeddings), (64, 151_936, 32_768));
    assert!((c.rope_theta - 1e6).abs() < 1.0, "rope_theta {}", c.rope_theta);
    assert!((c.rms_norm_eps - 1e-6).abs() < 1e-9, "rms_norm_eps {}", c.rms_norm_eps);
    assert!(c.attention_bias);
    // This GGUF stores `output.weight` (Q8_0) apart from `token_embd` (Q5_0): untied here.
    assert!(!c.tie_word_embeddings);
    assert_eq!(b.weights["model.layers.23.self_attn.q_proj.bias"].dims(), &[896]);
    assert_eq!(b.weights["model.layers.0.self_attn.k_proj.bias"].dims(), &[128]);
    assert_eq!(b.weights["model.layers.0.self_attn.v_proj.weight"].dims(), &[128, 896]);
    assert_eq!(b.weights["lm_head.weight"].dims(), &[151_936, 896]);
    assert_eq!((c.bos_token_id, c.eos_ids()), (Some(151_643), vec![151_645]));
    assert_eq!((b.bos.as_deref(), b.eos.as_deref()), (Some("<|endoftext|>"), Some("<|im_end|>")));
    // Every quant type of the file (Q5_0, Q8_0, Q6_K, Q4_K) dequantizes to finite values.
    for (name, t) in &b.weights {
        let s = t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(s.is_finite() && s > 0.0, "{name}: sum of squares {s}");
    }
}

/// Strings whose ids must equal llama.cpp's: English, Spanish, digits, code, whitespace runs,
/// contractions, other scripts, special tokens.
const TEXTS: [&str; 14] = [
    "The quick brown fox jumps over the lazy dog.",
    "¿Cuántos días de vacaciones tiene un empleado? ¡Veintidós! El niño comió ñoquis en Añorbe.",
    "Según el artículo 38.1, el período anual será de 30 días naturales (no 22).",
    "1234567890 3.14159 2026-11-30 $1,000,000.00 42nd 0x1F",
    "fn main() {\n    let x: Vec<u32> = (0..10).collect();\n    println!(\"{x:?}\");\n}\n",
    "def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n - 1) + fib(n - 2)  # recursion\n",
    "a    b\n\n\n   c\t\t d  \r\n e     ",
    "I'm sure you're right, but DON'T say we'd've LL'd it. It's 'quoted'.",
    "日本語のテキスト、中文文本。Ελληνικά и русский текст. 🦀🚀 café naïve",
    "cafe\u{301} (an e with a combining accent: llama.cpp does not normalize, nor do we)",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "   leading spaces and trailing ones   ",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call> <|fim_prefix|>x<|fim_suffix|>",
];

#[test]
#[ignore = "needs scripts/setup.sh"]
fn tokenizer_ids_equal_llama_cpp() {
    // Only the vocabulary: no weights needed on either side.
    let path = gguf();
    let mut f = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut f).unwrap();
    let ours = GgufTokenizer::from_gguf(&path, &content).unwrap().build().unwrap();
    let params = LlamaModelParams::default().with_vocab_only(true);
    let model = LlamaModel::load_from_file(backend(), &path, &params).unwrap();
    let base_template = {
        let tok = GgufTokenizer::from_gguf(&path, &content).unwrap();
        docraft_train::ChatTemplate::new(tok.chat_template.as_deref().unwrap(), "", "<|im_end|>").unwrap()
    };
    let chat = base_template
        .render(
            &[
                ChatMessage::new(Role::User, "¿Qué dice el documento sobre las vacaciones?"),
                ChatMessage::new(Role::Assistant, "Veintidós días laborables al año."),
            ],
            false,
        )
        .unwrap();
    let mut total = 0;
    for text in TEXTS.iter().copied().chain([chat.as_str()]) {
        let mine = ours.encode(text, false).unwrap().get_ids().to_vec();
        let theirs: Vec<u32> =
            model.vocab().tokenize(text.as_bytes(), false, true).iter().map(|t| t.0 as u32).collect();
        assert_eq!(mine, theirs, "ids differ from llama.cpp's on {text:?}");
        // Byte-level BPE loses nothing: decoding gives the text back.
        assert_eq!(ours.decode(&mine, false).unwrap(), text);
        total += mine.len();
    }
    println!("{} strings, {total} tokens, all equal to llama.cpp's", TEXTS.len() + 1);
    for (s, id) in [("<|im_start|>", 151_644), ("<|im_end|>", 151_645), ("<|endoftext|>", 151_643)] {
        assert_eq!(ours.encode(s, false).unwrap().get_ids(), &[id], "{s}");
    }
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn logits_track_llama_cpp() {
    let _g = heavy();
    let b = base();
    let tok = b.tokenizer().unwrap();
    let template = b.template().unwrap();
    let prompts = [
        // The template adds Qwen's default system prompt when there is none.
        template.render(&[ChatMessage::new(Role::User, "What is the capital of France?")], true).unwrap(),
        template
            .render(
                &[
                    ChatMessage::new(Role::System, "Responde en español, en una frase."),
                    ChatMessage::new(Role::User, "¿Cuántos días de vacaciones tiene un empleado al año?"),
                ],
                true,
            )
            .unwrap(),
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return".to_string(),
    ];
    assert!(prompts[0].starts_with("<|im_start|>system\nYou are Qwen"), "{}", prompts[0]);
    let model = Llama::new(b, DType::F32, &Device::Cpu).unwrap();
    let cpp = LlamaModel::load_from_file(backend(), gguf(), &LlamaModelParams::default()).unwrap();
    for text in &prompts {
        let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        let tokens = cpp.vocab().tokenize(text.as_bytes(), false, true);
        assert_eq!(tokens.iter().map(|t| t.0 as u32).collect::<Vec<_>>(), ids);
        let n = ids.len();
        let ours: Vec<Vec<f32>> = all_logits(&model, &ids, None).to_vec2().unwrap();
        let params =
            LlamaContextParams::default().with_n_ctx(NonZeroU32::new(512)).with_n_threads(2).with_n_threads_batch(2);
        let mut ctx = cpp.new_context(backend(), params).unwrap();
        let mut batch = LlamaBatch::new(512, 1);
        for (i, t) in tokens.iter().enumerate() {
            batch.add(*t, i as i32, &[0], true).unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        let mut corrs = Vec::with_capacity(n);
        let mut agree = 0;
        for (i, mine) in ours.iter().enumerate() {
            let theirs = ctx.get_logits_ith(i as i32).to_vec();
            corrs.push(pearson(mine, &theirs));
            agree += usize::from(argmax(mine) == argmax(&theirs));
        }
        let last = ctx.get_logits_ith(n as i32 - 1).to_vec();
        let min = corrs.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = corrs.iter().sum::<f64>() / n as f64;
        println!(
            "{n} tokens: correlation last {:.5}, mean {mean:.5}, min {min:.5}; argmax agrees at {agree}/{n} positions",
            corrs[n - 1]
        );
        assert!(min >= 0.99, "correlation with llama.cpp's logits down to {min} on {text:?}");
        assert_eq!(argmax(&ours[n - 1]), argmax(&last), "greedy next token differs from llama.cpp on {text:?}");
        assert!(agree * 10 >= n * 9, "argmax agrees at only {agree}/{n} positions on {text:?}");
    }
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn greedy_chat_answers_paris() {
    let _g = heavy();
    let b = base();
    let model = Llama::new(b, DType::F32, &Device::Cpu).unwrap();
    let chat = ChatModel::new(&model, None, b.tokenizer().unwrap(), b.template().unwrap()).unwrap();
    let msgs = [ChatMessage::new(Role::User, "What is the capital of France?")];
    let opts = GenOptions { max_tokens: 24, ..GenOptions::default() };
    let mut streamed = String::new();
    let reply = chat.reply(&msgs, &opts, |t| streamed.push_str(t)).unwrap();
    println!("reply: {reply:?}");
    assert!(reply.contains("Paris"), "{reply:?}");
    assert_eq!(streamed, reply);
    // It stopped at <|im_end|> on its own, not at the token limit.
    let ids = b.tokenizer().unwrap().encode(reply.as_str(), false).unwrap();
    assert!(ids.len() < 24, "{reply:?}");
}

fn write_chat(path: &Path, pairs: &[(&str, &str)]) {
    let lines: Vec<String> = pairs
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [
                {"role": "system", "content": "Answer from the manual."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a}]})
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_few_lora_steps_lower_the_loss() {
    let _g = heavy();
    let b = base();
    let model = Llama::new(b, DType::F32, &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.jsonl");
    write_chat(
        &data,
        &[
            ("¿Cuántos días de vacaciones hay?", "Veintidós días laborables al año."),
            ("Warranty of the X200 pump?", "36 months from delivery."),
            ("¿Quién aprueba los viajes?", "El jefe del departamento."),
            ("Controller voltage?", "24 V DC, never 230 V."),
        ],
    );
    let enc = Encoder::new(b.tokenizer().unwrap(), b.template().unwrap(), b.eos.clone(), 64);
    let s = Settings {
        epochs: 3,
        learning_rate: 1e-3,
        batch_size: BatchSize::Fixed(2),
        micro_batch_size: 2,
        lora_rank: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        max_seq_len: 64,
        warmup_steps: Some(0),
        scheduler: docraft_train::Schedule::Constant,
        ..Settings::default()
    };
    let train = Dataset::load(&data, &enc).unwrap();
    assert_eq!((train.examples.len(), train.truncated), (4, 0), "every example fits in 64 tokens");
    let run = tmp.path().join("run");
    let mut t = Trainer::new(&model, s, train, &run).unwrap().with_valid(Dataset::load(&data, &enc).unwrap());
    let before = t.evaluate().unwrap().0;
    let started = std::time::Instant::now();
    let trace = Mutex::new(Vec::new());
    let report = t
        .run(&|i: &StepInfo| {
            println!("step {}/{}: loss {:.4} ({:.0} tokens/s)", i.step, i.total, i.loss, i.tokens_per_s);
            trace.lock().unwrap().push(i.loss);
        })
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let after = report.valid_loss.unwrap();
    println!("valid loss {before:.4} -> {after:.4}; {} steps in {secs:.1} s", report.steps);
    assert_eq!(report.steps, 6);
    let trace = trace.into_inner().unwrap();
    assert!(trace[trace.len() - 1] < trace[0], "train loss {trace:?}");
    assert!(after < before - 0.3, "loss on the training examples: {before} -> {after}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"])
    );
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn merged_adapter_round_trips_through_hf_layout() {
    let _g = heavy();
    let b = base();
    let model = Llama::new(b, DType::F32, &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // LoRA on q and v (peft's default for Qwen2): the projections that carry biases.
    let adapter = random_adapter(&b.config, &[Target::Q, Target::V], 11, 0.02);
    let adapter_dir = tmp.path().join("adapter");
    adapter.save_peft(&adapter_dir, "qwen2.5-coder-0.5b-instruct.gguf").unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adapter_dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    let adapter = Adapter::load_peft(&adapter_dir, &b.config, DType::F32, &Device::Cpu).unwrap();

    let ids = b
        .tokenizer()
        .unwrap()
        .encode(b.template().unwrap().render(&[ChatMessage::new(Role::User, "Hola")], true).unwrap().as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    let with = all_logits(&model, &ids, Some(&adapter));
    assert!(max_diff(&with, &all_logits(&model, &ids, None)) > 1e-2, "the adapter must change the logits");

    // What `docraft merge` does: merge into the base weights, write HF layout; then load it back.
    let out = tmp.path().join("merged");
    {
        let mut weights: HashMap<String, Tensor> = b.weights.clone();
        adapter.merge_into(&mut weights).unwrap();
        let merged = BaseModel {
            config: b.config.clone(),
            weights,
            tokenizer_json: b.tokenizer_json.clone(),
            chat_template: b.chat_template.clone(),
            bos: b.bos.clone(),
            eos: b.eos.clone(),
            source: b.source.clone(),
        };
        merged.save_hf(&out).unwrap();
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["model_type"].as_str(), cfg["tie_word_embeddings"].as_bool()), (Some("qwen2"), Some(false)));
    assert_eq!((cfg["rope_theta"].as_f64(), cfg["rms_norm_eps"].as_f64()), (Some(1e6), Some(1e-6)));
    let back = BaseModel::from_hf_dir(&out, &Device::Cpu).unwrap();
    assert_eq!(back.config, b.config);
    assert!(back.weights.contains_key("model.layers.0.self_attn.q_proj.bias"));
    assert_eq!(back.chat_template, b.chat_template);
    let back_ids = back.tokenizer().unwrap().encode(TEXTS[1], false).unwrap().get_ids().to_vec();
    assert_eq!(back_ids, b.tokenizer().unwrap().encode(TEXTS[1], false).unwrap().get_ids());
    let reloaded = Llama::new(&back, DType::F32, &Device::Cpu).unwrap();
    let d = max_diff(&with, &all_logits(&reloaded, &ids, None));
    println!("merged-and-reloaded vs base + adapter: max abs logit difference {d}");
    assert!(d < 1e-3, "{d}");
}
