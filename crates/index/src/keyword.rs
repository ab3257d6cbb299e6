//! Keyword search and hybrid retrieval: an in-memory BM25 index over chunks, weighted
//! reciprocal rank fusion, and a [`Retriever`] that runs a vector search, a keyword search or
//! both fused.
//!
//! Words are compared the way the rest of docraft compares them ([`docraft_core::text`]):
//! folded (case and accents dropped, so `Año` and `ano` meet), function words of English and
//! Spanish dropped (numbers kept), and cut to their five-character [`stem`], so `conservan`
//! and `conserva` meet.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use docraft_core::text::{is_content_word, stem, words};
use docraft_core::{Chunk, ChunkId, Filter, RetrieveError, Retriever, Scored};
use serde::{Deserialize, Serialize};

use crate::{IndexError, Result};

/// BM25 term-frequency saturation `k1`.
pub const BM25_K1: f64 = 1.2;

/// BM25 document-length normalization `b`.
pub const BM25_B: f64 = 0.75;

/// The rank offset of reciprocal rank fusion: a chunk at rank `r` (from 1) of a list adds
/// `weight / (RRF_K + r)` to its fused score.
pub const RRF_K: f32 = 60.0;

/// In hybrid mode each side fetches `k * FUSION_DEPTH_FACTOR` candidates (at least
/// [`FUSION_MIN_DEPTH`]) before they are fused to `k`.
pub const FUSION_DEPTH_FACTOR: usize = 4;

/// The fewest candidates each side fetches in hybrid mode.
pub const FUSION_MIN_DEPTH: usize = 20;

/// The default weight of the vector list in hybrid mode.
pub const DEFAULT_VECTOR_WEIGHT: f32 = 1.0;

/// The default weight of the keyword list in hybrid mode.
pub const DEFAULT_KEYWORD_WEIGHT: f32 = 1.0;

/// The index terms of `text`: its folded words, less the function words of English and of
/// Spanish (a word is kept when it is a content word in both), stemmed.
fn terms(text: &str) -> impl Iterator<Item = String> {
    words(text).into_iter().filter(|w| is_content_word(w, "en") && is_content_word(w, "es")).map(|w| stem(&w))
}

/// The distinct index terms of a query, sorted (each counts once in a BM25 score).
pub(crate) fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = terms(query).collect();
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// A text's index terms with their frequencies, and its length in terms: what BM25 keeps of
/// a chunk (here and in PostgreSQL, [`crate::PgVectorStore`]).
pub(crate) fn term_counts(text: &str) -> (HashMap<String, u32>, u32) {
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut length = 0u32;
    for term in terms(text) {
        *counts.entry(term).or_insert(0) += 1;
        length = length.saturating_add(1);
    }
    (counts, length)
}

/// The BM25 weight of one term in one chunk: `idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b *
/// length / avg_len))` with idf `ln(1 + (n - df + 0.5) / (df + 0.5))`, for `n` chunks of
/// average length `avg_len`, `df` of which hold the term. PostgreSQL computes the same
/// expression in SQL ([`crate::PgVectorStore::search_keywords`]).
fn bm25(tf: f64, df: f64, n: f64, length: f64, avg_len: f64) -> f64 {
    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
    let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * length / avg_len);
    idf * tf * (BM25_K1 + 1.0) / (tf + norm)
}

/// Keyword (BM25) search over a store's chunks: the keyword side of a [`HybridRetriever`].
/// Implemented by the in-memory [`KeywordIndex`] and by [`crate::PgVectorStore`] (in SQL,
/// with the same terms and scores).
pub trait KeywordSearch: Send + Sync {
    /// Up to `k` chunks passing `filter` that hold a term of `query`, by BM25 score, best
    /// first, ties by chunk id.
    ///
    /// # Errors
    /// The store's, naming it.
    fn keyword_search(&self, query: &str, k: usize, filter: &Filter)
    -> std::result::Result<Vec<Scored>, RetrieveError>;
}

