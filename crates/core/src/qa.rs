//! Question/answer records: what `qa-gen` writes and `raft`, `train` and exports read.

use serde::{Deserialize, Serialize};

use crate::{Chunk, ChunkId, DocId, PageRange, Span};

/// Where a record's text comes from: the chunk, its document and source path, pages and byte span
/// (for citations) and heading path. Records flatten it, so its fields sit at their top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// The chunk's document.
    pub doc_id: DocId,
    /// The document's source path.
    pub source: String,
    /// Pages of the chunk, for paged formats.
    pub pages: Option<PageRange>,
    /// Byte span of the chunk in its document's text.
    pub span: Span,
    /// Heading path of the chunk.
    #[serde(default)]
    pub headings: Vec<String>,
}

impl ChunkRef {
    /// The reference to `chunk`.
    #[must_use]
    pub fn of(chunk: &Chunk) -> Self {
        Self {
            chunk_id: chunk.id.clone(),
            doc_id: chunk.doc_id.clone(),
            source: chunk.source.clone(),
            pages: chunk.pages,
            span: chunk.span,
            headings: chunk.headings.clone(),
        }
    }
}

/// A question about one chunk and its answer grounded in that chunk. One line of `qa.jsonl`.
///
/// Every pair carries its lineage: the chunk and document it came from (with pages and
/// byte span for citations), and the model and prompt that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaPair {
    /// Stable id: derived from the generation key and the pair's position in its answer.
    pub id: String,
    /// The chunk the pair is about, with its document, pages, span and headings.
    #[serde(flatten)]
    pub chunk: ChunkRef,
    /// The question.
    pub question: String,
    /// The answer, grounded in the chunk.
    pub answer: String,
    /// Language of the pair (ISO 639-1, e.g. `en`, `es`).
    pub lang: String,
    /// The model that wrote it.
    pub model: String,
    /// The prompt that asked for it (`name@hash`).
    pub prompt: String,
    /// The generation key: chunk, prompt, model and settings hashed together. A resumed run
    /// skips chunks whose key is already done.
    pub gen_key: String,
    /// A second model's scores, when a judge step kept the pair (absent otherwise, and left
    /// out of the JSON then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeScores>,
}

/// A judge model's verdict on a question/answer pair: 1 (worst) to 5 (best) for faithfulness
/// (the answer says only what the chunk says) and usefulness (a reader of the documents would
/// ask it, and the answer helps), with the judge's short reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeScores {
    /// Faithfulness to the chunk, 1..=5.
    pub faithfulness: u8,
    /// Usefulness of the pair, 1..=5.
    pub usefulness: u8,
    /// The judge's reason, in a sentence.
    pub reason: String,
    /// The judge model.
    pub model: String,
    /// The judge prompt (`name@hash`).
    pub prompt: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunk_fields_stay_at_the_top_level_of_the_json() {
        let doc_id = DocId::from_content(b"x");
        let chunk = Chunk {
            id: ChunkId::new(&doc_id, 0, 4),
            doc_id,
            source: "a.pdf".into(),
            text: "Hola".into(),
            span: Span::new(0, 4),
            pages: Some(PageRange::new(2, 2)),
            headings: vec!["Intro".into()],
            chunk_index: 0,
            chunk_count: 1,
            metadata: Default::default(),
        };
        let pair = QaPair {
            id: "p".into(),
            chunk: ChunkRef::of(&chunk),
            question: "q".into(),
            answer: "a".into(),
            lang: "es".into(),
            model: "m".into(),
            prompt: "p".into(),
            gen_key: "k".into(),
            judge: None,
        };
        let v = serde_json::to_value(&pair).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["chunk_id", "doc_id", "source", "pages", "span", "headings", "question"] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"chunk"));
        assert!(!keys.contains(&"judge"), "no judge field without a judge");
        assert_eq!(serde_json::from_value::<QaPair>(v).unwrap(), pair);
        let judged = QaPair {
            judge: Some(JudgeScores {
                faithfulness: 5,
                usefulness: 4,
                reason: "ok".into(),
                model: "j".into(),
                prompt: "judge@x".into(),
            }),
            ..pair
        };
        let v = serde_json::to_value(&judged).unwrap();
        assert_eq!(v["judge"]["usefulness"], 4);
        assert_eq!(serde_json::from_value::<QaPair>(v).unwrap(), judged);
    }
}
