//! The real SmolLM2-135M from its GGUF (what `scripts/setup.sh` fetches): our forward against
//! candle-transformers' `Llama` and llama.cpp, and a few training steps on real examples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::num::NonZeroU32;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{argmax, pearson};
use docraft_core::{ChatMessage, NoProgress, Role};
use docraft_train::data::{Dataset, Encoder};
use docraft_train::{BaseModel, BatchSize, Inputs, Llama, Settings, Trainer};

fn gguf() -> PathBuf {
    let p = docraft_core::models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh", p.display());
    p
}

fn prompt(base: &BaseModel) -> String {
    let msgs = [ChatMessage::new(Role::User, "¿Cuál es la capital de Francia? Answer in one word.")];
    base.template().unwrap().render(&msgs, true).unwrap()
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn logits_match_candle_transformers_and_track_llama_cpp() {
    let dev = Device::Cpu;
    let base = BaseModel::load(&gguf(), &dev).unwrap();
    assert_eq!((base.config.hidden_size, base.config.num_hidden_layers, base.config.kv_heads()), (576, 30, 3));
    assert!(base.config.tie_word_embeddings);
    let text = prompt(&base);
    let ids = base.tokenizer().unwrap().encode(text.as_str(), false).unwrap().get_ids().to_vec();

    let ours = Llama::new(&base, DType::F32, &dev).unwrap();
    let inputs = Inputs::single(&ids, DType::F32, &dev).unwrap();
    let h = ours.hidden(&inputs, None, None).unwrap();
    let mine = ours.logits(&h.get(ids.len() - 1).unwrap().unsqueeze(0).unwrap()).unwrap().squeeze(0).unwrap();

    // candle-transformers on the same dequantized weights.
    use candle_transformers::models::llama as ct;
    let cfg: ct::LlamaConfig = serde_json::from_value(serde_json::to_value(&base.config).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let vb = candle_nn::VarBuilder::from_tensors(base.weights.clone(), DType::F32, &dev);
    let reference = ct::Llama::load(vb, &cfg).unwrap();
    let mut cache = ct::Cache::new(false, DType::F32, &cfg, &dev).unwrap();
    let x = Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
    let theirs = reference.forward(&x, 0, &mut cache).unwrap().squeeze(0).unwrap();
    let diff = (&mine - &theirs).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-3, "max abs logit difference vs candle-transformers: {diff}");

    // llama.cpp on the quantized file: same token ids, logits that track ours.
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    let mut backend = LlamaBackend::init().unwrap();
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, gguf(), &LlamaModelParams::default()).unwrap();
    let tokens = model.vocab().tokenize(text.as_bytes(), false, true);
    let theirs_ids: Vec<u32> = tokens.iter().map(|t| t.0 as u32).collect();
    assert_eq!(theirs_ids, ids, "tokenizer rebuilt from GGUF metadata must agree with llama.cpp");
    let params =
        LlamaContextParams::default().with_n_ctx(NonZeroU32::new(512)).with_n_threads(2).with_n_threads_batch(2);
    let mut ctx = model.new_context(&backend, params).unwrap();
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in tokens.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == tokens.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let cpp: Vec<f32> = ctx.get_logits_ith(tokens.len() as i32 - 1).to_vec();
    let ours_v: Vec<f32> = mine.to_vec1().unwrap();
    let corr = pearson(&ours_v, &cpp);
    assert!(corr > 0.99, "correlation with llama.cpp's logits: {corr}");
    assert_eq!(argmax(&ours_v), argmax(&cpp), "greedy next token differs from llama.cpp");
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_few_steps_on_real_examples_lower_the_loss() {
    let dev = Device::Cpu;
    let base = BaseModel::load(&gguf(), &dev).unwrap();
    let model = Llama::new(&base, DType::F32, &dev).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let facts = [
        ("¿Cuántos días de vacaciones tiene un empleado?", "Según el documento, veintidós días laborables al año."),
        ("How long is the warranty on the X200 pump?", "The document says the X200 pump has a 36-month warranty."),
        ("¿Quién aprueba los gastos de viaje?", "El responsable del departamento aprueba los gastos de viaje."),
        ("What voltage does the controller need?", "It needs 24 V DC, as stated in the manual."),
    ];
    let lines: Vec<String> = facts
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                .to_string()
        })
        .collect();
    let data = tmp.path().join("train.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let enc = Encoder::new(base.tokenizer().unwrap(), base.template().unwrap(), base.eos.clone(), 256);
    let s = Settings {
        epochs: 2,
        learning_rate: 1e-3,
        batch_size: BatchSize::Fixed(2),
        micro_batch_size: 2,
        lora_rank: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        warmup_steps: Some(0),
        scheduler: docraft_train::Schedule::Constant,
        ..Settings::default()
    };
    let run = tmp.path().join("run");
    let mut t = Trainer::new(&model, s, Dataset::load(&data, &enc).unwrap(), &run)
        .unwrap()
        .with_valid(Dataset::load(&data, &enc).unwrap());
    let before = t.evaluate().unwrap().0;
    let report = t.run(&NoProgress).unwrap();
    let after = report.valid_loss.unwrap();
    assert_eq!(report.steps, 4);
    assert!(after < before - 0.2, "loss on the training examples: {before} -> {after}");
    for f in [
        "config.json",
        "metrics.jsonl",
        "events.jsonl",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    let m = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(m.lines().last().unwrap()).unwrap();
    for k in [
        "step",
        "epoch",
        "train_loss",
        "valid_loss",
        "valid_accuracy",
        "learning_rate",
        "tokens_per_s",
        "elapsed_s",
        "peak_rss_mib",
    ] {
        assert!(!last[k].is_null(), "metrics lack {k}: {last}");
    }
}
