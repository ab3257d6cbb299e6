use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use docraft_core::{EmbedError, Embedder, content_hash};
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use ort::environment::Environment;

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

/// How to get ONNX Runtime, for the errors that find none.
const RUNTIME_HINT: &str = "scripts/setup.sh fetches ONNX Runtime 1.31.1 into the models folder, or install \
                            onnxruntime >= 1.24 and point ORT_DYLIB_PATH at libonnxruntime.so";

/// The ONNX Runtime library to load: `ORT_DYLIB_PATH` when set, else the newest
/// `onnxruntime-*/libonnxruntime.so*` under [`docraft_core::models_dir`] (where
/// `scripts/setup.sh` puts it). Checked before fastembed touches it (fastembed panics when it
/// is missing).
fn runtime_library() -> Result<PathBuf, EmbedError> {
    find_runtime(std::env::var_os("ORT_DYLIB_PATH"), &docraft_core::models_dir())
}

/// [`runtime_library`] with the variable and the models folder given.
fn find_runtime(var: Option<OsString>, models: &Path) -> Result<PathBuf, EmbedError> {
    if let Some(path) = var.filter(|v| !v.is_empty()).map(PathBuf::from) {
        if !path.is_file() {
            return Err(EmbedError::Runtime(format!(
                "ORT_DYLIB_PATH={} does not exist: {RUNTIME_HINT}",
                path.display()
            )));
        }
        return Ok(path);
    }
    newest_runtime(models).ok_or_else(|| {
        EmbedError::Runtime(format!(
            "ONNX Runtime not found: ORT_DYLIB_PATH is not set and {} holds no onnxruntime-*/{}onnxruntime.{}*: \
             {RUNTIME_HINT}",
            models.display(),
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX.trim_start_matches('.'),
        ))
    })
}

/// The library in the `onnxruntime-<version>` folder of `models` with the highest version that
/// holds one.
fn newest_runtime(models: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(models)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("onnxruntime-")?;
            let version: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            Some((version, library_in(&entry.path())?))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// `libonnxruntime.so*` (or the platform's name for it) in `dir`; the longest name when several
/// (`libonnxruntime.so.1.31.1` over its `libonnxruntime.so` link).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{}onnxruntime.", std::env::consts::DLL_PREFIX);
    let suffix = std::env::consts::DLL_SUFFIX.trim_start_matches('.');
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.contains(suffix))
        })
        .max_by_key(|p| (p.as_os_str().len(), p.clone()))
}

/// The process's ONNX Runtime environment and the library it runs on, shared by every
/// embedder that runs ONNX Runtime (ort allows one environment per process, so fastembed's
/// models and [`super::UseM3Embedder`] must share it). The library ([`runtime_library`]) is
/// loaded on first use.
pub(super) fn environment() -> Result<(Environment, PathBuf), EmbedError> {
    static SHARED: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = shared.as_ref() {
        return Ok(env.clone());
    }
    let runtime = runtime_library()?;
    let env = build_environment(&runtime)?;
    *shared = Some((env.clone(), runtime.clone()));
    Ok((env, runtime))
}

/// Loads the ONNX Runtime library at `path` into ort and creates the environment.
fn build_environment(path: &Path) -> Result<Environment, EmbedError> {
    let built = std::panic::catch_unwind(|| ort::init_from(path).map(|b| b.with_name("docraft").build()));
    match built {
        Ok(Ok(Ok(env))) => Ok(env),
        Ok(Ok(Err(e))) => Err(EmbedError::Runtime(format!("ONNX Runtime failed to start: {e}"))),
        Ok(Err(e)) => Err(EmbedError::Runtime(format!("ONNX Runtime could not be loaded: {e}: {RUNTIME_HINT}"))),
        Err(p) => Err(EmbedError::Runtime(format!(
            "ONNX Runtime could not be loaded from {} (needs version >= 1.24): {}",
            path.display(),
            panic_message(p.as_ref())
        ))),
    }
}

impl OnnxEmbedder {
    /// Loads the model in `dir`: `model.onnx` plus its tokenizer files (`tokenizer.json`,
    /// `config.json`, `special_tokens_map.json`, `tokenizer_config.json`). Any BERT-style
    /// sentence-embedding ONNX with mean pooling works. ONNX Runtime is loaded from
    /// `ORT_DYLIB_PATH` when set, else from the newest `onnxruntime-*/libonnxruntime.so*` under
    /// [`docraft_core::models_dir`] (where `scripts/setup.sh` puts it).
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
        let (env, runtime) = environment()?;
        let name = dir.file_name().map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
        let id = format!("onnx:{name}:{}", content_hash(&onnx).get(..16).unwrap_or_default());
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let mut init = InitOptionsUserDefined::new().with_max_length(options.max_tokens.max(1)).with_environment(env);
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
    fn missing_runtime_says_where_it_looked_and_how_to_fix_it() {
        let empty = tempfile::tempdir().unwrap();
        let unset = find_runtime(None, empty.path()).unwrap_err().to_string();
        assert!(
            unset.contains("ORT_DYLIB_PATH is not set")
                && unset.contains(&empty.path().display().to_string())
                && unset.contains("onnxruntime-*/libonnxruntime.so*")
                && unset.contains("scripts/setup.sh"),
            "{unset}"
        );
        let gone = find_runtime(Some("/no/such/libonnxruntime.so".into()), empty.path()).unwrap_err().to_string();
        assert!(gone.contains("/no/such/libonnxruntime.so") && gone.contains("does not exist"), "{gone}");
    }

    #[test]
    fn the_variable_overrides_and_else_the_newest_version_in_the_models_folder_is_found() {
        let models = tempfile::tempdir().unwrap();
        let put = |dir: &str, file: &str| {
            let d = models.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), b"").unwrap();
            d.join(file)
        };
        put("onnxruntime-1.9.0", "libonnxruntime.so.1.9.0");
        put("onnxruntime-1.24.2", "libonnxruntime_providers_shared.so");
        let newest = put("onnxruntime-1.24.2", "libonnxruntime.so.1.24.2");
        put("onnxruntime-1.24.2", "libonnxruntime.so");
        put("onnxruntime-1.31.1", "README.txt");
        put("all-minilm-l6-v2", "libonnxruntime.so.9.9.9");
        // 1.31.1 holds no library, 1.24.2 beats 1.9.0 numerically, the versioned name wins.
        assert_eq!(find_runtime(None, models.path()).unwrap(), newest);
        assert_eq!(find_runtime(Some(OsString::new()), models.path()).unwrap(), newest, "empty means unset");
        let other = put("elsewhere", "libonnxruntime.so");
        assert_eq!(find_runtime(Some(other.clone().into()), models.path()).unwrap(), other);
    }
}
