//! The pgvector store against a real PostgreSQL 18 with pgvector (the test harness starts one
//! as an unprivileged user on a free port in a temporary directory): the same answers as the
//! embedded index's exact search, filters inside the scan, delete by document, recall on real
//! chunk vectors, and two processes writing and searching one collection at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../server/tests/common/pg.rs"]
mod pg;
#[path = "common/prose.rs"]
mod prose;

use std::collections::HashSet;

use anyhow::Result;
use docraft_core::{Chunk, ChunkId, DocId, Embedder, Filter, PageRange, Span, VectorStore};
use docraft_index::{HnswParams, KeywordIndex, PgVectorStore, PgVectors, SearchOptions, Strategy, VectorIndex};

/// A deterministic pseudo-random stream (splitmix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit()).collect()
    }
}

/// `n` chunks over `docs` documents with sources, pages and a language, and random vectors.
fn corpus(n: usize, docs: usize, dim: usize, seed: u64) -> (Vec<Chunk>, Vec<Vec<f32>>) {
    let mut rng = Mix(seed);
    let mut chunks = Vec::new();
    for i in 0..n {
        let d = i % docs;
        let doc_id = DocId::from_content(format!("doc {d} {seed}").as_bytes());
        let source = if d.is_multiple_of(3) { format!("manuals/m{d}.pdf") } else { format!("notes/n{d}.md") };
        let page = u32::try_from(i / docs % 40 + 1).unwrap();
        let language = if i % 50 == 7 { "es" } else { "en" };
        chunks.push(Chunk {
            id: ChunkId::new(&doc_id, i, i + 1),
            doc_id,
            source: source.clone(),
            text: format!("chunk {i} of {source}"),
            span: Span::new(i, i + 1),
            pages: source.ends_with(".pdf").then(|| PageRange::new(page, page)),
            headings: vec![format!("H{d}")],
            chunk_index: i / docs,
            chunk_count: n / docs,
            metadata: [
                ("language".to_string(), serde_json::json!(language)),
                ("tags".to_string(), serde_json::json!(["t", format!("d{}", d % 4)])),
                ("year".to_string(), serde_json::json!(2000 + (d % 5))),
            ]
            .into_iter()
            .collect(),
        });
    }
    let vectors = (0..n).map(|_| rng.vector(dim)).collect();
    (chunks, vectors)
}

fn ids(hits: &[docraft_core::Scored]) -> Vec<String> {
    hits.iter().map(|h| h.chunk.id.as_str().to_string()).collect()
}

