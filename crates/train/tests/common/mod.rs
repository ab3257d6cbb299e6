//! A tiny randomly initialized llama with a byte-level tokenizer and ChatML, written in Hugging Face
//! layout, for fast tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use docraft_train::{BaseModel, CHATML, EosIds, Llama, ModelConfig, byte_tokenizer_json};

pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A 2-layer, width-64 llama over bytes, saved to `dir` and loaded back.
pub fn tiny_base(dir: &Path, seed: u64) -> BaseModel {
    let mut config = ModelConfig::tiny(256 + SPECIALS.len(), 64, 2);
    config.bos_token_id = Some(1);
    config.eos_token_id = Some(EosIds::One(2));
    let model = Llama::random(&config, seed, DType::F32, &Device::Cpu).unwrap();
    let base = BaseModel {
        config,
        weights: model.weights(),
        tokenizer_json: byte_tokenizer_json(&SPECIALS),
        chat_template: CHATML.to_string(),
        bos: Some("<|im_start|>".into()),
        eos: Some("<|im_end|>".into()),
        source: dir.to_path_buf(),
    };
    base.save_hf(dir).unwrap();
    BaseModel::from_hf_dir(dir, &Device::Cpu).unwrap()
}

/// Writes chat examples (question, answer) as JSONL.
pub fn write_chat(path: &Path, pairs: &[(&str, &str)], copies: usize) -> PathBuf {
    let mut out = String::new();
    for _ in 0..copies {
        for (q, a) in pairs {
            let v = serde_json::json!({"messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a}]});
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
    path.to_path_buf()
}

pub const FACTS: [(&str, &str); 4] = [
    ("Capital of Spain?", "Madrid."),
    ("¿Color del cielo?", "Azul."),
    ("Two plus two?", "Four."),
    ("Who wrote Quijote?", "Cervantes."),
];
