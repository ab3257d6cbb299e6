//! Choosing a record's context: the oracle with probability P, and distractors drawn at
//! random or from the question's nearest neighbours ("hard"), never the oracle itself, a chunk
//! overlapping it, a near-duplicate of it, or a chunk containing the question's answer.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use docraft_core::{Chunk, DocRole, QaPair, Retriever};

use crate::cot::normalize;
use docraft_core::rng::SplitMix64;

/// Word-trigram Jaccard similarity from which a chunk counts as a near-duplicate of the oracle.
pub const NEAR_DUPLICATE: f64 = 0.5;
/// Extra neighbours asked of the retriever, to make up for the ones excluded.
const HARD_SLACK: usize = 8;
/// How much deeper each further search for hard distractors goes...
const HARD_DEEPER: usize = 4;
/// ... up to this many neighbours (then random distractors fill in).
const MAX_HARD_DEPTH: usize = 1024;
/// Random draws tried before falling back to a scan of every chunk.
const DRAWS_PER_SLOT: usize = 32;

/// What a context asks for: `k` distractors, the oracle with probability `p`, and a share
/// `hard_share` of hard distractors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Distractors.
    pub k: usize,
    /// Probability of the oracle.
    pub p: f64,
    /// Share of hard distractors.
    pub hard_share: f32,
}

/// One chosen document: the chunk's index in the pool, its role, and the retriever score.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index into the chunks the pool was made from.
    pub index: usize,
    /// Oracle, random or hard.
    pub role: DocRole,
    /// Similarity to the question (hard distractors).
    pub score: Option<f32>,
}

/// The chunks distractors are drawn from, with lazily computed comparison data.
pub struct Pool<'a> {
    chunks: &'a [Chunk],
    by_id: HashMap<&'a str, usize>,
    /// Split of each chunk's document (0 is the training split).
    split: Vec<usize>,
    normalized: Vec<OnceLock<String>>,
    shingles: Vec<OnceLock<HashSet<u64>>>,
}

impl<'a> Pool<'a> {
    /// A pool over `chunks`; `split_of` gives each chunk's split (0 = training).
    #[must_use]
    pub fn new(chunks: &'a [Chunk], split_of: impl Fn(&Chunk) -> usize) -> Self {
        Self {
            by_id: chunks.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect(),
            split: chunks.iter().map(split_of).collect(),
            normalized: chunks.iter().map(|_| OnceLock::new()).collect(),
            shingles: chunks.iter().map(|_| OnceLock::new()).collect(),
            chunks,
        }
    }

    /// The chunks.
    #[must_use]
    pub fn chunks(&self) -> &'a [Chunk] {
        self.chunks
    }

    /// Index of a chunk id.
    #[must_use]
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The split of chunk `i`.
    #[must_use]
    pub fn split(&self, i: usize) -> usize {
        self.split.get(i).copied().unwrap_or(0)
    }

    fn normalized(&self, i: usize) -> &str {
        self.normalized[i].get_or_init(|| normalize(&self.chunks[i].text))
    }

    fn shingles(&self, i: usize) -> &HashSet<u64> {
        self.shingles[i].get_or_init(|| shingles(self.normalized(i)))
    }

    /// Whether chunk `c` may be a distractor for a question about chunk `oracle` with
    /// answer `answer` (normalized): not the oracle, not overlapping it in its document,
    /// not a near-duplicate, not containing the answer, and (so no text of a held-out
    /// document reaches training) from the record's own split or the training split.
    #[must_use]
    pub fn eligible(&self, c: usize, oracle: usize, answer: &str) -> bool {
        let (a, b) = (&self.chunks[c], &self.chunks[oracle]);
        if c == oracle || a.id == b.id {
            return false;
        }
        let split = self.split(c);
        if split != 0 && split != self.split(oracle) {
            return false;
        }
        if a.doc_id == b.doc_id && a.span.start < b.span.end && b.span.start < a.span.end {
            return false;
        }
        if answer.chars().count() >= 4 && self.normalized(c).contains(answer) {
            return false;
        }
        jaccard(self.shingles(c), self.shingles(oracle)) < NEAR_DUPLICATE
    }

    /// The context of one record: `k` distractors, plus the oracle when a draw falls below
    /// `p` (otherwise one more distractor takes its place, as in the reference), shuffled.
    /// A share `hard_share` of the distractors comes from `retriever` when given. Fewer are
    /// returned when too few chunks are eligible.
    ///
    /// # Errors
    /// The retriever's error.
    pub fn choose(
        &self,
        question: &QaPair,
        oracle: usize,
        draw: Draw,
        retriever: Option<&dyn Retriever>,
        rng: &mut SplitMix64,
    ) -> Result<Vec<Choice>, docraft_core::RetrieveError> {
        let Draw { k, p, hard_share } = draw;
        let with_oracle = rng.next_f64() < p;
        let want = k + usize::from(!with_oracle);
        let answer = normalize(&question.answer);
        let hard_wanted = f64::from(hard_share) * want as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let mut n_hard = hard_wanted.floor() as usize;
        if rng.next_f64() < hard_wanted.fract() {
            n_hard += 1;
        }
        let mut chosen: Vec<Choice> = Vec::with_capacity(want + 1);
        let mut taken: HashSet<usize> = HashSet::new();
        let n = self.chunks.len();
        if let (Some(r), true) = (retriever, n_hard > 0) {
            // The nearest neighbours first; when too many of them are not eligible (the
            // oracle's own neighbourhood, near-duplicates, chunks holding the answer), a deeper
            // search before any random fill-in.
            // (The index may hold more chunks than the pool, e.g. with a chunk limit: hits
            // outside the pool are skipped, so the search goes on until the index runs out.)
            let mut depth = want + HARD_SLACK + 1;
            let mut seen: HashSet<usize> = HashSet::new();
            loop {
                let hits = r.search(&question.question, depth)?;
                let exhausted = hits.len() < depth;
                for hit in hits {
                    if chosen.len() == n_hard {
                        break;
                    }
                    let Some(i) = self.index_of(hit.chunk.id.as_str()) else { continue };
                    if seen.insert(i) && self.eligible(i, oracle, &answer) {
                        taken.insert(i);
                        chosen.push(Choice { index: i, role: DocRole::Hard, score: Some(hit.score) });
                    }
                }
                if chosen.len() == n_hard || exhausted || depth >= MAX_HARD_DEPTH {
                    break;
                }
                depth = depth.saturating_mul(HARD_DEEPER).min(MAX_HARD_DEPTH);
            }
        }
        let mut draws = 0;
        while chosen.len() < want && draws < DRAWS_PER_SLOT * want && n > 0 {
            draws += 1;
            let i = rng.below(n);
            if !taken.contains(&i) && self.eligible(i, oracle, &answer) {
                taken.insert(i);
                chosen.push(Choice { index: i, role: DocRole::Random, score: None });
            }
        }
        if chosen.len() < want {
            // Few eligible chunks: scan them all, in a seeded order.
            let mut rest: Vec<usize> =
                (0..n).filter(|i| !taken.contains(i) && self.eligible(*i, oracle, &answer)).collect();
            rng.shuffle(&mut rest);
            for i in rest.into_iter().take(want - chosen.len()) {
                chosen.push(Choice { index: i, role: DocRole::Random, score: None });
            }
        }
        if with_oracle {
            chosen.push(Choice { index: oracle, role: DocRole::Oracle, score: None });
        }
        rng.shuffle(&mut chosen);
        Ok(chosen)
    }
}

