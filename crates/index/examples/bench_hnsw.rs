//! HNSW build time, memory, queries per second and recall@10 at several `ef`, next to exact
//! search, on N x 384 vectors (seeded, so every run sees the same data).
//!
//! ```text
//! cargo run --release -p docraft-index --example bench_hnsw -- [N=100000] [QUERIES=1000] [random|clustered]
//! ```
//! `random`: directions uniform on the sphere, the hardest case for a graph index (no
//! structure). `clustered`: 1,000 topics, each vector a topic plus noise (cosine within a topic
//! about 0.67), closer to what sentence embeddings of a document collection look like.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;
use docraft_core::{Chunk, ChunkId, DocId, Span};
use docraft_index::{HnswParams, SearchOptions, Strategy, VectorIndex};

const DIM: usize = 384;

/// xorshift64* with Box-Muller: a seeded normal generator without dependencies.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.normal()).collect()
    }
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let q: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let kind = args.next().unwrap_or_else(|| "random".into());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let topics: Vec<Vec<f32>> = (0..1000).map(|_| rng.vector()).collect();
    let draw = |rng: &mut Rng| -> Vec<f32> {
        let noise = rng.vector();
        if kind == "clustered" {
            let t = &topics[(rng.uniform() * topics.len() as f64) as usize % topics.len()];
            t.iter().zip(noise).map(|(a, b)| a + 0.7 * b).collect()
        } else {
            noise
        }
    };
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| draw(&mut rng)).collect();
    let queries: Vec<Vec<f32>> = (0..q).map(|_| draw(&mut rng)).collect();
    let doc = DocId::from_content(b"bench");
    let chunks: Vec<Chunk> = (0..n)
        .map(|i| Chunk {
            id: ChunkId::new(&doc, i, i + 1),
            doc_id: doc.clone(),
            source: format!("bench/{}.txt", i % 100),
            text: String::new(),
            span: Span::new(i, i + 1),
            pages: None,
            headings: vec![],
            chunk_index: i,
            chunk_count: n,
            metadata: Default::default(),
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{n} x {DIM} {kind} vectors, {q} queries, k = 10, {threads} threads for the build");

    let params = HnswParams::default();
    let before = rss_mb();
    let started = Instant::now();
    let mut index = VectorIndex::new("bench", params)?;
    index.insert(chunks, vectors)?;
    let build = started.elapsed().as_secs_f64();
    let after = rss_mb();
    println!(
        "build (M={}, ef_construction={}): {build:.1} s ({:.0} vectors/s), memory +{:.0} MB (vectors kept for exact search: {:.0} MB)",
        params.max_connections,
        params.ef_construction,
        n as f64 / build,
        after - before,
        (n * DIM * 4) as f64 / 1e6
    );

    // Exact search: the ground truth, and its speed.
    let exact = SearchOptions::new(10).with_strategy(Strategy::Exact);
    let started = Instant::now();
    let truth: Vec<HashSet<String>> = queries
        .iter()
        .map(|v| index.search(v, &exact).map(|h| h.iter().map(|h| h.chunk.id.as_str().to_string()).collect()))
        .collect::<Result<_, _>>()?;
    let s = started.elapsed().as_secs_f64();
    println!("exact search: {:>8.0} queries/s (one thread), recall 1.000", q as f64 / s);

    for ef in [16, 32, 64, 100, 200, 400] {
        let opts = SearchOptions::new(10).with_ef(ef).with_strategy(Strategy::Graph);
        let started = Instant::now();
        let mut found = 0usize;
        for (v, t) in queries.iter().zip(&truth) {
            let hits = index.search(v, &opts)?;
            found += hits.iter().filter(|h| t.contains(h.chunk.id.as_str())).count();
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "hnsw ef={ef:>3}: {:>8.0} queries/s (one thread), recall@10 {:.3}",
            q as f64 / s,
            found as f64 / (10 * q) as f64
        );
    }

    let dir = std::env::temp_dir().join("docraft-bench-index");
    let started = Instant::now();
    index.save(&dir)?;
    let saved = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let loaded = VectorIndex::load(&dir)?;
    println!("save {saved:.1} s, load {:.1} s ({} chunks)", started.elapsed().as_secs_f64(), loaded.len());
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
