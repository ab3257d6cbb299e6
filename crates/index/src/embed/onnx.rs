use std::path::{Path, PathBuf};
use std::sync::Mutex;

use docraft_core::{EmbedError, Embedder, content_hash};
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

use super::{EmbedOptions, check_model_dir, model_err};
use crate::error::panic_message;

/// Files a model directory must hold.
const MODEL_FILES: [&str; 5] =
    ["model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"];

/// A sentence-embedding model in ONNX format, run in process by ONNX Runtime (via fastembed).
pub struct OnnxEmbedder {
    model: Mutex<TextEmbedding>,
    id: String,
    options: EmbedOptions,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder").field("id", &self.id).field("options", &self.options).finish()
    }
}

/// The ONNX Runtime library named by `ORT_DYLIB_PATH`, checked before fastembed touches it
/// (fastembed panics when it is missing).
fn runtime_library() -> Result<PathBuf, EmbedError> {
    check_runtime(std::env::var_os("ORT_DYLIB_PATH"))
}

fn check_runtime(var: Option<std::ffi::OsString>) -> Result<PathBuf, EmbedError> {
    let hint = "scripts/setup.sh fetches ONNX Runtime 1.31.1 and writes ORT_DYLIB_PATH to ~/.cache/docraft/env.sh \
                (source it), or install onnxruntime >= 1.24 and point ORT_DYLIB_PATH at libonnxruntime.so";
    let Some(path) = var.map(PathBuf::from) else {
        return Err(EmbedError::Runtime(format!("ORT_DYLIB_PATH is not set: {hint}")));
    };
    if !path.is_file() {
        return Err(EmbedError::Runtime(format!("ORT_DYLIB_PATH={} does not exist: {hint}", path.display())));
    }
    Ok(path)
}

impl OnnxEmbedder {
    /// Loads the model in `dir`: `model.onnx` plus its tokenizer files (`tokenizer.json`,
    /// `config.json`, `special_tokens_map.json`, `tokenizer_config.json`). Any BERT-style
    /// sentence-embedding ONNX with mean pooling works.
    ///
    /// # Errors
    /// [`EmbedError::Model`] naming a missing or unreadable file, [`EmbedError::Runtime`] when
    /// ONNX Runtime is missing (with how to get it) or refuses the model.
    pub fn from_dir(dir: impl AsRef<Path>, options: EmbedOptions) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        check_model_dir(dir, &MODEL_FILES)?;
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| model_err(&dir.join(f), e.to_string()));
        let onnx = read("model.onnx")?;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let runtime = runtime_library()?;
        let name = dir.file_name().map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
        let id = format!("onnx:{name}:{}", content_hash(&onnx).get(..16).unwrap_or_default());
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let mut init = InitOptionsUserDefined::new().with_max_length(options.max_tokens.max(1));
        if let Some(n) = options.threads {
            init = init.with_intra_threads(n.max(1));
        }
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            TextEmbedding::try_new_from_user_defined(model, init)
        }));
        let model = match loaded {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(model_err(dir, format!("ONNX Runtime refused the model: {e}"))),
            Err(p) => {
                return Err(EmbedError::Runtime(format!(
                    "ONNX Runtime could not be loaded from {} (needs version >= 1.24): {}",
                    runtime.display(),
                    panic_message(p.as_ref())
                )));
            }
        };
        Ok(Self { model: Mutex::new(model), id, options })
    }

    /// The settings in use.
    #[must_use]
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }
}

impl Embedder for OnnxEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut model =
            self.model.lock().map_err(|_| EmbedError::Runtime("the model failed in an earlier call".into()))?;
        super::by_length(texts, self.options.batch_size, |batch| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.embed(batch, Some(batch.len()))))
                .map_err(|p| EmbedError::Runtime(format!("ONNX Runtime failed: {}", panic_message(p.as_ref()))))?
                .map_err(|e| EmbedError::Runtime(e.to_string()))
        })
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_runtime_says_how_to_fix_it() {
        let unset = check_runtime(None).unwrap_err().to_string();
        assert!(unset.contains("ORT_DYLIB_PATH is not set") && unset.contains("scripts/setup.sh"), "{unset}");
        let gone = check_runtime(Some("/no/such/libonnxruntime.so".into())).unwrap_err().to_string();
        assert!(gone.contains("/no/such/libonnxruntime.so") && gone.contains("does not exist"), "{gone}");
    }
}
