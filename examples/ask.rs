//! Ask a question over an index with the library API: retrieve, answer from the chunks only
//! (streamed), cite [file, page], or decline when the documents do not answer.
//!
//! ```text
//! cargo run --release -p docraft-examples --example ask -- out/demo/index "What torque should the flange bolts be tightened to?"
//! ```
//! Optional third argument: a LoRA adapter directory (e.g. out/demo/train/adapter).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_ask::Asker;
use docraft_index::{IndexRetriever, OnnxEmbedder, VectorIndex};
use docraft_train::generate::ChatModel;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ask INDEX_DIR QUESTION [ADAPTER_DIR]";
    let index_dir = PathBuf::from(args.next().context(usage)?);
    let question = args.next().context(usage)?;
    let adapter = args.next().map(PathBuf::from);

    let index = VectorIndex::load(&index_dir)?;
    let embedder = OnnxEmbedder::from_dir(docraft_index::default_model_dir(), Default::default())?;
    let retriever = IndexRetriever::new(&index, &embedder);
    let base = docraft_llm::default_gguf();
    let model = ChatModel::load(&base, adapter.as_deref(), &docraft_train::device(false)?)?;

    let asker = Asker::new(&retriever, &model);
    let answer = asker.ask(&question, &[], &mut |text| {
        print!("{text}");
        let _ = std::io::stdout().flush();
    })?;
    println!();
    if answer.declined {
        println!("(declined: {})", answer.decline_reason.unwrap_or_default());
    }
    for c in &answer.citations {
        println!("[{}] {} ({:?})", c.number, c.label, c.how);
    }
    Ok(())
}
