//! The real-prose test corpus of the index crate's tests: a few thousand paragraphs of real
//! prose (the READMEs of the crates in Cargo.lock, which every build has in the cargo registry,
//! the system's license texts and the fixtures), embedded with the real model once per test
//! binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, ensure};
use docraft_core::{Chunk, ChunkId, DocId, Embedder, PageRange, Span};
use docraft_index::{EmbedOptions, OnnxEmbedder};

/// Paragraphs indexed; every 16th paragraph is held out as a query instead.
pub const MAX_CHUNKS: usize = 3200;

pub struct Corpus {
    pub model_id: String,
    pub chunks: Vec<Chunk>,
    pub vectors: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
}

/// Text files of real prose, in a fixed order: crate READMEs (by Cargo.lock), license texts,
/// fixtures.
pub fn prose_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cargo"));
    let registries: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let mut packages = BTreeSet::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = \"") {
            name = Some(n.trim_end_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = \""), name.take()) {
            packages.insert(format!("{n}-{}", v.trim_end_matches('"')));
        }
    }
    let readmes: Vec<PathBuf> = packages
        .iter()
        .filter_map(|p| registries.iter().map(|r| r.join(p).join("README.md")).find(|f| f.is_file()))
        .collect();
    let mut licenses: Vec<PathBuf> = std::fs::read_dir("/usr/share/common-licenses")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    licenses.sort();
    // Licenses first: they are fixed system files, so the filter cases on them hold whatever
    // crates the lock file lists (the corpus is capped at MAX_CHUNKS).
    let mut files = licenses;
    files.extend(readmes);
    files.extend(["docs/guia-es.md", "docs/release-notes.md"].map(|f| root.join("fixtures").join(f)));
    files
}

pub fn chunk(source: &str, text: &str, i: usize, start: usize) -> Chunk {
    let doc_id = DocId::from_content(source.as_bytes());
    let kind = if source.contains("common-licenses") { "license" } else { "readme" };
    Chunk {
        id: ChunkId::new(&doc_id, start, start + text.len()),
        doc_id,
        source: source.to_string(),
        text: text.to_string(),
        span: Span::new(start, start + text.len()),
        pages: Some(PageRange::new(i as u32 / 4 + 1, i as u32 / 4 + 1)),
        headings: vec![],
        chunk_index: i,
        chunk_count: 0,
        metadata: [("kind".to_string(), serde_json::json!(kind))].into_iter().collect(),
    }
}

/// The corpus's chunks (paragraphs of 80 to 600 characters, up to [`MAX_CHUNKS`]) and the
/// held-out paragraphs (every 16th) used as queries, without vectors.
pub fn paragraphs() -> Result<(Vec<Chunk>, Vec<String>)> {
    let mut seen = HashSet::new();
    let mut chunks = Vec::new();
    let mut query_texts = Vec::new();
    'files: for f in prose_files() {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let source = f.display().to_string();
        let mut start = 0;
        for (i, para) in text.split("\n\n").enumerate() {
            let clean = para.split_whitespace().collect::<Vec<_>>().join(" ");
            start += para.len() + 2;
            if !(80..=600).contains(&clean.len()) || !seen.insert(clean.clone()) {
                continue;
            }
            if seen.len() % 16 == 0 {
                query_texts.push(clean);
            } else {
                chunks.push(chunk(&source, &clean, i, start));
            }
            if chunks.len() >= MAX_CHUNKS {
                break 'files;
            }
        }
    }
    ensure!(chunks.len() >= 2000, "only {} paragraphs of prose found (cargo registry READMEs missing?)", chunks.len());
    Ok((chunks, query_texts))
}

fn build_corpus() -> Result<Corpus> {
    let dir = docraft_index::minilm_model_dir();
    ensure!(dir.join("model.onnx").exists(), "{} is missing: run scripts/setup.sh first", dir.display());
    let embedder = OnnxEmbedder::from_dir(&dir, EmbedOptions { batch_size: 32, ..EmbedOptions::default() })?;
    let (chunks, query_texts) = paragraphs()?;
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let vectors = embedder.embed(&texts)?;
    let queries = embedder.embed(&query_texts.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(Corpus { model_id: embedder.model_id(), chunks, vectors, queries })
}

pub fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| build_corpus().expect("test corpus"))
}
