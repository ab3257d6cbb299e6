//! The USE-m3 embedder (multilingual, `--backend use-m3`) against reference vectors and token ids from the original
//! graph, SentencePiece op included, run by Python onnxruntime + onnxruntime-extensions
//! (scripts/use_m3/reference.py); Spanish retrieval and English/Spanish translations; its
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use docraft_core::{EmbedError, Embedder};
use docraft_index::{EmbedOptions, UseM3Embedder};
use serde_json::Value;

fn model_dir() -> Result<PathBuf> {
    let dir = docraft_index::use_m3_model_dir();
    ensure!(dir.join("model.onnx").exists(), "{} is missing: run scripts/setup.sh first", dir.display());
    Ok(dir)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn reference() -> Result<Value> {
    serde_json::from_str(include_str!("data/use_m3_reference.json")).context("reference file")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect()).unwrap_or_default()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).filter_map(|x| u32::try_from(x).ok()).collect())
        .unwrap_or_default()
}

fn options(batch_size: usize) -> EmbedOptions {
    EmbedOptions { batch_size, threads: Some(1), max_tokens: 256 }
}

/// Each text's vector against the original graph on that text alone, whatever the batch size:
/// the graph quantizes its activations dynamically over its whole input, so the original graph
/// gives a text run with others another vector (the reference's `batch_vector`, checked to
/// differ), and the embedder runs every text alone to give the same vector in any batch.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn matches_the_original_graph_on_each_text_in_any_batch() -> Result<()> {
    let reference = reference()?;
    let cases = reference["embeddings"].as_array().context("embeddings")?;
    let texts: Vec<&str> = cases.iter().filter_map(|c| c["text"].as_str()).collect();
    let alone = UseM3Embedder::from_dir(model_dir()?, options(1))?;
    let batched = UseM3Embedder::from_dir(model_dir()?, options(texts.len()))?;
    let (va, vb) = (alone.embed(&texts)?, batched.embed(&texts)?);
    assert_eq!((va.len(), vb.len()), (texts.len(), texts.len()));
    for ((case, a), b) in cases.iter().zip(&va).zip(&vb) {
        let text = case["text"].as_str().unwrap_or_default();
        assert_eq!(alone.token_ids(text)?, ids(&case["ids"]), "ids of {text:?}");
        assert_eq!(a.len(), 512);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalized, got {norm}");
        let ca = cosine(a, &floats(&case["vector"]));
        eprintln!("alone {ca:.6}  {:?}", text.get(..40).unwrap_or(text));
        assert!(ca >= 0.999, "cosine {ca} against the original graph for {text:?}");
        assert_eq!(a, b, "the same vector in a batch of {} as alone for {text:?}", texts.len());
    }
    // The premise: the original graph itself moves a text's vector when run in a batch.
    let moved = cases.iter().any(|c| cosine(&floats(&c["vector"]), &floats(&c["batch_vector"])) < 0.999_99);
    assert!(moved, "the original graph's batch vectors equal its lone ones: batching could be allowed");
    assert!(alone.embed(&[])?.is_empty());
    assert!(alone.model_id().starts_with("use-m3:use-m3:75fbef2232986c48-"), "{}", alone.model_id());
    assert_eq!(alone.model_id(), batched.model_id(), "the batch size is not part of the model");
    Ok(())
}

/// The tokenizer.json made from the op's SentencePiece model gives the op's ids: whitespace
/// runs, control characters, NFKC forms, CJK, unknown characters, the model's user-defined
/// symbols and its control pieces written as text.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn tokenizes_like_the_sentencepiece_op() -> Result<()> {
    let reference = reference()?;
    let embedder = UseM3Embedder::from_dir(model_dir()?, options(8))?;
    let cases = reference["tokenization"].as_array().context("tokenization")?;
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap_or_default();
        assert_eq!(embedder.token_ids(text)?, ids(&case["ids"]), "ids of {text:?}");
    }
    Ok(())
}

