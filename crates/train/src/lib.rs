//! LoRA fine-tuning on candle.
//!
//! Data flow: a base model ([`BaseModel`], from a GGUF file or a Hugging Face directory) becomes a
//! [`Llama`] whose forward pass is written with differentiable ops; an [`Adapter`] adds trainable
//! A/B pairs to chosen projections; [`data`] turns chat / completion / text JSONL into token rows with
//! loss masks using the model's own chat template; the [`Trainer`] runs AdamW with warmup and decay,
//! gradient accumulation and clipping, writes `metrics.jsonl`, `events.jsonl` and atomic checkpoints,
//! resumes on the same trajectory, and saves the adapter in Hugging Face peft's layout.
//! [`generate`] decodes with base + adapter. [`export_merged`] and [`export_lora`] write a
//! trained adapter as GGUF for llama.cpp and Ollama: merged into the base, or as a llama.cpp
//! LoRA adapter.
//!
//! This crate reads JSONL and model files only; it knows nothing of how the data was produced.

mod base;
mod config;
pub mod data;
mod error;
pub mod generate;
mod gguf_out;
mod lora;
mod model;
pub mod ops;
mod optim;
mod settings;
mod tokenizer;
mod trainer;

pub use base::{BaseModel, gguf_config, hf_name, permute, unpermute};
pub use config::{EosIds, ModelConfig};
pub use error::{Result, TrainError};
pub use gguf_out::{GgufExport, GgufQuant, export_lora, export_merged, gguf_weight_name};
pub use lora::{Adapter, LoraConfig, LoraPair, Target};
pub use model::{Dropout, Inputs, KvCache, Llama, LossOut};
pub use optim::{AdamW, Schedule};
pub use settings::{BatchSize, Settings};
pub use tokenizer::{CHATML, ChatTemplate, GgufTokenizer, byte_tokenizer_json, tokenizer_from_json};
pub use trainer::{RunFiles, StepInfo, TrainReport, Trainer, peak_rss_mib};

/// The compute dtype for `device`: bf16 on CUDA, f32 on the CPU (adapters and optimizer state
/// stay f32 either way).
#[must_use]
pub fn compute_dtype(device: &candle_core::Device) -> candle_core::DType {
    if device.is_cuda() { candle_core::DType::BF16 } else { candle_core::DType::F32 }
}

/// Picks the compute device: CUDA device 0 when `cuda` is asked for (and compiled in), else the CPU.
///
/// # Errors
/// [`TrainError::NotCompiled`] when CUDA is asked for in a build without the `cuda` feature.
pub fn device(cuda: bool) -> Result<candle_core::Device> {
    if !cuda {
        return Ok(candle_core::Device::Cpu);
    }
    if !candle_core::utils::cuda_is_available() {
        return Err(TrainError::NotCompiled("cuda"));
    }
    Ok(candle_core::Device::new_cuda(0)?)
}
