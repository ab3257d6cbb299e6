//! Helpers shared by the CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's fixtures directory.
#[allow(dead_code)] // not every test binary needs it
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Runs the `docraft` binary.
pub fn docraft(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_docraft")).args(args).output()?)
}

/// A path as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Variables that tell the binary where models and ONNX Runtime are; tests that check the
/// defaults remove them from the child's environment.
#[allow(dead_code)] // not every test binary needs it
pub const MODEL_VARS: [&str; 3] = ["DOCRAFT_MODELS", "DOCRAFT_CACHE", "ORT_DYLIB_PATH"];

/// Fails, saying to run scripts/setup.sh, unless the models that setup fetches are where the
/// binary looks for them ([`docraft_core::models_dir`]). Every model-backed test (ignored by
/// default) calls it first: run with `--include-ignored` on a machine without the models, it
/// fails with what to do instead of somewhere deep in a run.
#[allow(dead_code)] // not every test binary runs models
pub fn require_models() {
    let models = docraft_core::models_dir();
    for rel in [
        "use-m3/model.onnx",
        "use-m3/tokenizer.json",
        "all-minilm-l6-v2/model.onnx",
        "all-minilm-l6-v2/model.safetensors",
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    ] {
        let p = models.join(rel);
        assert!(p.is_file(), "{} is missing: run scripts/setup.sh", p.display());
    }
    let runtime = std::fs::read_dir(&models)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("onnxruntime-")))
        .unwrap_or(false);
    assert!(
        runtime || std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "no onnxruntime-* in {} and ORT_DYLIB_PATH is not set: run scripts/setup.sh",
        models.display()
    );
}
