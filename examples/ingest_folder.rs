//! Ingest a folder into chunks with the library API: walk, load (PDF, Markdown, text), chunk,
//! append to a JSONL file, and print the per-file report.
//!
//! ```text
//! cargo run -p docraft-examples --example ingest_folder -- fixtures/docs /tmp/chunks.jsonl
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use docraft_ingest::{ChunkSettings, FileStatus, Ingest};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(args.next().context("usage: ingest_folder FOLDER OUT.jsonl")?);
    let out = PathBuf::from(args.next().context("usage: ingest_folder FOLDER OUT.jsonl")?);
    // 800..1200 characters with 100 of overlap; Markdown is split at headings first.
    let ingest = Ingest::new(ChunkSettings::default());
    // `()` is the silent progress reporter; the CLI passes a progress bar instead.
    let report = ingest.run(&[folder], &out, &docraft_core::NoProgress)?;
    for f in &report.files {
        match f.status {
            FileStatus::Failed => println!("failed   {}: {}", f.path, f.reason.as_deref().unwrap_or("?")),
            _ => println!("ok       {} ({} pages, {} chunks)", f.path, f.pages.unwrap_or(0), f.chunks),
        }
    }
    let t = &report.totals;
    println!("{} chunks from {} files ({} failed) -> {}", t.chunks, t.ok, t.failed, out.display());
    Ok(())
}