impl KeywordSearch for KeywordIndex {
    fn keyword_search(
        &self,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> std::result::Result<Vec<Scored>, RetrieveError> {
        Ok(self.search(query, k, filter))
    }
}

/// `KeywordSearch` through a reference or a smart pointer.
macro_rules! forward_keyword_search {
    ($($pointer:ty),*) => {$(
        impl<T: KeywordSearch + ?Sized> KeywordSearch for $pointer {
            fn keyword_search(
                &self,
                query: &str,
                k: usize,
                filter: &Filter,
            ) -> std::result::Result<Vec<Scored>, RetrieveError> {
                (**self).keyword_search(query, k, filter)
            }
        }
    )*};
}

forward_keyword_search!(&T, Box<T>, std::sync::Arc<T>);

/// A count as a float (counts here are far below 2^52, so exact).
#[allow(clippy::cast_precision_loss)]
fn float(n: usize) -> f64 {
    n as f64
}

/// An in-memory inverted index over chunks, scored with Okapi BM25 ([`BM25_K1`], [`BM25_B`],
/// idf `ln(1 + (N - df + 0.5) / (df + 0.5))`).
///
/// Each term keeps a postings list of (row, term frequency); the index also keeps each
/// chunk's length in terms, their average, and the chunks themselves, so hits carry them.
#[derive(Debug, Clone, Default)]
pub struct KeywordIndex {
    chunks: Vec<Chunk>,
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    avg_len: f64,
}

impl KeywordIndex {
    /// An index over `chunks` (rows in the given order). At most `u32::MAX` chunks are kept.
    #[must_use]
    pub fn new(mut chunks: Vec<Chunk>) -> Self {
        chunks.truncate(u32::MAX as usize);
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(chunks.len());
        let mut total = 0usize;
        for (row, chunk) in (0..=u32::MAX).zip(&chunks) {
            let (counts, length) = term_counts(&chunk.text);
            for (term, tf) in counts {
                postings.entry(term).or_default().push((row, tf));
            }
            lengths.push(length);
            total += length as usize;
        }
        for list in postings.values_mut() {
            list.sort_unstable_by_key(|&(row, _)| row);
            list.shrink_to_fit();
        }
        postings.shrink_to_fit();
        let avg_len = if chunks.is_empty() { 0.0 } else { float(total) / float(chunks.len()) };
        Self { chunks, postings, lengths, avg_len }
    }

    /// An index over the chunks of an iterator (see [`KeywordIndex::new`]).
    #[must_use]
    pub fn from_chunks(chunks: impl IntoIterator<Item = Chunk>) -> Self {
        Self::new(chunks.into_iter().collect())
    }

    /// How many chunks the index holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the index holds no chunk.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The chunks, in row order.
    #[must_use]
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// The BM25 score of each chunk holding a term of `query`, by row.
    fn scores(&self, query: &str) -> HashMap<u32, f64> {
        let query_terms = query_terms(query);
        let n = float(self.chunks.len());
        let mut scores: HashMap<u32, f64> = HashMap::new();
        if self.avg_len <= 0.0 {
            return scores;
        }
        for term in &query_terms {
            let Some(list) = self.postings.get(term) else { continue };
            let df = float(list.len());
            for &(row, tf) in list {
                let length = self.lengths.get(row as usize).copied().map_or(0.0, f64::from);
                *scores.entry(row).or_insert(0.0) += bm25(f64::from(tf), df, n, length, self.avg_len);
            }
        }
        scores
    }

    /// Up to `k` chunks that pass `filter`, by BM25 score for the terms of `query` (each term
    /// counted once), best first, ties by chunk id. The filter is applied before the top `k`
    /// are taken, so a selective filter still returns `k` chunks when that many match. A
    /// query without a term the index knows (or of function words only) returns nothing;
    /// chunks scoring 0 are never returned.
    #[must_use]
    pub fn search(&self, query: &str, k: usize, filter: &Filter) -> Vec<Scored> {
        if k == 0 {
            return Vec::new();
        }
        #[allow(clippy::cast_possible_truncation)]
        let mut hits: Vec<(f32, &Chunk)> = self
            .scores(query)
            .into_iter()
            .filter_map(|(row, score)| Some((score as f32, self.chunks.get(row as usize)?)))
            .filter(|(score, chunk)| *score > 0.0 && (filter.is_empty() || filter.matches(chunk)))
            .collect();
        let order = |a: &(f32, &Chunk), b: &(f32, &Chunk)| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id));
        if hits.len() > k {
            hits.select_nth_unstable_by(k - 1, order);
            hits.truncate(k);
        }
        hits.sort_unstable_by(order);
        hits.into_iter().map(|(score, chunk)| Scored { chunk: chunk.clone(), score }).collect()
    }
}

