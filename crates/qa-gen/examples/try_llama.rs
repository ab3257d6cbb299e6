#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
use docraft_core::{Chunk, Generator, jsonl::read_all};
use docraft_qa_gen::{GenerateOptions, Generation, LlamaConfig, LlamaGenerator, default_gguf};
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (chunks, _) = read_all::<Chunk>(&args[1])?;
    let n: usize = args[2].parse()?;
    let par: u32 = args[3].parse()?;
    let g = LlamaGenerator::load(LlamaConfig::new(default_gguf()).with_parallel(par)?.with_threads(2)?.with_context(std::env::var("CTX").map_or(2048, |v| v.parse().unwrap()))?.with_grammar(std::env::var("GRAMMAR").map_or(true, |v| v != "0")))?;
    println!("{}", g.model_id());
    let run = Generation::new(&g, GenerateOptions { questions_per_chunk: 2, max_tokens: 256, ..Default::default() })?;
    let out = std::path::Path::new(&args[4]);
    let t = std::time::Instant::now();
    let s = run.run(&chunks[..n.min(chunks.len())], out, &mut |p| eprintln!("{p:?}"))?;
    println!("{s:#?} {:?}", t.elapsed());
    Ok(())
}
