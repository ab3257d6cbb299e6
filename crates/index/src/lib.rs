//! Index: local embeddings for docraft.
//!
//! ```text
//! chunks.jsonl ──Embedder (fastembed ONNX, in process)──> vectors ──> (HNSW store: issue #3, next)
//! ```
//!
//! [`OnnxEmbedder`] loads a BERT-style sentence-embedding model from a directory (an ONNX file
//! and its tokenizer files, e.g. all-MiniLM-L6-v2 as `scripts/setup.sh` fetches it) and runs it
//! with ONNX Runtime, which is loaded at run time from `ORT_DYLIB_PATH`. Texts are embedded in
//! batches of similar length (little padding) and come back in input order, mean-pooled and
//! L2-normalized. A missing model file or runtime library is a typed
//! [`docraft_core::EmbedError`] that says how to fix it, never a panic. Built without the
//! `fastembed` feature, the same type exists and returns [`docraft_core::EmbedError::NotCompiled`].

mod embed;

pub use embed::{OnnxEmbedder, OnnxOptions};
