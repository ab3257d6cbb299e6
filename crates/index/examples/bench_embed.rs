//! Embedding throughput: chunks/s and tokens/s of the USE-m3 and ONNX (and, with
//! `--features candle`, the candle) embedders at batch sizes 1, 8 and 32. `scripts/bench_embed.py` measures Python
//! onnxruntime on the same texts, model file and thread count; docs/BENCHMARKS.md has both.
//!
//! ```text
//! cargo run --release -p docraft-index --example bench_embed -- CHUNKS.jsonl [N_CHUNKS] [THREADS] [BATCHES] [BACKENDS]
//! ```
//! BATCHES is a comma-separated list (default `1,8,32`), BACKENDS `use-m3,onnx,candle` (default
//! all). Token counts are all-MiniLM-L6-v2's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use docraft_core::{Chunk, Embedder, jsonl};
use docraft_index::{CandleEmbedder, EmbedOptions, OnnxEmbedder, UseM3Embedder};

type MakeEmbedder = fn(&std::path::Path, EmbedOptions) -> Result<Box<dyn Embedder>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().context("usage: bench_embed CHUNKS.jsonl [N_CHUNKS] [THREADS]")?);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(512);
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let batches: Vec<usize> =
        args.next().unwrap_or_else(|| "1,8,32".into()).split(',').map(str::parse).collect::<Result<_, _>>()?;
    let wanted = args.next().unwrap_or_else(|| "use-m3,onnx,candle".into());
    let models =
        PathBuf::from(std::env::var("DOCRAFT_MODELS").context("DOCRAFT_MODELS (source ~/.cache/docraft/env.sh)")?);
    let model = models.join(docraft_index::MINILM_DIR);
    let (chunks, _): (Vec<Chunk>, _) = jsonl::read_all(&path)?;
    let texts: Vec<&str> = chunks.iter().take(n).map(|c| c.text.as_str()).collect();
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams { max_length: 256, ..Default::default() }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_padding(None); // its tokenizer.json pads to 128
    let tokens: usize = texts.iter().map(|t| tokenizer.encode(*t, true).map(|e| e.len()).unwrap_or(0)).sum();
    println!(
        "{} chunks, {tokens} tokens (mean {:.0}, truncated at 256), {threads} threads, {}",
        texts.len(),
        tokens as f64 / texts.len().max(1) as f64,
        model.display()
    );
    let backends: [(&str, PathBuf, MakeEmbedder); 3] = [
        ("use-m3", models.join(docraft_index::USE_M3_DIR), |m, o| Ok(Box::new(UseM3Embedder::from_dir(m, o)?))),
        ("onnx (fastembed)", model.clone(), |m, o| Ok(Box::new(OnnxEmbedder::from_dir(m, o)?))),
        ("candle", model.clone(), |m, o| Ok(Box::new(CandleEmbedder::from_dir(m, o)?))),
    ];
    for (name, model, make) in backends.into_iter().filter(|(n, _, _)| wanted.split(',').any(|w| n.starts_with(w))) {
        for &batch in &batches {
            let options = EmbedOptions { batch_size: batch, threads: Some(threads), max_tokens: 256 };
            let embedder = match make(&model, options) {
                Ok(e) => e,
                Err(e) => {
                    println!("{name}: {e}");
                    break;
                }
            };
            embedder.embed(&texts[..texts.len().min(8)])?; // warm-up
            let started = Instant::now();
            let vectors = embedder.embed(&texts)?;
            let s = started.elapsed().as_secs_f64();
            assert_eq!(vectors.len(), texts.len());
            println!(
                "{name:>16} batch {batch:>2}: {:>7.1} chunks/s {:>8.0} tokens/s ({s:.2} s)",
                texts.len() as f64 / s,
                tokens as f64 / s
            );
        }
    }
    Ok(())
}