fn store(pg: &pg::PgServer, collection: &str, model: &str) -> PgVectorStore {
    let url = format!("{}?collection={collection}", pg.url_for_new_db());
    PgVectorStore::create(&url, model, None, HnswParams::default(), false).unwrap()
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn small_sets_equal_exact_search_and_filters_hold() -> Result<()> {
    let pg = pg::PgServer::start();
    let (chunks, vectors) = corpus(3000, 60, 24, 1);
    let mut reference = VectorIndex::new("toy", HnswParams::default())?;
    reference.insert(chunks.clone(), vectors.clone())?;
    let mut s = store(&pg, "small", "toy");
    assert_eq!(VectorStore::add(&mut s, chunks.clone(), vectors.clone())?, 3000);
    // Adding again changes nothing (ids are kept).
    assert_eq!(VectorStore::add(&mut s, chunks[..10].to_vec(), vectors[..10].to_vec())?, 0);
    assert_eq!(s.count()?, 3000);

    let mut rng = Mix(99);
    let filters = [
        vec![],
        vec!["source=*.pdf"],
        vec!["source=notes/**", "page=3-4"],
        vec!["language=es"],
        vec!["language=es", "source=m*.pdf"],
        vec!["tags=d2", "year=2002"],
        vec!["year=2003"],
        vec![Box::leak(format!("doc={}", chunks[5].doc_id.as_str()).into_boxed_str()) as &str],
    ];
    for f in &filters {
        let filter = Filter::parse(f)?;
        let passing = chunks.iter().filter(|c| filter.matches(c)).count();
        for _ in 0..5 {
            let q = rng.vector(24);
            let want = reference.search_exact(&q, &SearchOptions::new(10).with_filter(filter.clone()))?;
            let want_ids: Vec<String> = want.iter().map(|h| h.chunk.id.as_str().to_string()).collect();
            let exact = s.search_with(&q, 10, &filter, true)?;
            assert_eq!(ids(&exact), want_ids, "exact scan, filter {f:?}");
            for (a, b) in exact.iter().zip(&want) {
                assert!((a.score - b.score).abs() < 1e-5, "{} vs {}", a.score, b.score);
            }
            let graph = VectorStore::search(&s, &q, 10, &filter)?;
            assert!(graph.iter().all(|h| filter.matches(&h.chunk)), "a chunk outside {f:?}");
            assert_eq!(graph.len(), passing.min(10), "filter {f:?} passes {passing}: k results inside the scan");
            let found: HashSet<String> = ids(&graph).into_iter().collect();
            let overlap = want_ids.iter().filter(|i| found.contains(*i)).count();
            assert!(overlap >= want_ids.len().saturating_sub(1), "graph vs exact, filter {f:?}: {overlap}/10");
            assert!(graph.windows(2).all(|w| w[0].score >= w[1].score), "closest first");
        }
    }

    // Delete by document: every chunk of it goes, nothing else.
    let doc = chunks[0].doc_id.clone();
    let of_doc = chunks.iter().filter(|c| c.doc_id == doc).count();
    assert_eq!(VectorStore::delete_documents(&mut s, std::slice::from_ref(&doc))?, of_doc);
    assert_eq!(s.count()?, 3000 - of_doc);
    let only = Filter::parse(&[format!("doc={}", doc.as_str())])?;
    assert!(VectorStore::search(&s, &rng.vector(24), 10, &only)?.is_empty());
    assert!(s.chunk_ids()?.iter().all(|id| chunks.iter().any(|c| &c.id == id && c.doc_id != doc)));

    // Bad input is refused before anything is written, naming the chunk.
    let mut bad = vectors[1..3].to_vec();
    bad[1] = vec![0.0; 24];
    let e = s.insert(chunks[1..3].to_vec(), bad).unwrap_err().to_string();
    assert!(e.contains(chunks[2].id.as_str()), "{e}");
    assert!(s.search_with(&[1.0; 5], 3, &Filter::new(), false).unwrap_err().to_string().contains("dimensions"));

    // Another model cannot open it; the catalog keeps the model and dimension.
    let url = s.collection().to_string();
    assert_eq!(url, "small");
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn collections_are_separate_and_models_are_checked() -> Result<()> {
    let pg = pg::PgServer::start();
    let db = pg.url_for_new_db();
    let vectors = PgVectors::connect(&db, 2)?;
    let (chunks, vecs) = corpus(200, 10, 8, 2);
    let mut a = vectors.create("org-a", "docs", "toy", Some("/models/toy"), HnswParams::default(), false)?;
    let mut b = vectors.create("org-b", "docs", "toy", None, HnswParams::default(), false)?;
    a.insert(chunks.clone(), vecs.clone())?;
    b.insert(chunks[..50].to_vec(), vecs[..50].to_vec())?;
    assert_eq!((a.len()?, b.len()?), (200, 50));
    let again = vectors.open("org-a", "docs")?.unwrap();
    assert_eq!((again.model_dir(), again.dim(), again.len()?), (Some("/models/toy"), 8, 200));
    let e = vectors.create("org-a", "docs", "other-model", None, HnswParams::default(), false).unwrap_err();
    assert!(e.to_string().contains("other-model"), "{e}");
    // Replacing starts empty; dropping removes the collection and nothing of the other org.
    let fresh = vectors.create("org-a", "docs", "other-model", None, HnswParams::default(), true)?;
    assert_eq!(fresh.len()?, 0);
    vectors.drop_collection("org-a", "docs")?;
    assert!(vectors.open("org-a", "docs")?.is_none());
    assert_eq!(vectors.open("org-b", "docs")?.unwrap().len()?, 50);
    // A URL without a collection, and one naming a missing collection, say so.
    let e = PgVectorStore::connect(&db).unwrap_err().to_string();
    assert!(e.contains("collection=NAME"), "{e}");
    let e = PgVectorStore::connect(&format!("{db}?collection=nope")).unwrap_err().to_string();
    assert!(e.contains("no such collection") && e.contains("nope"), "{e}");
    Ok(())
}

/// Same chunks and scores, in the same order except among chunks tied with their neighbours
/// (sums in another order may round a tie either way) or with the last one (a tie at the cut).
fn same_bm25(got: &[docraft_core::Scored], want: &[docraft_core::Scored], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {:?} vs {:?}", ids(got), ids(want));
    let tol = |a: f32| 1e-5 * a.abs().max(1.0);
    for (a, b) in got.iter().zip(want) {
        assert!((a.score - b.score).abs() <= tol(b.score), "{what}: {} vs {}", a.score, b.score);
    }
    let last = want.last().map_or(0.0, |h| h.score);
    let tied = |i: usize| {
        let s = want[i].score;
        (s - last).abs() <= tol(s)
            || (i > 0 && (s - want[i - 1].score).abs() <= tol(s))
            || want.get(i + 1).is_some_and(|n| (s - n.score).abs() <= tol(s))
    };
    for i in (0..want.len()).filter(|&i| !tied(i)) {
        assert_eq!(got[i].chunk.id, want[i].chunk.id, "{what}: rank {}", i + 1);
    }
}

/// Keyword search in SQL gives the in-memory BM25 index's ranking over the same real prose
/// (English and Spanish), with filters inside the query; a deleted document's chunks leave it;
/// a collection made before the keyword index existed gets it when it is opened.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn keyword_search_in_sql_equals_the_in_memory_index() -> Result<()> {
    let pg = pg::PgServer::start();
    let (mut chunks, held_out) = prose::paragraphs()?;
    chunks.truncate(1500);
    let mut rng = Mix(5);
    let vectors: Vec<Vec<f32>> = chunks.iter().map(|_| rng.vector(8)).collect();
    let url = format!("{}?collection=kw", pg.url_for_new_db());
    let mut s = PgVectorStore::create(&url, "toy", None, HnswParams::default(), false)?;
    // Two loads: the second batch's terms go in with its rows.
    s.insert(chunks[..700].to_vec(), vectors[..700].to_vec())?;
    s.insert(chunks[700..].to_vec(), vectors[700..].to_vec())?;
    let mut queries: Vec<String> =
        held_out.iter().take(25).map(|p| p.split_whitespace().take(6).collect::<Vec<_>>().join(" ")).collect();
    queries.extend(
        ["¿Cómo recupero una versión anterior de un archivo?", "licence warranty MERCHANTABILITY", "Apache License"]
            .map(String::from),
    );
    let filters = [vec![], vec!["kind=license"], vec!["page=1-2"], vec!["source=*guia-es.md", "source=*LICENSE*"]];
    let compare = |s: &PgVectorStore, reference: &KeywordIndex, what: &str| -> Result<usize> {
        let mut found = 0;
        for f in &filters {
            let filter = Filter::parse(f)?;
            for q in &queries {
                let want = reference.search(q, 10, &filter);
                let got = s.search_keywords(q, 10, &filter)?;
                same_bm25(&got, &want, &format!("{what}, {q:?}, filter {f:?}"));
                assert!(got.iter().all(|h| filter.matches(&h.chunk)));
                found += got.len();
            }
        }
        Ok(found)
    };
    let reference = KeywordIndex::new(chunks.clone());
    let found = compare(&s, &reference, "loaded")?;
    assert!(found > 500, "the queries should find chunks: {found}");
    assert!(s.search_keywords("the of and", 10, &Filter::new())?.is_empty(), "function words only");
    assert!(s.search_keywords("zzyzx", 10, &Filter::new())?.is_empty());

    // Deleting a document removes its chunks from keyword search, and their terms.
    let doc = chunks[3].doc_id.clone();
    let removed = s.remove_docs(std::slice::from_ref(&doc))?;
    assert!(removed > 0);
    chunks.retain(|c| c.doc_id != doc);
    let reference = KeywordIndex::new(chunks.clone());
    compare(&s, &reference, "after a delete")?;
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let table = pg.psql(&db, "SELECT table_name FROM docraft_vector_collections WHERE collection = 'kw'");
    let gone: Vec<String> = s.chunk_ids()?.iter().map(|c| c.as_str().to_string()).collect();
    assert_eq!(gone.len(), chunks.len());
    let orphans =
        pg.psql(&db, &format!("SELECT count(*) FROM {table}_terms t WHERE NOT EXISTS (SELECT 1 FROM {table} c WHERE c.chunk_id = t.chunk_id)"));
    assert_eq!(orphans, "0", "terms of deleted chunks are deleted with them");

    // A collection from before the keyword index: no terms table, no lengths, not marked.
    pg.psql(
        &db,
        &format!(
            "DROP TABLE {table}_terms; ALTER TABLE {table} DROP COLUMN terms_len; \
             UPDATE docraft_vector_collections SET keyword_terms = false WHERE collection = 'kw'"
        ),
    );
    let reopened = PgVectorStore::connect(&url)?;
    assert_eq!(pg.psql(&db, "SELECT keyword_terms FROM docraft_vector_collections WHERE collection = 'kw'"), "t");
    compare(&reopened, &reference, "backfilled")?;
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn recall_at_10_on_real_chunk_vectors() -> Result<()> {
    let c = prose::corpus();
    let pg = pg::PgServer::start();
    let mut s = store(&pg, "real", &c.model_id);
    s.insert(c.chunks.clone(), c.vectors.clone())?;
    // Queries: held-out paragraphs of the same prose, embedded (not stored vectors).
    let mut hits = 0;
    for q in &c.queries {
        let truth: HashSet<String> = ids(&s.search_with(q, 10, &Filter::new(), true)?).into_iter().collect();
        hits += ids(&VectorStore::search(&s, q, 10, &Filter::new())?).iter().filter(|i| truth.contains(*i)).count();
    }
    let recall = hits as f64 / (c.queries.len() * 10) as f64;
    eprintln!("pgvector recall@10 on {} real chunks, {} queries: {recall:.3}", c.chunks.len(), c.queries.len());
    assert!(recall >= 0.95, "recall@10 {recall:.3}");
    // A selective filter (the license texts) inside the scan: k results, all passing.
    let licenses = Filter::parse(&["kind=license"])?;
    let passing = c.chunks.iter().filter(|ch| licenses.matches(ch)).count();
    assert!(passing >= 10 && passing * 5 < c.chunks.len(), "{passing} license chunks");
    for q in c.queries.iter().take(20) {
        let found = VectorStore::search(&s, q, 10, &licenses)?;
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|h| licenses.matches(&h.chunk)));
    }
    // The embedded index on the same vectors agrees with pgvector's exact answers.
    let mut index = VectorIndex::new(c.model_id.clone(), HnswParams::default())?;
    index.insert(c.chunks.clone(), c.vectors.clone())?;
    for q in c.queries.iter().take(10) {
        let a = ids(&s.search_with(q, 5, &Filter::new(), true)?);
        let b: Vec<String> = index
            .search(q, &SearchOptions::new(5).with_strategy(Strategy::Exact))?
            .iter()
            .map(|h| h.chunk.id.as_str().to_string())
            .collect();
        assert_eq!(a, b);
    }
    Ok(())
}

