//! Generate question/answer pairs from chunks with the local GGUF (llama.cpp in process), with
//! the library API: the run filters, records rejections with their reasons and resumes.
//!
//! ```text
//! cargo run --release -p docraft-examples --example generate_qa -- /tmp/chunks.jsonl /tmp/qa.jsonl 4
//! ```
//! The third argument limits the chunks (default 4). The model defaults to the SmolLM2 GGUF
//! `scripts/setup.sh` fetches.

use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_core::{Chunk, jsonl};
use docraft_llm::{LlamaConfig, LlamaGenerator, default_gguf};
use docraft_qa_gen::{GenerateOptions, Generation};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let chunks_path = PathBuf::from(args.next().context("usage: generate_qa CHUNKS.jsonl OUT.jsonl [N]")?);
    let out = PathBuf::from(args.next().context("usage: generate_qa CHUNKS.jsonl OUT.jsonl [N]")?);
    let n: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let (mut chunks, _torn): (Vec<Chunk>, _) = jsonl::read_all(&chunks_path)?;
    chunks.truncate(n);

    let generator = LlamaGenerator::load(LlamaConfig::new(default_gguf()))?;
    let options = GenerateOptions { questions_per_chunk: 2, ..GenerateOptions::default() };
    let run = Generation::new(&generator, options)?;
    let summary = run.run(&chunks, &out, &|p: &docraft_qa_gen::Progress| eprint!("\r{} chunks done", p.done))?;
    eprintln!();
    println!(
        "{} generated = {} accepted + {} rejected; pairs in {}",
        summary.generated,
        summary.accepted,
        summary.rejected_total(),
        out.display()
    );
    for (reason, count) in &summary.rejected {
        println!("  rejected {reason}: {count}");
    }
    Ok(())
}
