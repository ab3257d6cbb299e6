//! The ONNX embedder against reference vectors from an independent implementation (Python
//! onnxruntime + tokenizers with mean pooling: scripts/embed_reference.py), and its errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use docraft_core::{EmbedError, Embedder};
use docraft_index::{EmbedOptions, OnnxEmbedder};

fn model_dir() -> Result<PathBuf> {
    let dir = docraft_index::minilm_model_dir();
    ensure!(dir.join("model.onnx").exists(), "{} is missing: run scripts/setup.sh first", dir.display());
    Ok(dir)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn matches_the_independent_reference_in_input_order() -> Result<()> {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/minilm_reference.json")).context("reference file")?;
    let cases = reference["embeddings"].as_array().context("embeddings")?;
    let texts: Vec<&str> = cases.iter().filter_map(|c| c["text"].as_str()).collect();
    // Batch size 2 with texts of different lengths: batches are formed by length, yet the
    // vectors must come back in input order.
    let embedder =
        OnnxEmbedder::from_dir(model_dir()?, EmbedOptions { batch_size: 2, threads: Some(1), max_tokens: 256 })?;
    let vectors = embedder.embed(&texts)?;
    assert_eq!(vectors.len(), texts.len());
    for (case, v) in cases.iter().zip(&vectors) {
        let want: Vec<f32> =
            case["vector"].as_array().context("vector")?.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
        assert_eq!(v.len(), 384);
        let c = cosine(v, &want);
        assert!(c >= 0.999, "cosine {c} for {:?}", case["text"]);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "L2-normalized, got {norm}");
    }
    // A Spanish question is closer to the Spanish sentence on the same subject than to the others.
    assert!(cosine(&vectors[3], &vectors[1]) > cosine(&vectors[3], &vectors[2]));
    assert!(embedder.model_id().starts_with("onnx:all-minilm-l6-v2:"));
    assert!(embedder.embed(&[])?.is_empty());
    Ok(())
}

#[test]
fn bad_model_directories_are_typed_errors() -> Result<()> {
    let err = OnnxEmbedder::from_dir("/no/such/model", EmbedOptions::default()).unwrap_err();
    assert!(matches!(err, EmbedError::Model { .. }) && err.to_string().contains("/no/such/model"), "{err}");

    let dir = std::env::temp_dir().join(format!("docraft-incomplete-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("tokenizer.json"), "{}")?;
    let err = OnnxEmbedder::from_dir(&dir, EmbedOptions::default()).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("missing model.onnx, config.json"), "{err}");
    Ok(())
}

/// The candle backend gives the same vectors as the reference and as ONNX Runtime, on short
/// sentences and on long paragraphs in a batch with padding.
#[cfg(feature = "candle")]
#[test]
#[ignore = "needs scripts/setup.sh"]
fn candle_matches_the_reference_and_onnx() -> Result<()> {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/minilm_reference.json")).context("reference file")?;
    let cases = reference["embeddings"].as_array().context("embeddings")?;
    let mut texts: Vec<String> = cases.iter().filter_map(|c| c["text"].as_str().map(str::to_string)).collect();
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/docs/guia-es.md"))?;
    let notes = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/docs/release-notes.md"))?;
    texts.extend([guide, notes]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let options = EmbedOptions { batch_size: 3, threads: Some(2), max_tokens: 256 };
    let candle = docraft_index::CandleEmbedder::from_dir(model_dir()?, options.clone())?.embed(&refs)?;
    let onnx = OnnxEmbedder::from_dir(model_dir()?, options)?.embed(&refs)?;
    for (case, v) in cases.iter().zip(&candle) {
        let want: Vec<f32> =
            case["vector"].as_array().context("vector")?.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
        let c = cosine(v, &want);
        assert!(c >= 0.999, "candle vs reference: cosine {c} for {:?}", case["text"]);
    }
    for ((a, b), t) in candle.iter().zip(&onnx).zip(&refs) {
        let c = cosine(a, b);
        assert!(c >= 0.999, "candle vs onnx: cosine {c} for {:?}", t.get(..40));
    }
    let err =
        docraft_index::CandleEmbedder::from_dir("/no/such/model", EmbedOptions::default()).unwrap_err().to_string();
    assert!(err.contains("/no/such/model"), "{err}");
    Ok(())
}
