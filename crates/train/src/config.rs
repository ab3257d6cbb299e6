//! The architecture of a llama-family decoder, as Hugging Face's `config.json` spells it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, TrainError};

/// Shape and constants of a llama-family model (Llama, SmolLM2, Mistral, Qwen2).
///
/// Field names follow Hugging Face's `config.json`, so the struct reads and writes that file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `LlamaForCausalLM`, `MistralForCausalLM` or `Qwen2ForCausalLM`.
    #[serde(default = "default_arch")]
    pub architectures: Vec<String>,
    /// `llama`, `mistral` or `qwen2`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Epsilon of the RMS norms.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Longest context the model was trained for.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2 has them).
    #[serde(default)]
    pub attention_bias: bool,
    /// Beginning-of-sequence token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<EosIds>,
    /// `float32`, `bfloat16`, ...: the dtype of the stored weights.
    #[serde(default = "default_dtype")]
    pub torch_dtype: String,
    /// Rope scaling as Hugging Face writes it; only `None` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
}

/// One end-of-sequence id or several (Llama 3 has a list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosIds {
    /// A single id.
    One(u32),
    /// Several ids; generation stops on any.
    Many(Vec<u32>),
}

fn default_arch() -> Vec<String> {
    vec!["LlamaForCausalLM".into()]
}
fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_dtype() -> String {
    "float32".into()
}

impl ModelConfig {
    /// Reads and checks a Hugging Face `config.json`.
    ///
    /// # Errors
    /// [`TrainError::Io`] or [`TrainError::Model`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        let mut cfg: Self = serde_json::from_str(&text).map_err(|e| TrainError::parse(path, e))?;
        if cfg.model_type == "qwen2" {
            // Qwen2's config does not spell out its q/k/v biases.
            cfg.attention_bias = true;
        }
        cfg.validate().map_err(|m| TrainError::model(path, m))?;
        Ok(cfg)
    }

    /// A small llama for tests and examples: `layers` blocks of width `hidden`.
    #[must_use]
    pub fn tiny(vocab_size: usize, hidden: usize, layers: usize) -> Self {
        Self {
            architectures: default_arch(),
            model_type: default_model_type(),
            vocab_size,
            hidden_size: hidden,
            intermediate_size: hidden * 2,
            num_hidden_layers: layers,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 512,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: default_dtype(),
            rope_scaling: None,
        }
    }

    /// Checks the numbers fit together.
    ///
    /// # Errors
    /// A message saying which numbers disagree.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return Err("hidden_size, num_attention_heads and num_hidden_layers must be positive".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim()));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported yet".into());
        }
        Ok(())
    }

    /// Key/value heads.
    #[must_use]
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    #[must_use]
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// All end-of-sequence ids.
    #[must_use]
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            None => Vec::new(),
            Some(EosIds::One(id)) => vec![*id],
            Some(EosIds::Many(ids)) => ids.clone(),
        }
    }

    /// `(in, out)` of a target projection.
    #[must_use]
    pub fn dims_of(&self, target: crate::lora::Target) -> (usize, usize) {
        use crate::lora::Target::*;
        let (h, q, kv, f) = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim(),
            self.kv_heads() * self.head_dim(),
            self.intermediate_size,
        );
        match target {
            Q => (h, q),
            K | V => (h, kv),
            O => (q, h),
            Gate | Up => (h, f),
            Down => (f, h),
        }
    }
}
