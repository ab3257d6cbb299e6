//! The vector index on real chunk vectors: a few thousand paragraphs of real prose (the READMEs
//! of the crates in Cargo.lock, which every build has in the cargo registry, the system's
//! license texts and the fixtures), embedded with the real model once per test run.
//! Recall of the graph against exact search, filters, save/load, re-indexing, bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use docraft_core::{CancelToken, Chunk, ChunkId, Count, DocId, EmbedError, Embedder};
use docraft_index::{Filter, HnswParams, IndexError, SearchOptions, Strategy, SyncOptions, VectorIndex};

#[path = "common/prose.rs"]
mod prose;

use prose::{Corpus, chunk, corpus};

fn full_index() -> &'static VectorIndex {
    static INDEX: OnceLock<VectorIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let c = corpus();
        let mut index = VectorIndex::new(c.model_id.clone(), HnswParams::default()).unwrap();
        index.insert(c.chunks.clone(), c.vectors.clone()).unwrap();
        index
    })
}

fn ids(hits: &[docraft_index::Hit<'_>]) -> Vec<ChunkId> {
    hits.iter().map(|h| h.chunk.id.clone()).collect()
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn graph_recall_at_10_against_exact_search() -> Result<()> {
    let index = full_index();
    let c = corpus();
    assert!(index.len() >= 2000 && c.queries.len() >= 100, "{} chunks, {} queries", index.len(), c.queries.len());
    let recall = index.recall_at_k(&c.queries, 10, index.params().ef_search)?;
    eprintln!(
        "recall@10 at ef={}: {recall:.4} over {} queries, {} chunks",
        index.params().ef_search,
        c.queries.len(),
        index.len()
    );
    assert!(recall >= 0.95, "recall@10 {recall}");
    // Exact search really is exact: the best hit of a chunk's own vector is that chunk.
    for (chunk, v) in c.chunks.iter().zip(&c.vectors).step_by(97) {
        let hits = index.search_exact(v, &SearchOptions::new(1))?;
        assert_eq!(hits[0].chunk.id, chunk.id);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    }
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn filters_return_only_matching_chunks_from_inside_the_graph() -> Result<()> {
    let index = full_index();
    let c = corpus();
    let readme = c.chunks.iter().find(|ch| ch.source.ends_with("README.md")).context("a README chunk")?;
    let cases = [
        vec!["kind=license".to_string()],
        vec!["source=README.md".to_string(), "page=1-2".to_string()],
        vec![format!("doc={}", readme.doc_id.as_str())],
        vec!["source=*/common-licenses/GPL-3".to_string(), "source=*/common-licenses/Apache-2.0".to_string()],
    ];
    for exprs in &cases {
        let filter = Filter::parse(exprs)?;
        let allowed = c.chunks.iter().filter(|ch| filter.matches(ch)).count();
        assert!(allowed > 0, "{exprs:?} matches nothing");
        for strategy in [Strategy::Graph, Strategy::Exact, Strategy::Auto] {
            let opts = SearchOptions::new(10).with_filter(filter.clone()).with_strategy(strategy);
            for q in c.queries.iter().take(20) {
                let hits = index.search(q, &opts)?;
                assert!(!hits.is_empty(), "{exprs:?} {strategy:?}: no hits");
                assert!(hits.iter().all(|h| filter.matches(h.chunk)), "{exprs:?} {strategy:?}: a hit fails the filter");
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "hits not sorted by score");
            }
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn save_and_load_give_identical_results() -> Result<()> {
    let index = full_index();
    let c = corpus();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("index");
    index.save(&dir)?;
    let loaded = VectorIndex::load(&dir)?;
    assert_eq!(loaded.len(), index.len());
    assert_eq!(loaded.model_id(), index.model_id());
    assert_eq!(loaded.chunks().collect::<Vec<_>>(), index.chunks().collect::<Vec<_>>());
    let opts = SearchOptions::new(10).with_strategy(Strategy::Graph);
    for q in c.queries.iter().take(50) {
        let (a, b) = (index.search(q, &opts)?, loaded.search(q, &opts)?);
        assert_eq!(ids(&a), ids(&b));
        assert!(a.iter().zip(&b).all(|(x, y)| x.score == y.score));
    }
    // The loaded index is a full index: it takes new chunks and saves again over the old one.
    let mut loaded = loaded;
    let extra = chunk("extra.md", "A brand new paragraph about pressure valves on pump stations.", 0, 0);
    let v = c.vectors.first().context("a vector")?.clone();
    assert_eq!(loaded.insert(vec![extra.clone()], vec![v])?, 1);
    loaded.save(&dir)?;
    assert!(VectorIndex::load(&dir)?.get(&extra.id).is_some());
    Ok(())
}

/// An embedder that must not be called: proves cached vectors are reused.
struct Refuses(String);

impl Embedder for Refuses {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Runtime(format!("asked to embed {} texts", texts.len())))
    }
    fn model_id(&self) -> String {
        self.0.clone()
    }
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn reindexing_removes_changed_documents_and_reuses_cached_vectors() -> Result<()> {
    let c = corpus();
    let (old, new) = (&c.chunks[..600], &c.chunks[300..900]);
    let mut index = VectorIndex::new(c.model_id.clone(), HnswParams::default())?;
    index.insert(old.to_vec(), c.vectors[..600].to_vec())?;
    // Re-index with the second set. Texts 300..600 are unchanged; 600..900 are new and need
    // the model, so first prove that 300..600 alone cost nothing.
    let report = index.sync(&Refuses(c.model_id.clone()), old[300..].to_vec(), &SyncOptions::new())?;
    assert_eq!((report.removed, report.unchanged, report.added, report.embedded), (300, 300, 0, 0));
    assert_eq!(index.len(), 300);
    assert!(report.compacted, "half the rows were dead");
    // The same texts under new ids (a document edited elsewhere) come from the cache.
    let moved: Vec<Chunk> = old[300..400]
        .iter()
        .enumerate()
        .map(|(i, ch)| Chunk {
            id: ChunkId::new(&DocId::from_content(format!("edited {i}").as_bytes()), ch.span.start, ch.span.end + 1),
            ..ch.clone()
        })
        .collect();
    let mut with_moved = new[..300].to_vec();
    with_moved.extend(moved.iter().cloned());
    let report = index.sync(&Refuses(c.model_id.clone()), with_moved, &SyncOptions::new())?;
    assert_eq!((report.added, report.from_cache, report.embedded), (100, 100, 0));
    // Removed chunks are never returned; the new ones are.
    let gone: HashSet<&ChunkId> = old[..300].iter().map(|ch| &ch.id).collect();
    for v in c.vectors[..300].iter().step_by(10) {
        for strategy in [Strategy::Graph, Strategy::Exact] {
            let hits = index.search(v, &SearchOptions::new(10).with_strategy(strategy))?;
            assert!(hits.iter().all(|h| !gone.contains(&h.chunk.id)), "a removed chunk came back");
        }
    }
    let hits = index.search(&c.vectors[350], &SearchOptions::new(1).with_strategy(Strategy::Graph))?;
    assert_eq!(hits[0].chunk.text, c.chunks[350].text);
    // An embedder of another model is refused.
    let e = index.sync(&Refuses("other-model".into()), new.to_vec(), &SyncOptions::new()).unwrap_err();
    assert!(matches!(e, IndexError::ModelMismatch { .. }), "{e}");
    Ok(())
}

/// The corpus's own vectors, looked up by text: the real model's output without running it.
struct Table<'a>(&'a Corpus, std::sync::atomic::AtomicUsize);

impl Embedder for Table<'_> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.1.fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
        texts
            .iter()
            .map(|t| {
                let i = self.0.chunks.iter().position(|c| c.text == *t);
                i.map(|i| self.0.vectors[i].clone()).ok_or_else(|| EmbedError::Runtime("unknown text".into()))
            })
            .collect()
    }
    fn model_id(&self) -> String {
        self.0.model_id.clone()
    }
}

#[test]
fn a_cancelled_sync_leaves_the_index_unchanged_and_a_rerun_completes_it() -> Result<()> {
    let c = corpus();
    let (old, new) = (&c.chunks[..300], &c.chunks[200..900]);
    let start = || -> Result<VectorIndex> {
        let mut index = VectorIndex::new(c.model_id.clone(), HnswParams::default())?;
        index.insert(old.to_vec(), c.vectors[..300].to_vec())?;
        Ok(index)
    };
    // Uninterrupted.
    let mut whole = start()?;
    whole.sync(&Table(c, 0.into()), new.to_vec(), &SyncOptions::new())?;
    // Cancelled from the progress callback after the first embedding batch (256 of 600 texts).
    let mut index = start()?;
    let token = CancelToken::new();
    let batches = std::sync::Mutex::new(Vec::new());
    let progress = |p: &Count| {
        batches.lock().unwrap().push(p.done);
        if p.done > 0 {
            token.cancel();
        }
    };
    let table = Table(c, 0.into());
    let options = SyncOptions::new().with_progress(&progress).with_cancel(token.clone());
    let e = index.sync(&table, new.to_vec(), &options).unwrap_err();
    assert!(matches!(e, IndexError::Cancelled { embedded: 256, total: 600 }), "{e}");
    assert_eq!(*batches.lock().unwrap(), vec![0, 256], "exactly one batch embedded");
    assert_eq!(table.1.load(std::sync::atomic::Ordering::Relaxed), 256);
    let ids = |i: &VectorIndex| i.chunks().map(|ch| ch.id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&index), old.iter().map(|ch| ch.id.clone()).collect::<BTreeSet<_>>(), "the old index is intact");
    assert_eq!(index.dead(), 0);
    // The rerun completes it: the same chunks and the same answers as the uninterrupted sync.
    index.sync(&Table(c, 0.into()), new.to_vec(), &SyncOptions::new())?;
    assert_eq!(ids(&index), ids(&whole));
    for q in c.queries.iter().take(20) {
        let opts = SearchOptions::new(5).with_strategy(Strategy::Exact);
        let a: Vec<&ChunkId> = index.search(q, &opts)?.iter().map(|h| &h.chunk.id).collect();
        let b: Vec<&ChunkId> = whole.search(q, &opts)?.iter().map(|h| &h.chunk.id).collect();
        assert_eq!(a, b);
    }
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn bad_input_is_a_clear_error() -> Result<()> {
    let c = corpus();
    let tmp = tempfile::tempdir()?;
    // Empty index.
    let empty = VectorIndex::new(c.model_id.clone(), HnswParams::default())?;
    assert!(matches!(empty.search(&c.queries[0], &SearchOptions::new(5)), Err(IndexError::Empty)));
    // Empty indexes save and load.
    empty.save(tmp.path().join("empty"))?;
    assert!(VectorIndex::load(tmp.path().join("empty"))?.is_empty());
    // Wrong dimension or NaN.
    let index = full_index();
    let e = index.search(&[0.5; 7], &SearchOptions::new(5)).unwrap_err().to_string();
    assert!(e.contains("7 dimensions") && e.contains("384"), "{e}");
    let e = index.search(&vec![f32::NAN; 384], &SearchOptions::new(5)).unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    // A directory that is not an index, another format version, a missing graph file.
    let e = VectorIndex::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("no index.json"), "{e}");
    let small = tmp.path().join("small");
    let mut idx = VectorIndex::new(c.model_id.clone(), HnswParams::default())?;
    idx.insert(c.chunks[..50].to_vec(), c.vectors[..50].to_vec())?;
    idx.save(&small)?;
    let meta = std::fs::read_to_string(small.join("index.json"))?;
    std::fs::write(small.join("index.json"), meta.replace("\"version\": 1", "\"version\": 99"))?;
    let e = VectorIndex::load(&small).unwrap_err().to_string();
    assert!(e.contains("version 99") && e.contains("rebuild"), "{e}");
    std::fs::write(small.join("index.json"), &meta)?;
    std::fs::remove_file(small.join("graph.hnsw.data"))?;
    let e = VectorIndex::load(&small).unwrap_err().to_string();
    assert!(e.contains("graph.hnsw.data") && e.contains("missing"), "{e}");
    // A truncated graph file is an error, not a panic.
    idx.save(&small)?;
    let data = std::fs::read(small.join("graph.hnsw.graph"))?;
    std::fs::write(small.join("graph.hnsw.graph"), &data[..data.len() / 2])?;
    assert!(VectorIndex::load(&small).is_err());
    // Saving over a directory that holds something else is refused, and it is left alone.
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs)?;
    std::fs::write(docs.join("precious.txt"), "keep me")?;
    let e = idx.save(&docs).unwrap_err().to_string();
    assert!(e.contains("not a docraft index"), "{e}");
    assert_eq!(std::fs::read_to_string(docs.join("precious.txt"))?, "keep me");
    // Bad settings.
    assert!(HnswParams::default().with_max_connections(1000).is_err());
    Ok(())
}