const CHILD_URL: &str = "DOCRAFT_TEST_PG_CHILD_URL";

/// The other process of [`two_processes_write_and_search_at_once`]: when started by it, adds
/// the second half of the corpus in small batches while the parent does the same with the
/// first half, searching between batches.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn pg_child_writer() -> Result<()> {
    let Ok(url) = std::env::var(CHILD_URL) else { return Ok(()) };
    let (chunks, vectors) = corpus(2000, 40, 16, 3);
    let mut s = PgVectorStore::create(&url, "toy", None, HnswParams::default(), false)?;
    for (c, v) in chunks[1000..].chunks(50).zip(vectors[1000..].chunks(50)) {
        s.insert(c.to_vec(), v.to_vec())?;
        let hits = VectorStore::search(&s, &v[0], 1, &Filter::new())?;
        assert_eq!(hits[0].chunk.id, c[0].id, "its own chunk is found right after it was added");
    }
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn two_processes_write_and_search_at_once() -> Result<()> {
    let pg = pg::PgServer::start();
    let url = format!("{}?collection=shared", pg.url_for_new_db());
    let (chunks, vectors) = corpus(2000, 40, 16, 3);
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["pg_child_writer", "--exact", "--include-ignored", "--nocapture"])
        .env(CHILD_URL, &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut s = PgVectorStore::create(&url, "toy", None, HnswParams::default(), false)?;
    for (c, v) in chunks[..1000].chunks(50).zip(vectors[..1000].chunks(50)) {
        s.insert(c.to_vec(), v.to_vec())?;
        let hits = VectorStore::search(&s, &v[0], 1, &Filter::new())?;
        assert_eq!(hits[0].chunk.id, c[0].id);
    }
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "the other writer failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran its test");
    let s = PgVectorStore::connect(&url)?;
    assert_eq!(s.count()?, 2000, "no insert lost");
    let held: HashSet<ChunkId> = s.chunk_ids()?.into_iter().collect();
    assert!(chunks.iter().all(|c| held.contains(&c.id)));
    for (c, v) in chunks.iter().zip(&vectors).step_by(97) {
        assert_eq!(VectorStore::search(&s, v, 1, &Filter::new())?[0].chunk.id, c.id);
    }
    Ok(())
}