/// Weighted reciprocal rank fusion of ranked lists: each `(list, weight)` adds
/// `weight / (RRF_K + rank)` (rank from 1, a chunk's first place in that list) to the fused
/// score of each chunk it holds, chunks being told apart by id. Returns up to `k` chunks with
/// their fused score in place of the original, best first. A list whose weight is not above 0
/// (or is NaN) is ignored.
///
/// Equal fused scores are common (first in one list and second in the other ties with the
/// reverse): such ties go to the chunk with the larger weighted sum of its scores, each
/// rescaled to 0..1 within its list (min-max; a list of equal scores gives 1), so the list that
/// separates its top chunks more decides; then to the smaller chunk id.
#[must_use]
pub fn reciprocal_rank_fusion(lists: &[(&[Scored], f32)], k: usize) -> Vec<Scored> {
    // chunk -> (fused score, tie-break score, the hit that brought it first)
    let mut fused: HashMap<&ChunkId, (f64, f64, &Scored)> = HashMap::new();
    for &(list, weight) in lists {
        if weight.is_nan() || weight <= 0.0 {
            continue;
        }
        let weight = f64::from(weight);
        let finite = list.iter().map(|h| f64::from(h.score)).filter(|s| s.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(s), hi.max(s)));
        let rescaled = |s: f32| {
            let s = f64::from(s);
            if !s.is_finite() {
                0.0
            } else if hi > lo {
                (s - lo) / (hi - lo)
            } else {
                1.0
            }
        };
        let mut seen: HashSet<&ChunkId> = HashSet::with_capacity(list.len());
        let mut rank = 0.0f64;
        for hit in list {
            rank += 1.0;
            if !seen.insert(&hit.chunk.id) {
                continue;
            }
            let entry = fused.entry(&hit.chunk.id).or_insert((0.0, 0.0, hit));
            entry.0 += weight / (f64::from(RRF_K) + rank);
            entry.1 += weight * rescaled(hit.score);
        }
    }
    let mut ranked: Vec<(f64, f64, &Scored)> = fused.into_values().collect();
    ranked.sort_unstable_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| b.1.total_cmp(&a.1)).then_with(|| a.2.chunk.id.cmp(&b.2.chunk.id))
    });
    ranked.truncate(k);
    #[allow(clippy::cast_possible_truncation)]
    ranked.into_iter().map(|(score, _, hit)| Scored { chunk: hit.chunk.clone(), score: score as f32 }).collect()
}

/// Which retrieval a [`HybridRetriever`] runs. Written `vector`, `keyword` or `hybrid` (in
/// configuration files, on the command line and by `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    /// The vector store's nearest chunks only, with their similarity scores.
    Vector,
    /// The BM25 keyword index only, with BM25 scores.
    Keyword,
    /// Both, fused by weighted reciprocal rank fusion ([`reciprocal_rank_fusion`]). The
    /// default.
    #[default]
    Hybrid,
}

impl Retrieval {
    /// Every mode, in the order listed above.
    pub const ALL: [Self; 3] = [Self::Vector, Self::Keyword, Self::Hybrid];

    /// The mode's name: `vector`, `keyword` or `hybrid`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for Retrieval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Retrieval {
    type Err = IndexError;

    /// A mode by its name (surrounding spaces and case ignored).
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim();
        Self::ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(name)).ok_or_else(|| IndexError::Setting {
            setting: "retrieval",
            reason: format!("unknown retrieval mode {s:?}: expected vector, keyword or hybrid"),
        })
    }
}

/// A [`Retriever`] over a vector retriever and a [`KeywordIndex`] of the same chunks, in one
/// of the [`Retrieval`] modes.
///
/// In hybrid mode each side fetches `max(k * FUSION_DEPTH_FACTOR, FUSION_MIN_DEPTH)`
/// candidates and the two lists are fused to `k` with [`reciprocal_rank_fusion`], weighted by
/// `vector_weight` and `keyword_weight` (a side weighted 0 is not searched). The keyword side
/// applies the retriever's [`Filter`]; the vector side is expected to filter in its store.
///
/// Scores: in vector mode the store's similarities, in keyword mode BM25 scores, in hybrid
/// mode the fused scores (so a similarity threshold applies to vector mode only).
///
/// `K` is any [`KeywordSearch`]: a [`KeywordIndex`] (itself, a reference, an `Arc`) or a
/// [`crate::PgVectorStore`].
#[derive(Debug, Clone)]
pub struct HybridRetriever<V, K> {
    vector: V,
    keyword: K,
    filter: Filter,
    mode: Retrieval,
    vector_weight: f32,
    keyword_weight: f32,
}

