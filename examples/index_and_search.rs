//! Build an index from a chunks file, search it, save it and load it back, with the library
//! API only.
//!
//! ```text
//! cargo run -p docraft-examples --example index_and_search -- CHUNKS.jsonl "question" [MODEL_DIR]
//! ```
//! (`docraft ingest fixtures/docs -o chunks.jsonl` makes a chunks file; the model directory
//! defaults to `$DOCRAFT_MODELS/use-m3`, the multilingual USE-m3 that `scripts/setup.sh` converts.)

use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_core::{Chunk, Count, Embedder, jsonl};
use docraft_index::{EmbedOptions, Filter, HnswParams, SearchOptions, SyncOptions, UseM3Embedder, VectorIndex};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let chunks_path = PathBuf::from(args.next().context("usage: index_and_search CHUNKS.jsonl QUESTION [MODEL_DIR]")?);
    let question = args.next().context("a question")?;
    let model = args.next().map(PathBuf::from).unwrap_or_else(docraft_index::default_model_dir);

    // 1. Read chunks; a torn last line (an interrupted write) is returned beside them.
    let (chunks, torn): (Vec<Chunk>, _) = jsonl::read_all(&chunks_path)?;
    if let Some(t) = torn {
        eprintln!("skipping the torn last line {} of {}", t.line, t.path.display());
    }

    // 2. Embed and index them.
    let embedder = UseM3Embedder::from_dir(&model, EmbedOptions { batch_size: 32, ..EmbedOptions::default() })?;
    let mut index = VectorIndex::new(embedder.model_id(), HnswParams::default())?;
    let show = |c: &Count| eprint!("\rembedded {}/{}", c.done, c.total);
    let report = index.add_chunks(&embedder, chunks, &SyncOptions::new().with_progress(&show))?;
    eprintln!(
        "\nadded {} chunks ({:.1} chunks/s)",
        report.added,
        report.embedded as f64 / report.embed_seconds.max(1e-9)
    );

    // 3. Search: all documents, then PDFs only.
    for filter in [Filter::new(), Filter::parse(&["source=*.pdf"])?] {
        let hits = index.search_text(&embedder, &question, &SearchOptions::new(3).with_filter(filter))?;
        for hit in hits {
            let pages = hit.chunk.pages.map(|p| format!(" p. {}", p.first)).unwrap_or_default();
            println!("{:.3} {}{pages}", hit.score, hit.chunk.source);
        }
        println!();
    }

    // 4. Save, load, and get the same answer.
    let dir = std::env::temp_dir().join("docraft-example-index");
    index.save(&dir)?;
    let loaded = VectorIndex::load(&dir)?;
    let again = loaded.search_text(&embedder, &question, &SearchOptions::new(1))?;
    println!("after reload: {}", again.first().map_or("nothing", |h| h.chunk.source.as_str()));
    Ok(())
}