/// A Spanish question finds its Spanish passage first, and its English translation next,
/// before unrelated Spanish and English passages.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_spanish_query_ranks_its_passage_first() -> Result<()> {
    let reference = reference()?;
    let cases = reference["embeddings"].as_array().context("embeddings")?;
    let by_topic = |topic: &str, lang: &str| -> Option<&str> {
        cases.iter().find(|c| c["topic"] == topic && c["lang"] == lang).and_then(|c| c["text"].as_str())
    };
    let query = by_topic("vacation-query", "es").context("query")?;
    let passages: Vec<&str> = cases
        .iter()
        .filter(|c| c["topic"] != "vacation-query" && c["topic"] != "greeting")
        .filter_map(|c| c["text"].as_str())
        .collect();
    let embedder = UseM3Embedder::from_dir(model_dir()?, EmbedOptions::default())?;
    let q = embedder.embed(&[query])?.remove(0);
    let vectors = embedder.embed(&passages)?;
    let mut ranked: Vec<(f32, &str)> = vectors.iter().map(|v| cosine(&q, v)).zip(passages.iter().copied()).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, text) in &ranked {
        eprintln!("{score:.3}  {:?}", text.get(..50).unwrap_or(text));
    }
    assert_eq!(ranked[0].1, by_topic("vacation", "es").context("es passage")?, "{ranked:?}");
    assert_eq!(ranked[1].1, by_topic("vacation", "en").context("en passage")?, "{ranked:?}");
    assert!(ranked[0].0 - ranked[2].0 > 0.1, "a clear margin over unrelated passages: {ranked:?}");
    Ok(())
}

/// An English sentence and its Spanish translation are closer to each other than either is to
/// any other sentence of the set.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn english_and_spanish_translations_are_close() -> Result<()> {
    let reference = reference()?;
    let cases = reference["embeddings"].as_array().context("embeddings")?;
    let texts: Vec<&str> = cases.iter().filter_map(|c| c["text"].as_str()).collect();
    let embedder = UseM3Embedder::from_dir(model_dir()?, EmbedOptions::default())?;
    let vectors = embedder.embed(&texts)?;
    let mut pairs = 0;
    for (i, en) in cases.iter().enumerate().filter(|(_, c)| c["lang"] == "en") {
        let Some(j) = cases.iter().position(|c| c["lang"] == "es" && c["topic"] == en["topic"]) else { continue };
        pairs += 1;
        let pair = cosine(&vectors[i], &vectors[j]);
        let nearest_other = (0..texts.len())
            .filter(|&k| k != i && k != j && cases[k]["topic"] != en["topic"])
            .map(|k| cosine(&vectors[i], &vectors[k]).max(cosine(&vectors[j], &vectors[k])))
            .fold(f32::MIN, f32::max);
        eprintln!("translation {pair:.3}, nearest other {nearest_other:.3}: {:?}", texts[i]);
        assert!(pair >= 0.7, "translation pair at {pair}: {:?} / {:?}", texts[i], texts[j]);
        assert!(pair > nearest_other + 0.1, "pair {pair} vs another sentence {nearest_other}: {:?}", texts[i]);
    }
    assert!(pairs >= 3, "{pairs} translation pairs in the reference");
    Ok(())
}

/// Texts longer than `max_tokens` are cut at the end, `</s>` kept; a cut text embeds like its
/// first tokens and unlike its full self.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn long_texts_are_truncated_to_max_tokens() -> Result<()> {
    let reference = reference()?;
    let long = reference["embeddings"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["topic"] == "maintenance"))
        .and_then(|c| c["text"].as_str())
        .context("long text")?;
    let full = UseM3Embedder::from_dir(model_dir()?, options(1))?;
    let short = UseM3Embedder::from_dir(model_dir()?, EmbedOptions { max_tokens: 16, ..options(1) })?;
    let (ids_full, ids_short) = (full.token_ids(long)?, short.token_ids(long)?);
    assert!(ids_full.len() > 100);
    assert_eq!(ids_short.len(), 16);
    assert_eq!((ids_short[0], ids_short[15]), (1, 2), "<s> ... </s>");
    assert_eq!(ids_short[1..15], ids_full[1..15]);
    let v_short = short.embed(&[long])?.remove(0);
    let v_full = full.embed(&[long])?.remove(0);
    assert!(cosine(&v_short, &v_full) < 0.95, "the cut text is a different text");
    Ok(())
}

#[test]
fn a_missing_model_names_the_path_and_setup() {
    let err = UseM3Embedder::from_dir("/no/such/use-m3", EmbedOptions::default()).unwrap_err();
    let text = err.to_string();
    if cfg!(feature = "fastembed") {
        assert!(matches!(err, EmbedError::Model { .. }), "{err}");
        assert!(text.contains("/no/such/use-m3") && text.contains("scripts/setup.sh"), "{text}");
    } else {
        assert!(matches!(err, EmbedError::NotCompiled { .. }), "{err}");
    }
}