/// Vectors from a seeded hash of the text: an embedder for the sync tests, without a model.
struct HashEmbedder;

impl docraft_core::Embedder for HashEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, docraft_core::EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let h = docraft_core::content_hash(t.as_bytes());
                Mix(u64::from_str_radix(&h[..16], 16).unwrap()).vector(16)
            })
            .collect())
    }
    fn model_id(&self) -> String {
        "hash-16".into()
    }
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_sync_loads_in_batches_then_builds_the_graph_once() -> Result<()> {
    let pg = pg::PgServer::start();
    let (chunks, _) = corpus(5000, 50, 16, 4);
    let mut s = store(&pg, "synced", "hash-16");
    let report = s.sync(&HashEmbedder, chunks.clone(), &docraft_index::SyncOptions::new())?;
    assert_eq!((report.added, report.embedded, report.unchanged), (5000, 5000, 0));
    let (_, graph) = s.sizes()?;
    assert!(graph > 0, "no HNSW index after the sync");
    // Its answers: each chunk's own vector finds it first.
    for c in chunks.iter().step_by(499) {
        let v = HashEmbedder.embed(&[c.text.as_str()])?.remove(0);
        assert_eq!(VectorStore::search(&s, &v, 1, &Filter::new())?[0].chunk.id, c.id);
    }
    // A second sync with fewer chunks removes the rest and embeds nothing.
    let report = s.sync(&HashEmbedder, chunks[..1000].to_vec(), &docraft_index::SyncOptions::new())?;
    assert_eq!((report.added, report.removed, report.unchanged, report.embedded), (0, 4000, 1000, 0));
    assert_eq!(s.count()?, 1000);
    Ok(())
}
