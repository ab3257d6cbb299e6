//! Train a LoRA adapter with the library API: load a base model (GGUF or Hugging Face
//! directory), encode chat JSONL with its template, run a few AdamW steps, save the adapter
//! in peft's layout, and answer one question with it.
//!
//! ```text
//! cargo run --release -p docraft-examples --example train_lora -- fixtures/train/chat.jsonl /tmp/lora-run
//! ```
//! The base defaults to the SmolLM2 GGUF `scripts/setup.sh` fetches.

use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_core::{ChatMessage, Role};
use docraft_train::data::{Dataset, Encoder};
use docraft_train::generate::{ChatModel, GenOptions};
use docraft_train::{Adapter, BaseModel, BatchSize, Llama, Settings, StepInfo, Trainer};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: train_lora DATA.jsonl RUN_DIR [BASE]";
    let data = PathBuf::from(args.next().context(usage)?);
    let run_dir = PathBuf::from(args.next().context(usage)?);
    let base_path = args.next().map_or_else(docraft_llm::default_gguf, PathBuf::from);

    let device = docraft_train::device(false)?;
    let base = BaseModel::load(&base_path, &device)?;
    let model = Llama::new(&base, docraft_train::compute_dtype(&device), &device)?;
    let settings = Settings {
        max_steps: Some(4),
        batch_size: BatchSize::Fixed(2),
        micro_batch_size: 1,
        max_seq_len: 256,
        learning_rate: 2e-4,
        ..Settings::default()
    };
    let encoder = Encoder::new(base.tokenizer()?, base.template()?, base.eos.clone(), settings.max_seq_len);
    let train = Dataset::load(&data, &encoder)?;
    let mut trainer = Trainer::new(&model, settings, train, &run_dir)?;
    let report = trainer.run(&|s: &StepInfo| eprintln!("step {}/{}: loss {:.4}", s.step, s.total, s.loss))?;
    println!("adapter: {}", report.adapter_dir.display());

    let adapter = Adapter::load_peft(&report.adapter_dir, &base.config, model.dtype(), model.device())?;
    let chat = ChatModel::new(&model, Some(&adapter), base.tokenizer()?, base.template()?)?;
    let opts = GenOptions { max_tokens: 40, ..GenOptions::default() };
    let reply = chat.reply(&[ChatMessage::new(Role::User, "What is docraft?")], &opts, |_| {})?;
    println!("base + adapter: {reply}");
    Ok(())
}