impl<V, K> HybridRetriever<V, K>
where
    V: Retriever,
    K: KeywordSearch,
{
    /// A retriever in the default mode ([`Retrieval::default`]) with the default weights
    /// ([`DEFAULT_VECTOR_WEIGHT`], [`DEFAULT_KEYWORD_WEIGHT`]) and no keyword filter.
    #[must_use]
    pub fn new(vector: V, keyword: K) -> Self {
        Self {
            vector,
            keyword,
            filter: Filter::default(),
            mode: Retrieval::default(),
            vector_weight: DEFAULT_VECTOR_WEIGHT,
            keyword_weight: DEFAULT_KEYWORD_WEIGHT,
        }
    }

    /// The same retriever in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: Retrieval) -> Self {
        self.mode = mode;
        self
    }

    /// The same retriever with `filter` applied to the keyword side.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The same retriever with these fusion weights (used in hybrid mode).
    ///
    /// # Errors
    /// [`IndexError::Setting`] when a weight is negative, NaN or infinite, or both are 0.
    pub fn try_with_weights(mut self, vector_weight: f32, keyword_weight: f32) -> Result<Self> {
        for (name, w) in [("vector", vector_weight), ("keyword", keyword_weight)] {
            if !w.is_finite() || w < 0.0 {
                return Err(IndexError::Setting {
                    setting: "retrieval weights",
                    reason: format!("the {name} weight is {w}: expected a finite number >= 0"),
                });
            }
        }
        if vector_weight <= 0.0 && keyword_weight <= 0.0 {
            return Err(IndexError::Setting {
                setting: "retrieval weights",
                reason: "the vector and keyword weights are both 0: at least one must be above 0".into(),
            });
        }
        self.vector_weight = vector_weight;
        self.keyword_weight = keyword_weight;
        Ok(self)
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> Retrieval {
        self.mode
    }

    /// The fusion weights: (vector, keyword).
    #[must_use]
    pub fn weights(&self) -> (f32, f32) {
        (self.vector_weight, self.keyword_weight)
    }

    /// The keyword side's filter.
    #[must_use]
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The keyword side.
    #[must_use]
    pub fn keyword(&self) -> &K {
        &self.keyword
    }
}

