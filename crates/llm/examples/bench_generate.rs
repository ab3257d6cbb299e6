//! Q&A generation throughput on the local GGUF: one sequence at a time against batched
//! sequences, on the same chunks, model, threads and seed.
//!
//! ```text
//! cargo run --release -p docraft-llm --example bench_generate -- CHUNKS.jsonl [N_CHUNKS] [THREADS] [PARALLEL...]
//! ```
//! Prints one line per setting: chunks/hour, candidate pairs/hour, prompt and generated
//! tokens per second, and the share of outputs that parsed. Run it on a quiet machine and
//! without OMP_WAIT_POLICY=passive (passive waiting costs single-sequence decoding dearly).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use docraft_core::{Chunk, jsonl::read_all};
use docraft_llm::{LlamaConfig, LlamaGenerator, default_gguf};
use docraft_qa_gen::{Filters, GenerateOptions, Generation, Reason};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("out/demo/chunks.jsonl", String::as_str);
    let n: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let threads: u32 = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let parallel: Vec<u32> =
        if args.len() > 3 { args[3..].iter().map(|s| s.parse()).collect::<Result<_, _>>()? } else { vec![1, 8] };
    let model = std::env::var_os("DOCRAFT_GGUF").map_or_else(default_gguf, std::path::PathBuf::from);
    let (mut chunks, _) = read_all::<Chunk>(path)?;
    chunks.truncate(n);
    println!(
        "{} chunks from {path}, {threads} threads, model {}, OMP_WAIT_POLICY={}",
        chunks.len(),
        model.display(),
        std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "(unset)".into())
    );
    println!("parallel | seconds | chunks/h | pairs/h | prompt tok/s | gen tok/s | parsed");
    for p in parallel {
        let cfg = LlamaConfig::new(&model).with_parallel(p)?.with_threads(threads)?;
        let g = LlamaGenerator::load(cfg)?;
        let options = GenerateOptions {
            questions_per_chunk: 2,
            max_tokens: 256,
            filters: Filters { dedup: None, ..Filters::default() },
            ..GenerateOptions::default()
        };
        let run = Generation::new(&g, options)?;
        let dir = tempfile::tempdir()?;
        let s = run.run(&chunks, &dir.path().join("qa.jsonl"), &docraft_core::NoProgress)?;
        let unparsed = s.rejected.get(&Reason::Unparseable).copied().unwrap_or(0);
        let pairs = s.generated - unparsed;
        let secs = s.seconds;
        #[allow(clippy::cast_precision_loss)]
        let (cph, pph, ptps, gtps, parsed) = (
            s.processed as f64 * 3600.0 / secs,
            pairs as f64 * 3600.0 / secs,
            s.usage.prompt_tokens as f64 / secs,
            s.usage.completion_tokens as f64 / secs,
            1.0 - unparsed as f64 / s.processed.max(1) as f64,
        );
        println!(
            "{p:>8} | {secs:>7.1} | {cph:>8.0} | {pph:>7.0} | {ptps:>12.0} | {gtps:>9.0} | {:>5.0}%",
            parsed * 100.0
        );
    }
    Ok(())
}
