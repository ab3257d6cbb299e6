//! Build RAFT records with the library API: questions from qa-gen, then for each one its
//! oracle chunk among hard distractors from the index and a chain of thought whose quotes are
//! checked against the oracle; then the chat-format files per split.
//!
//! ```text
//! cargo run --release -p docraft-examples --example build_raft -- INDEX_DIR /tmp/raft.jsonl 3
//! ```
//! INDEX_DIR comes from `docraft index build` (or RUN_DIR/index); its stored chunks are used.
//! The third argument limits the chunks (default 3).

use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_core::{Chunk, NoProgress, QaPair, jsonl};
use docraft_index::{IndexRetriever, OnnxEmbedder, VectorIndex};
use docraft_llm::{LlamaConfig, LlamaGenerator, default_gguf};
use docraft_qa_gen::{Filters, GenerateOptions, Generation};
use docraft_raft::{Format, FormatOptions, RaftBuilder, RaftOptions, export, parse_splits};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: build_raft INDEX_DIR OUT.jsonl [N]";
    let index_dir = PathBuf::from(args.next().context(usage)?);
    let out = PathBuf::from(args.next().context(usage)?);
    let n: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let index = VectorIndex::load(&index_dir)?;
    let chunks: Vec<Chunk> = index.chunks().take(n).cloned().collect();
    let embedder = OnnxEmbedder::from_dir(docraft_index::default_model_dir(), Default::default())?;
    let retriever = IndexRetriever::new(&index, &embedder);
    let generator = LlamaGenerator::load(LlamaConfig::new(default_gguf()))?;

    // 1. Questions (their own answers need not be grounded: the chain of thought answers).
    let questions_file = jsonl::sibling(&out, "questions");
    let options = GenerateOptions {
        questions_per_chunk: 2,
        filters: Filters { grounding: None, ..Filters::default() },
        ..GenerateOptions::default()
    };
    Generation::new(&generator, options)?.run(&chunks, &questions_file, &NoProgress)?;
    let (questions, _): (Vec<QaPair>, _) = jsonl::read_all(&questions_file)?;

    // 2. Records: oracle + 3 nearest distractors, verified chains of thought.
    let splits = parse_splits("train=0.8,valid=0.1,test=0.1")?;
    let options = RaftOptions { hard_share: 1.0, splits: splits.clone(), seed: 1, ..RaftOptions::default() };
    let builder = RaftBuilder::new(&generator, options)?.with_retriever(&retriever);
    let summary = builder.run(&chunks, &questions, &out, &NoProgress)?;
    println!("{} questions = {} accepted + {} rejected", summary.questions, summary.accepted, summary.rejected_total());

    // 3. One file per split in OpenAI chat format.
    let records = builder.records(&questions, &out)?;
    let names: Vec<String> = splits.iter().map(|s| s.name.clone()).collect();
    for f in export(&records, &out, &names, &[Format::Chat], &FormatOptions::default())? {
        println!("{:>4} records  {}", f.records, f.path.display());
    }
    Ok(())
}
