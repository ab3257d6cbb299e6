//! A tiny randomly initialized llama with a byte-level tokenizer and ChatML, written in Hugging Face
//! layout, for fast tests; and a finite-difference check of backpropagated gradients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
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

/// Central finite differences in f64 against gradients from backprop.
#[derive(Debug, Clone, Copy)]
pub struct FiniteDiff {
    /// The step: `(loss(v + eps) − loss(v − eps)) / 2·eps`.
    pub eps: f64,
    /// Largest relative error `|fd − g| / (|fd| + |g|)` accepted ...
    pub rel: f64,
    /// ... unless the absolute error is below this (entries whose gradient is about zero).
    pub abs: f64,
}

impl FiniteDiff {
    /// Compares `grad` (d loss / d `var`, from backprop) with central differences of `loss` at the
    /// flat `indices` of `var` (an f64 variable, restored afterwards). Returns how many entries
    /// were checked, or the first mismatch naming `name[index]`.
    pub fn check(
        &self,
        name: &str,
        var: &Var,
        grad: &Tensor,
        indices: impl IntoIterator<Item = usize>,
        loss: impl Fn() -> f64,
    ) -> Result<usize, String> {
        let g: Vec<f64> = grad.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        let orig = var.as_tensor().copy().unwrap();
        let flat: Vec<f64> = orig.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g.len(), flat.len(), "{name}: gradient shape {:?} for {:?}", grad.shape(), orig.shape());
        let at = |idx: usize, delta: f64| {
            let mut v = flat.clone();
            v[idx] += delta;
            var.set(&Tensor::from_vec(v, orig.shape(), orig.device()).unwrap()).unwrap();
            loss()
        };
        let mut checked = 0;
        for idx in indices {
            let fd = (at(idx, self.eps) - at(idx, -self.eps)) / (2.0 * self.eps);
            var.set(&orig).unwrap();
            let diff = (fd - g[idx]).abs();
            if diff / (fd.abs() + g[idx].abs()).max(f64::MIN_POSITIVE) >= self.rel && diff >= self.abs {
                return Err(format!("{name}[{idx}]: finite difference {fd} vs backprop {}", g[idx]));
            }
            checked += 1;
        }
        Ok(checked)
    }
}

/// Pearson correlation of two logit vectors.
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|x| f64::from(*x)).sum::<f64>() / n, b.iter().map(|x| f64::from(*x)).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(*x) - ma, f64::from(*y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// The index of the largest value (the greedy token).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}
