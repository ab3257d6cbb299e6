//! `RUN_DIR/manifest.json`: per stage, its status, a fingerprint of everything it depends
//! on, and the sha256 of its inputs, models, prompts and outputs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{PipelineError, Result};
use crate::event::Stage;

/// Where a stage stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// Started and not finished: a crash, a kill, or still running. Resumed by a run with
    /// the same fingerprint.
    #[default]
    Running,
    /// Finished; skipped by a run with the same fingerprint while its outputs hash as recorded.
    Done,
    /// Stopped by its caller; resumed like `Running`.
    Cancelled,
    /// Failed with the recorded error; redone from scratch.
    Failed,
}

/// One stage's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageRecord {
    /// Where it stands.
    pub status: StageStatus,
    /// sha256 of the stage, the docraft version, its settings and the hashes of its inputs,
    /// models and prompts.
    pub fingerprint: String,
    /// The stage's settings.
    pub settings: serde_json::Value,
    /// sha256 of each input, by path relative to the run directory.
    pub inputs: BTreeMap<String, String>,
    /// sha256 of each model file or directory.
    pub models: BTreeMap<String, String>,
    /// sha256 of each prompt template.
    pub prompts: BTreeMap<String, String>,
    /// sha256 of each output, once done.
    pub outputs: BTreeMap<String, String>,
    /// Unix time it started.
    pub started_unix: u64,
    /// Unix time it ended.
    pub finished_unix: Option<u64>,
    /// Wall time.
    pub seconds: Option<f64>,
    /// What it did, a line each.
    pub summary: Vec<String>,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// The docraft version that wrote it.
    pub docraft_version: String,
    /// How to read it.
    pub note: String,
    /// The config file (`path`) and the sha256 of its text.
    pub config: BTreeMap<String, String>,
    /// sha256 of every document ingest reads, by path.
    pub documents: BTreeMap<String, String>,
    /// Paths inside the document folders that could not be read, with the reason.
    pub skipped_documents: BTreeMap<String, String>,
    /// Per stage.
    pub stages: BTreeMap<Stage, StageRecord>,
}

impl Manifest {
    /// Reads `path`; a missing file is an empty manifest.
    ///
    /// # Errors
    /// [`PipelineError::Manifest`] when the file is not a manifest.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| PipelineError::Manifest { path: path.to_path_buf(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(PipelineError::io(path, e)),
        }
    }

    /// Writes it atomically (a temporary file renamed over the old one).
    ///
    /// # Errors
    /// [`PipelineError::Io`].
    pub fn save(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file.
///
/// # Errors
/// [`PipelineError::Io`].
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| PipelineError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    std::fs::write(&tmp, text).map_err(|e| PipelineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PipelineError::io(path, e))
}

/// Unix time now.
#[must_use]
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// sha256 of a string, hex.
#[must_use]
pub fn hash_str(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

/// sha256 of a file, or of a directory's files (relative path and hash of each, sorted),
/// leaving out `checkpoints/` (training state, not a product) and `*.tmp`.
///
/// # Errors
/// [`PipelineError::Io`] naming the file that cannot be read.
pub fn hash_path(path: &Path) -> Result<String> {
    if path.is_dir() {
        let mut files = Vec::new();
        collect(path, path, &mut files)?;
        files.sort();
        let mut h = Sha256::new();
        for (rel, p) in files {
            h.update(rel.as_bytes());
            h.update([0]);
            h.update(hash_path(&p)?.as_bytes());
            h.update([b'\n']);
        }
        return Ok(format!("{:x}", h.finalize()));
    }
    let mut f = std::fs::File::open(path).map_err(|e| PipelineError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| PipelineError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| PipelineError::io(dir, e))? {
        let p = e.map_err(|e| PipelineError::io(dir, e))?.path();
        if p.file_name().is_some_and(|n| n == "checkpoints" || n.to_string_lossy().ends_with(".tmp")) {
            continue;
        }
        if p.is_dir() {
            collect(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_hash_follows_content_and_names_but_not_checkpoints() -> anyhow::Result<()> {
        let d = tempfile::tempdir()?;
        std::fs::write(d.path().join("a.txt"), "one")?;
        let h1 = hash_path(d.path())?;
        std::fs::create_dir(d.path().join("checkpoints"))?;
        std::fs::write(d.path().join("checkpoints/state"), "x")?;
        assert_eq!(hash_path(d.path())?, h1, "checkpoints are not a product");
        std::fs::write(d.path().join("a.txt"), "two")?;
        assert_ne!(hash_path(d.path())?, h1);
        std::fs::rename(d.path().join("a.txt"), d.path().join("b.txt"))?;
        let h3 = hash_path(d.path())?;
        std::fs::write(d.path().join("b.txt"), "two")?;
        assert_eq!(hash_path(d.path())?, h3);
        assert_eq!(hash_path(&d.path().join("b.txt"))?, hash_str("two"));
        Ok(())
    }

    #[test]
    fn old_manifests_read_with_typed_status() -> anyhow::Result<()> {
        let d = tempfile::tempdir()?;
        let p = d.path().join("manifest.json");
        std::fs::write(&p, r#"{"stages": {"raft": {"status": "running", "fingerprint": "f", "command": ["x"]}}}"#)?;
        let m = Manifest::load(&p)?;
        assert_eq!(m.stages[&Stage::Raft].status, StageStatus::Running);
        std::fs::write(&p, r#"{"stages": {"raft": {"status": "exploded"}}}"#)?;
        assert!(matches!(Manifest::load(&p), Err(PipelineError::Manifest { .. })));
        Ok(())
    }
}