impl<V, K> Retriever for HybridRetriever<V, K>
where
    V: Retriever,
    K: KeywordSearch,
{
    fn search(&self, query: &str, k: usize) -> std::result::Result<Vec<Scored>, RetrieveError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let keyword = &self.keyword;
        match self.mode {
            Retrieval::Vector => self.vector.search(query, k),
            Retrieval::Keyword => keyword.keyword_search(query, k, &self.filter),
            Retrieval::Hybrid => {
                let depth = k.saturating_mul(FUSION_DEPTH_FACTOR).max(FUSION_MIN_DEPTH);
                let vector = if self.vector_weight > 0.0 { self.vector.search(query, depth)? } else { Vec::new() };
                let keyword = if self.keyword_weight > 0.0 {
                    keyword.keyword_search(query, depth, &self.filter)?
                } else {
                    Vec::new()
                };
                Ok(reciprocal_rank_fusion(&[(&vector, self.vector_weight), (&keyword, self.keyword_weight)], k))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use docraft_core::{DocId, Span};

    use super::*;

    /// A chunk with a chosen id, source and text.
    fn chunk(id: &str, source: &str, text: &str) -> Chunk {
        let doc = DocId::from_content(source.as_bytes());
        Chunk {
            id: ChunkId::from_string(id),
            doc_id: doc,
            source: source.into(),
            text: text.into(),
            span: Span::new(0, text.len()),
            pages: None,
            headings: vec![],
            chunk_index: 0,
            chunk_count: 1,
            metadata: std::collections::BTreeMap::new(),
        }
    }

    fn ids(hits: &[Scored]) -> Vec<&str> {
        hits.iter().map(|h| h.chunk.id.as_str()).collect()
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-5
    }

    /// Terms: a = bolts torqu bolts (3), b = torqu wrenc (2), c = flang gaske seal (3),
    /// d = bolts (1; "the" is a function word). N = 4, average length 9 / 4 = 2.25.
    fn corpus() -> KeywordIndex {
        KeywordIndex::new(vec![
            chunk("a", "a.md", "Bolts, torque, BOLTS."),
            chunk("b", "b.md", "torque wrench"),
            chunk("c", "c.md", "flange gasket seal"),
            chunk("d", "d.md", "the bolts"),
        ])
    }

    #[test]
    fn keyword_bm25_scores_match_hand_computation() {
        let index = corpus();
        assert_eq!(index.len(), 4);
        // bolts: df = 2, idf = ln(1 + (4 - 2 + 0.5) / (2 + 0.5)) = ln 2.
        // a: tf 2, len 3: 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2.25)) = 4.4 / 3.5
        // d: tf 1, len 1: 2.2 / (1 + 1.2 * (0.25 + 0.75 * 1 / 2.25)) = 2.2 / 1.7
        let ln2 = 2f64.ln();
        let hits = index.search("bolts", 10, &Filter::default());
        assert_eq!(ids(&hits), ["d", "a"], "the shorter chunk wins");
        assert!(close(hits[0].score, ln2 * 2.2 / 1.7), "{}", hits[0].score);
        assert!(close(hits[1].score, ln2 * 4.4 / 3.5), "{}", hits[1].score);

        // torque: df = 2, idf = ln 2. a: 2.2 / (1 + 1.2 * 1.25) = 2.2 / 2.5;
        // b: tf 1, len 2: 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 2.25)) = 2.2 / 2.1.
        // A repeated query term counts once.
        let hits = index.search("torque bolts torque", 10, &Filter::default());
        assert_eq!(ids(&hits), ["a", "d", "b"]);
        assert!(close(hits[0].score, ln2 * (4.4 / 3.5 + 2.2 / 2.5)), "{}", hits[0].score);
        assert!(close(hits[1].score, ln2 * 2.2 / 1.7));
        assert!(close(hits[2].score, ln2 * 2.2 / 2.1));

        // gasket: df = 1, idf = ln(1 + 3.5 / 1.5); c: tf 1, len 3: 2.2 / 2.5.
        let hits = index.search("gaskets?", 10, &Filter::default());
        assert_eq!(ids(&hits), ["c"]);
        assert!(close(hits[0].score, (1.0f64 + 3.5 / 1.5).ln() * 2.2 / 2.5));

        // k cuts the list after sorting.
        assert_eq!(ids(&index.search("torque bolts", 2, &Filter::default())), ["a", "d"]);
        assert!(index.search("torque", 0, &Filter::default()).is_empty());
    }

    #[test]
    fn keyword_unknown_terms_and_empty_index_return_nothing() {
        let index = corpus();
        assert!(index.search("zebra", 5, &Filter::default()).is_empty());
        assert!(index.search("", 5, &Filter::default()).is_empty());
        let empty = KeywordIndex::new(vec![]);
        assert!(empty.is_empty());
        assert!(empty.search("bolts", 5, &Filter::default()).is_empty());
        let stops = KeywordIndex::from_chunks([chunk("s", "s.md", "the and of")]);
        assert_eq!(stops.len(), 1);
        assert!(stops.search("the", 5, &Filter::default()).is_empty());
    }

    #[test]
    fn keyword_ties_are_broken_by_chunk_id() {
        // Same text, same score: inserted in reverse id order, returned in id order.
        let index = KeywordIndex::new(vec![
            chunk("zz", "z.md", "valve seal"),
            chunk("mm", "m.md", "valve seal"),
            chunk("aa", "a.md", "pump housing"),
            chunk("qq", "q.md", "valve seal"),
        ]);
        let hits = index.search("valve", 10, &Filter::default());
        assert_eq!(ids(&hits), ["mm", "qq", "zz"]);
        assert_eq!(hits[0].score.to_bits(), hits[2].score.to_bits());
        assert_eq!(ids(&index.search("valve", 2, &Filter::default())), ["mm", "qq"]);
    }

    #[test]
    fn keyword_filter_applies_before_top_k() {
        // The Markdown chunks score highest (short, repeated term); the PDFs lower.
        let mut chunks = Vec::new();
        for i in 0..6 {
            chunks.push(chunk(&format!("md{i}"), &format!("notes/n{i}.md"), "pressure pressure"));
        }
        for i in 0..3 {
            chunks.push(chunk(&format!("pdf{i}"), &format!("manuals/m{i}.pdf"), "pressure limits for the boiler room"));
        }
        let index = KeywordIndex::new(chunks);
        let unfiltered = index.search("pressure", 2, &Filter::default());
        assert!(ids(&unfiltered).iter().all(|id| id.starts_with("md")));

        let filter = Filter::parse(&["source=*.pdf"]).unwrap();
        let hits = index.search("pressure", 2, &filter);
        assert_eq!(ids(&hits), ["pdf0", "pdf1"], "k chunks despite the better ones filtered out");
        let all = index.search("pressure", 10, &filter);
        assert_eq!(ids(&all), ["pdf0", "pdf1", "pdf2"]);
        assert!(all.iter().all(|h| filter.matches(&h.chunk) && h.chunk.source.starts_with("manuals/")));

        let none = Filter::parse(&["source=*.docx"]).unwrap();
        assert!(index.search("pressure", 5, &none).is_empty());
    }

    #[test]
    fn keyword_spanish_folding_and_stemming() {
        let index = KeywordIndex::new(vec![
            chunk("1", "a.md", "El archivo conserva los documentos en papel."),
            chunk("2", "b.md", "La oficina abre a las nueve."),
            chunk("3", "c.md", "Informe del AÑO 2024"),
        ]);
        let hits = index.search("¿Dónde se conservan los documentos?", 5, &Filter::default());
        assert_eq!(ids(&hits), ["1"]);
        assert!(hits[0].score > 0.0);
        assert_eq!(hits[0].chunk.text, "El archivo conserva los documentos en papel.");
        // Conservan and conserva meet by stem alone.
        assert_eq!(ids(&index.search("CONSERVAN", 5, &Filter::default())), ["1"]);
        // Case and accents fold: año == ano == AÑO; numbers are terms.
        for q in ["año", "ano", "Año", "2024"] {
            assert_eq!(ids(&index.search(q, 5, &Filter::default())), ["3"], "{q}");
        }
        assert_eq!(ids(&index.search("OFICINA", 5, &Filter::default())), ["2"]);
    }

    #[test]
    fn keyword_stop_words_are_ignored() {
        let index = KeywordIndex::new(vec![
            chunk("1", "a.md", "What is the torque of the bolts and where are they?"),
            chunk("2", "b.md", "¿Dónde están los documentos para la oficina?"),
        ]);
        // English and Spanish function words and words under three letters: nothing left.
        for q in ["the and of", "what where which", "¿Dónde están los para?", "de la el a", "como with"] {
            assert!(index.search(q, 5, &Filter::default()).is_empty(), "{q}");
        }
        // Stop words in a query do not change the scores of its content words.
        let plain = index.search("torque", 5, &Filter::default());
        let padded = index.search("what is the torque of the", 5, &Filter::default());
        assert_eq!(ids(&plain), ["1"]);
        assert_eq!(plain, padded);
    }

    fn scored(id: &str, score: f32) -> Scored {
        Scored { chunk: chunk(id, &format!("{id}.md"), id), score }
    }

    #[test]
    fn rrf_matches_hand_computed_ranking() {
        let first = [scored("a", 0.9), scored("b", 0.8), scored("c", 0.1)];
        let second = [scored("c", 12.0), scored("d", 3.0)];
        // a = 1/61, b = 1/62, c = 1/63 + 0.5/61, d = 0.5/62.
        let fused = reciprocal_rank_fusion(&[(&first, 1.0), (&second, 0.5)], 10);
        assert_eq!(ids(&fused), ["c", "a", "b", "d"]);
        let expected = [1.0 / 63.0 + 0.5 / 61.0, 1.0 / 61.0, 1.0 / 62.0, 0.5 / 62.0];
        for (hit, want) in fused.iter().zip(expected) {
            assert!(close(hit.score, want), "{}: {} vs {want}", hit.chunk.id, hit.score);
        }
        // d is only in the second list and keeps its chunk.
        assert_eq!(fused[3].chunk.text, "d");
        // Top k.
        assert_eq!(ids(&reciprocal_rank_fusion(&[(&first, 1.0), (&second, 0.5)], 2)), ["c", "a"]);
        // With the second list weighted 2: c = 1/63 + 2/61, d = 2/62 > a = 1/61.
        assert_eq!(ids(&reciprocal_rank_fusion(&[(&first, 1.0), (&second, 2.0)], 10)), ["c", "d", "a", "b"]);
        // A list weighted 0 adds nothing, not even its chunks.
        assert_eq!(ids(&reciprocal_rank_fusion(&[(&first, 1.0), (&second, 0.0)], 10)), ["a", "b", "c"]);
        assert!(reciprocal_rank_fusion(&[], 10).is_empty());
    }

    /// First in one list and second in the other, both ways: equal fused scores. The list
    /// whose scores set its two apart more decides (the fixtures' torque question: the vector
    /// scores 0.173 / 0.147 barely differ, BM25's 2.15 / 6.76 do), not the ids.
    #[test]
    fn rrf_ties_go_to_the_larger_rescaled_scores() {
        let vector = [scored("a", 0.173), scored("b", 0.147), scored("c", 0.109)];
        let keyword = [scored("b", 6.764), scored("a", 2.149)];
        let fused = reciprocal_rank_fusion(&[(&vector, 1.0), (&keyword, 1.0)], 10);
        // a: 1 + 0 = 1.0, b: (0.147 - 0.109) / 0.064 + 1 = 1.59.
        assert_eq!(ids(&fused), ["b", "a", "c"]);
        assert_eq!(fused[0].score.to_bits(), fused[1].score.to_bits(), "a real tie of the fused scores");
        // The weights count in the tie-break too: with BM25 weighted 0.5, b's (0.59 + 0.5) is
        // still ahead of a's (1.0 + 0), but the fused scores now differ and a wins on rank.
        let fused = reciprocal_rank_fusion(&[(&vector, 1.0), (&keyword, 0.5)], 10);
        assert_eq!(ids(&fused), ["a", "b", "c"]);
    }

    #[test]
    fn rrf_ties_are_broken_by_chunk_id() {
        let x = [scored("b", 1.0)];
        let y = [scored("a", 1.0)];
        let fused = reciprocal_rank_fusion(&[(&x, 1.0), (&y, 1.0)], 10);
        assert_eq!(ids(&fused), ["a", "b"]);
        assert_eq!(fused[0].score.to_bits(), fused[1].score.to_bits());
    }

    /// A vector retriever returning a fixed list, recording the k asked for.
    struct FakeVector {
        hits: Vec<Scored>,
        asked: AtomicUsize,
    }

    impl FakeVector {
        fn new(hits: Vec<Scored>) -> Self {
            Self { hits, asked: AtomicUsize::new(0) }
        }
    }

    impl Retriever for FakeVector {
        fn search(&self, _query: &str, k: usize) -> std::result::Result<Vec<Scored>, RetrieveError> {
            self.asked.store(k, Ordering::SeqCst);
            Ok(self.hits.iter().take(k).cloned().collect())
        }
    }

    struct FailingVector;

    impl Retriever for FailingVector {
        fn search(&self, query: &str, _k: usize) -> std::result::Result<Vec<Scored>, RetrieveError> {
            Err(RetrieveError::new(query, "store down"))
        }
    }

    #[test]
    fn hybrid_retriever_in_each_mode() {
        let index = Arc::new(corpus());
        let c = index.chunks()[2].clone();
        let a = index.chunks()[0].clone();
        let vector = FakeVector::new(vec![Scored { chunk: c, score: 0.9 }, Scored { chunk: a, score: 0.7 }]);
        let retriever = HybridRetriever::new(&vector, Arc::clone(&index));
        assert_eq!(retriever.mode(), Retrieval::Hybrid);
        assert_eq!(retriever.weights(), (1.0, 1.0));

        // Keyword side for "torque bolts": a, d, b. Vector side: c, a.
        // a = 1/61 (kw) + 1/62 (vec), c = 1/61, d = 1/62, b = 1/63.
        let hits = retriever.search("torque bolts", 3).unwrap();
        assert_eq!(vector.asked.load(Ordering::SeqCst), 20, "max(3 * 4, 20)");
        assert_eq!(ids(&hits), ["a", "c", "d"]);
        assert!(close(hits[0].score, 1.0 / 61.0 + 1.0 / 62.0));
        assert!(close(hits[1].score, 1.0 / 61.0));
        assert!(close(hits[2].score, 1.0 / 62.0));
        retriever.search("torque bolts", 10).unwrap();
        assert_eq!(vector.asked.load(Ordering::SeqCst), 40, "max(10 * 4, 20)");

        // Keyword weighted 3: a = 3/61 + 1/62, d = 3/62, b = 3/63, c = 1/61.
        let weighted = HybridRetriever::new(&vector, Arc::clone(&index)).try_with_weights(1.0, 3.0).unwrap();
        let hits = weighted.search("torque bolts", 10).unwrap();
        assert_eq!(ids(&hits), ["a", "d", "b", "c"]);
        assert!(close(hits[2].score, 3.0 / 63.0));

        // Vector mode: the store's list and scores as they are, k asked as given.
        let vector_only = HybridRetriever::new(&vector, Arc::clone(&index)).with_mode(Retrieval::Vector);
        let hits = vector_only.search("torque bolts", 1).unwrap();
        assert_eq!(vector.asked.load(Ordering::SeqCst), 1);
        assert_eq!(ids(&hits), ["c"]);
        assert!((hits[0].score - 0.9).abs() < 1e-6);

        // Keyword mode: the BM25 list with its scores, filtered.
        let keyword_only = HybridRetriever::new(&vector, &*index).with_mode(Retrieval::Keyword);
        vector.asked.store(0, Ordering::SeqCst);
        let hits = keyword_only.search("torque bolts", 10).unwrap();
        assert_eq!(vector.asked.load(Ordering::SeqCst), 0, "the vector side is not searched");
        assert_eq!(hits, index.search("torque bolts", 10, &Filter::default()));
        let filtered = keyword_only.with_filter(Filter::parse(&["source=b.md"]).unwrap());
        assert_eq!(ids(&filtered.search("torque bolts", 10).unwrap()), ["b"]);

        // Hybrid with a keyword filter: the keyword side only brings b (1/61); c is first
        // in the vector list (1/61, tie broken by id: b < c), a second (1/62).
        let hybrid_filtered =
            HybridRetriever::new(&vector, Arc::clone(&index)).with_filter(Filter::parse(&["source=b.md"]).unwrap());
        assert_eq!(ids(&hybrid_filtered.search("torque bolts", 10).unwrap()), ["b", "c", "a"]);

        // Errors from the vector side come through; keyword mode does not touch it.
        let failing = HybridRetriever::new(FailingVector, Arc::clone(&index));
        assert!(failing.search("torque", 3).unwrap_err().to_string().contains("store down"));
        let failing = failing.with_mode(Retrieval::Keyword);
        // torque: b (2.2 / 2.1) before a (2.2 / 2.5), both times ln 2.
        let hits = failing.search("torque", 3).unwrap();
        assert_eq!(ids(&hits), ["b", "a"]);
        assert!(close(hits[0].score, 2f64.ln() * 2.2 / 2.1));
        // A side weighted 0 is not searched; the result is still fused (rank scores).
        let failing = HybridRetriever::new(FailingVector, Arc::clone(&index)).try_with_weights(0.0, 1.0).unwrap();
        let hits = failing.search("torque", 3).unwrap();
        assert_eq!(ids(&hits), ["b", "a"]);
        assert!(close(hits[0].score, 1.0 / 61.0) && close(hits[1].score, 1.0 / 62.0));
        assert!(retriever.search("torque", 0).unwrap().is_empty());
    }

    #[test]
    fn hybrid_weights_are_validated() {
        let index = corpus();
        let make = || HybridRetriever::new(FakeVector::new(vec![]), &index);
        for (v, k) in [(0.0, 0.0), (-1.0, 1.0), (1.0, -0.5), (f32::NAN, 1.0), (1.0, f32::INFINITY)] {
            let err = make().try_with_weights(v, k).map(|_| ()).unwrap_err();
            assert!(matches!(err, IndexError::Setting { setting: "retrieval weights", .. }), "{v} {k}: {err}");
        }
        assert_eq!(make().try_with_weights(1.0, 0.0).unwrap().weights(), (1.0, 0.0));
        assert_eq!(make().try_with_weights(0.5, 2.0).unwrap().weights(), (0.5, 2.0));
    }

    #[test]
    fn retrieval_names_parse_print_and_serialize() {
        assert_eq!(Retrieval::default(), Retrieval::Hybrid);
        for mode in Retrieval::ALL {
            assert_eq!(mode.to_string().parse::<Retrieval>().unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
            assert_eq!(serde_json::from_str::<Retrieval>(&format!("\"{mode}\"")).unwrap(), mode);
        }
        assert_eq!(" Keyword ".parse::<Retrieval>().unwrap(), Retrieval::Keyword);
        let err = "bm25".parse::<Retrieval>().unwrap_err().to_string();
        assert!(err.contains("\"bm25\"") && err.contains("vector, keyword or hybrid"), "{err}");
        assert!(serde_json::from_str::<Retrieval>("\"bm25\"").is_err());
    }
}