fn shingles(normalized: &str) -> HashSet<u64> {
    let words: Vec<&str> = normalized.split(' ').collect();
    let hash = |s: &[&str]| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    if words.len() < 3 {
        return std::iter::once(hash(&words)).collect();
    }
    words.windows(3).map(hash).collect()
}

fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    #[allow(clippy::cast_precision_loss)]
    if union == 0 { 0.0 } else { inter as f64 / union as f64 }
}

#[cfg(test)]
mod tests {
    use docraft_core::{ChunkId, ChunkRef, DocId, RetrieveError, Scored, Span};

    use super::*;

    fn chunk(i: usize, text: &str) -> Chunk {
        let source = format!("doc{i}.md");
        Chunk {
            id: ChunkId::from_string(format!("c{i}")),
            doc_id: DocId::from_content(source.as_bytes()),
            source,
            text: text.into(),
            span: Span::new(0, text.len()),
            pages: None,
            headings: vec![],
            chunk_index: 0,
            chunk_count: 1,
            metadata: std::collections::BTreeMap::new(),
        }
    }

    /// Returns the chunks in their order, whatever the query.
    struct InOrder(Vec<Chunk>);

    impl Retriever for InOrder {
        fn search(&self, _query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
            Ok(self.0.iter().take(k).map(|c| Scored { chunk: c.clone(), score: 1.0 }).collect())
        }
    }

    /// The nearest neighbours all hold the answer (not eligible): a deeper search finds hard
    /// distractors further down instead of falling back to random ones.
    #[test]
    fn hard_distractors_are_searched_deeper_when_the_nearest_are_not_eligible() {
        let mut chunks = vec![chunk(0, "The archive is kept in room B of the north building, locked at night.")];
        for i in 1..=20 {
            chunks.push(chunk(i, &format!("Note {i}: the spare keys are in room B, ask the porter for item {i}.")));
        }
        for i in 21..=30 {
            chunks.push(chunk(i, &format!("Visitor rule {i}: badges are collected at the gate before leaving {i}.")));
        }
        let pool = Pool::new(&chunks, |_| 0);
        let question = QaPair {
            id: "q".into(),
            chunk: ChunkRef::of(&chunks[0]),
            question: "Where is the archive kept?".into(),
            answer: "room B".into(),
            lang: "en".into(),
            model: "test".into(),
            prompt: "test".into(),
            gen_key: "k".into(),
            judge: None,
        };
        let retriever = InOrder(chunks[1..].to_vec());
        let draw = Draw { k: 3, p: 1.0, hard_share: 1.0 };
        let chosen = pool.choose(&question, 0, draw, Some(&retriever), &mut SplitMix64::new(1)).unwrap();
        let distractors: Vec<&Choice> = chosen.iter().filter(|c| c.role != DocRole::Oracle).collect();
        assert_eq!(distractors.len(), 3);
        for c in distractors {
            assert_eq!(c.role, DocRole::Hard, "{c:?}");
            assert!(c.index > 20, "chunk {} holds the answer", c.index);
        }
    }
}
