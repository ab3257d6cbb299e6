//! Models that leave docraft as GGUF, for llama.cpp and Ollama: a base GGUF with an adapter
//! merged into it ([`export_merged`], at f16, q8_0, q4_0 or q4_k_m), or the adapter alone as a
//! llama.cpp LoRA GGUF ([`export_lora`]) that llama.cpp applies to the base at load time.
//!
//! The merged file keeps the base's metadata (architecture, tokenizer, chat template) and
//! tensor order; each adapted weight becomes `W + scale · B·A` in the base's own layout
//! (llama.cpp's Q/K row order for llama-family files), computed in f32 from the base tensor
//! dequantized, one tensor at a time. The LoRA file follows llama.cpp's `convert_lora_to_gguf.py`:
//! `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and tensors
//! `blk.N.<name>.weight.lora_a` (`[r, in]`) and `.lora_b` (`[out, r]`, rows permuted like the
//! weight's).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::base::{BLOCK_PARTS, gguf_config, gguf_str, permute, permuted_heads};
use crate::config::ModelConfig;
use crate::error::{Result, TrainError};
use crate::lora::{Adapter, Target};

/// The tensor types of a merged GGUF, named as llama.cpp's `llama-quantize` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufQuant {
    /// 16-bit floats: no loss that matters (the default).
    #[default]
    F16,
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit blocks of 32.
    Q4_0,
    /// 4-bit k-quants, with the embeddings, output, `attn_v` and `ffn_down` at 6 bits (the
    /// "medium" mix).
    Q4KM,
}

impl GgufQuant {
    /// Every type, in the order above.
    pub const ALL: [Self; 4] = [Self::F16, Self::Q8_0, Self::Q4_0, Self::Q4KM];

    /// `f16`, `q8_0`, `q4_0` or `q4_k_m`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4KM => "q4_k_m",
        }
    }

    /// llama.cpp's `general.file_type` for the type (`llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7,
            Self::Q4_0 => 2,
            Self::Q4KM => 15,
        }
    }

    /// The type a 2-D weight named `name` gets, before the fallback for rows that do not
    /// split into its blocks.
    fn wanted(self, name: &str) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4KM => {
                let wide = ["token_embd.weight", "output.weight"].contains(&name)
                    || name.ends_with("attn_v.weight")
                    || name.ends_with("ffn_down.weight");
                if wide { GgmlDType::Q6K } else { GgmlDType::Q4K }
            }
        }
    }
}

impl fmt::Display for GgufQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GgufQuant {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|q| q.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            TrainError::setting("quant", format!("unknown GGUF type `{s}`: use f16, q8_0, q4_0 or q4_k_m"))
        })
    }
}

/// The type a weight of `cols` columns can take when `wanted` needs blocks that do not divide
/// its rows (llama.cpp's fallbacks: 6-bit k-quants to q8_0, 4-bit ones to q5_0, any block
/// format to f16 when even 32 does not divide).
fn fitting(wanted: GgmlDType, cols: usize) -> GgmlDType {
    let mut t = wanted;
    loop {
        if cols.is_multiple_of(t.block_size()) {
            return t;
        }
        t = match t {
            GgmlDType::Q6K | GgmlDType::Q5K => GgmlDType::Q8_0,
            GgmlDType::Q4K | GgmlDType::Q3K | GgmlDType::Q2K => GgmlDType::Q5_0,
            _ => return GgmlDType::F16,
        };
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufExport {
    /// The GGUF file.
    pub path: PathBuf,
    /// The Ollama `Modelfile` written beside it.
    pub modelfile: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Weights the adapter changed (merged) or carries (LoRA).
    pub adapted: usize,
    /// Tensors by the type they were written in (`F16`, `Q8_0`, ...).
    pub types: BTreeMap<String, usize>,
    /// Bytes written.
    pub bytes: u64,
}

/// A GGUF base read for export: its metadata and tensor list, and the architecture's facts.
struct GgufBase {
    content: Content,
    arch: String,
    config: ModelConfig,
}

impl GgufBase {
    fn open(path: &Path) -> Result<(Self, std::fs::File)> {
        if path.is_dir() {
            return Err(TrainError::model(
                path,
                "GGUF export starts from the base's GGUF file (a Hugging Face directory has no GGUF \
                 tokenizer metadata to copy); convert the directory with llama.cpp first",
            ));
        }
        let mut file = std::fs::File::open(path).map_err(TrainError::io(path))?;
        let content = Content::read(&mut file).map_err(|e| TrainError::model(path, format!("not a GGUF file: {e}")))?;
        let arch = gguf_str(&content, "general.architecture").unwrap_or_default();
        let vocab = content.tensor_infos.get("token_embd.weight").map_or(0, |t| t.shape.dims()[0]);
        let config = gguf_config(path, &content, vocab)?;
        Ok((Self { content, arch, config }, file))
    }

    fn adapter(&self, dir: &Path) -> Result<Adapter> {
        Adapter::load_peft(dir, &self.config, DType::F32, &Device::Cpu)
    }

    /// `delta` (Hugging Face layout) in the layout of the GGUF tensor `gguf_name`.
    fn to_file_layout(&self, gguf_name: &str, delta: Tensor) -> Result<Tensor> {
        let (heads, kv_heads) = (self.config.num_attention_heads, self.config.kv_heads());
        match permuted_heads(&self.arch, gguf_name, heads, kv_heads) {
            Some(h) => permute(&delta, h),
            None => Ok(delta),
        }
    }
}

/// The GGUF name of the weight `target` adapts in block `layer` (`blk.3.attn_q.weight`).
#[must_use]
pub fn gguf_weight_name(layer: usize, target: Target) -> String {
    let part = BLOCK_PARTS.iter().find(|(_, hf)| *hf == target.hf_path()).map_or("", |(g, _)| *g);
    format!("blk.{layer}.{part}.weight")
}

/// Writes `base` (a GGUF file) with `adapter` (a PEFT directory, ours or peft's; `None`: the
/// base alone, requantized) merged into it as a GGUF at `out`, every 2-D weight in `quant`
/// (norms and biases stay f32), with the base's metadata, tokenizer and chat template; and an
/// Ollama `Modelfile` beside it. Written to a temporary file first, so a failed export leaves
/// nothing half-written at `out`.
///
/// # Errors
/// [`TrainError::Model`] naming the base or adapter that cannot be read or does not fit;
/// [`TrainError::Io`] naming the file that cannot be written.
pub fn export_merged(base: &Path, adapter: Option<&Path>, out: &Path, quant: GgufQuant) -> Result<GgufExport> {
    let (gb, mut file) = GgufBase::open(base)?;
    let adapter = adapter.map(|dir| gb.adapter(dir)).transpose()?;
    let mut deltas: BTreeMap<String, Tensor> = BTreeMap::new();
    if let Some(ad) = &adapter {
        let scale = ad.config.scale();
        for (l, row) in ad.layers.iter().enumerate() {
            for t in Target::ALL {
                let Some(p) = &row[t.index()] else { continue };
                let delta = (p.b.as_tensor().matmul(p.a.as_tensor())? * scale)?.detach();
                let name = gguf_weight_name(l, t);
                deltas.insert(name.clone(), gb.to_file_layout(&name, delta)?);
            }
        }
    }
    let mut names: Vec<(String, u64)> = gb.content.tensor_infos.iter().map(|(n, i)| (n.clone(), i.offset)).collect();
    names.sort_by_key(|(_, offset)| *offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut adapted = 0;
    for (name, _) in &names {
        let at = |e: candle_core::Error| TrainError::model(base, format!("{name}: {e}"));
        let q = gb.content.tensor(&mut file, name, &Device::Cpu).map_err(at)?;
        let dims = q.shape().dims().to_vec();
        let delta = deltas.remove(name);
        let written = if dims.len() == 2 {
            let mut w = q.dequantize(&Device::Cpu).map_err(at)?;
            if let Some(d) = delta {
                if d.dims() != w.dims() {
                    return Err(TrainError::model(
                        base,
                        format!("{name}: the adapter's update is {:?}, the weight {:?}", d.dims(), w.dims()),
                    ));
                }
                w = (w + d)?;
                adapted += 1;
            }
            let ty = fitting(quant.wanted(name), dims[1]);
            QTensor::quantize(&w, ty).map_err(at)?
        } else {
            // Norms, biases and the like: f32, as llama.cpp keeps them.
            let w = q.dequantize(&Device::Cpu).map_err(at)?;
            QTensor::quantize(&w, GgmlDType::F32).map_err(at)?
        };
        *types.entry(format!("{:?}", written.dtype())).or_insert(0) += 1;
        tensors.push((name.clone(), written));
    }
    if let Some(name) = deltas.keys().next() {
        return Err(TrainError::model(base, format!("the adapter changes {name}, which the base does not have")));
    }
    // The base's keys (llama.cpp refuses a file that names a key twice), less the alignment
    // (candle writes 32), with the file type of what is written.
    let mut keys: BTreeMap<String, Value> = gb.content.metadata.clone().into_iter().collect();
    keys.remove("general.alignment");
    keys.insert("general.file_type".into(), Value::U32(quant.file_type()));
    keys.insert("general.quantization_version".into(), Value::U32(2));
    if adapter.is_some() {
        keys.insert("general.finetune".into(), Value::String("docraft-lora-merged".into()));
    }
    let metadata: Vec<(String, Value)> = keys.into_iter().collect();
    let bytes = write_gguf(out, &metadata, &tensors)?;
    let modelfile = write_modelfile(out, &format!("FROM ./{}\n", file_name(out)))?;
    Ok(GgufExport { path: out.to_path_buf(), modelfile, tensors: tensors.len(), adapted, types, bytes })
}

/// Writes `adapter` (a PEFT directory trained on `base`, a GGUF file) as a llama.cpp LoRA
/// GGUF at `out` (f32 tensors), and an Ollama `Modelfile` (`FROM` the base, `ADAPTER` this
/// file) beside it. llama.cpp scales each pair by `adapter.lora.alpha / r`; a rank-stabilized
/// adapter is written with the alpha that gives its own scale.
///
/// # Errors
/// As [`export_merged`].
pub fn export_lora(base: &Path, adapter: &Path, out: &Path) -> Result<GgufExport> {
    let (gb, _file) = GgufBase::open(base)?;
    let ad = gb.adapter(adapter)?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut adapted = 0;
    for (l, row) in ad.layers.iter().enumerate() {
        for t in Target::ALL {
            let Some(p) = &row[t.index()] else { continue };
            let name = gguf_weight_name(l, t);
            if !gb.content.tensor_infos.contains_key(&name) {
                return Err(TrainError::model(
                    base,
                    format!("the adapter changes {name}, which the base does not have"),
                ));
            }
            let a = p.a.as_tensor().detach();
            let b = gb.to_file_layout(&name, p.b.as_tensor().detach())?;
            let at = |e: candle_core::Error| TrainError::model(adapter, format!("{name}: {e}"));
            tensors.push((format!("{name}.lora_a"), QTensor::quantize(&a, GgmlDType::F32).map_err(at)?));
            tensors.push((format!("{name}.lora_b"), QTensor::quantize(&b, GgmlDType::F32).map_err(at)?));
            adapted += 1;
        }
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let alpha = (ad.config.scale() * ad.config.rank as f64) as f32;
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(gb.arch.clone())),
        ("general.type".into(), Value::String("adapter".into())),
        ("adapter.type".into(), Value::String("lora".into())),
        ("adapter.lora.alpha".into(), Value::F32(alpha)),
        ("general.name".into(), Value::String(format!("docraft LoRA for {}", file_name(base)))),
    ];
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = write_gguf(out, &metadata, &tensors)?;
    let base_abs = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let modelfile = write_modelfile(out, &format!("FROM {}\nADAPTER ./{}\n", base_abs.display(), file_name(out)))?;
    let types = BTreeMap::from([("F32".to_string(), tensors.len())]);
    Ok(GgufExport { path: out.to_path_buf(), modelfile, tensors: tensors.len(), adapted, types, bytes })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Writes a GGUF atomically (a temporary file beside `out`, then renamed); returns its size.
fn write_gguf(out: &Path, metadata: &[(String, Value)], tensors: &[(String, QTensor)]) -> Result<u64> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    }
    let tmp = out.with_extension("gguf.tmp");
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let written = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).map_err(TrainError::io(&tmp))?;
        let mut w = std::io::BufWriter::new(file);
        candle_core::quantized::gguf_file::write(&mut w, &meta, &ts)
            .map_err(|e| TrainError::model(&tmp, format!("writing GGUF: {e}")))?;
        let file = w.into_inner().map_err(|e| TrainError::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(TrainError::io(&tmp))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(TrainError::io(out))?;
    Ok(std::fs::metadata(out).map_err(TrainError::io(out))?.len())
}

/// Writes `Modelfile` beside `out`; returns its path.
fn write_modelfile(out: &Path, body: &str) -> Result<PathBuf> {
    let path = out.with_file_name("Modelfile");
    let text = format!("# Written by docraft export-gguf. `ollama create NAME -f {}`\n{body}", path.display());
    std::fs::write(&path, text).map_err(TrainError::io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_names_and_fallbacks() {
        for q in GgufQuant::ALL {
            assert_eq!(q.as_str().parse::<GgufQuant>().ok(), Some(q));
        }
        assert!("q5_1".parse::<GgufQuant>().is_err());
        assert_eq!(GgufQuant::Q4KM.wanted("blk.0.attn_q.weight"), GgmlDType::Q4K);
        assert_eq!(GgufQuant::Q4KM.wanted("blk.0.ffn_down.weight"), GgmlDType::Q6K);
        // SmolLM2-135M's 576 columns do not split into 256-wide k-quant blocks.
        assert_eq!(fitting(GgmlDType::Q4K, 576), GgmlDType::Q5_0);
        assert_eq!(fitting(GgmlDType::Q6K, 576), GgmlDType::Q8_0);
        assert_eq!(fitting(GgmlDType::Q4K, 1536), GgmlDType::Q4K);
        assert_eq!(fitting(GgmlDType::Q8_0, 48), GgmlDType::F16);
        assert_eq!(gguf_weight_name(3, Target::Down), "blk.3.ffn_down.weight");
    }

    #[test]
    fn permute_undoes_unpermute() -> Result<()> {
        let w = Tensor::arange(0f32, 48.0, &Device::Cpu)?.reshape((8, 6))?;
        let back = crate::base::unpermute(&permute(&w, 2)?, 2)?;
        assert_eq!(back.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        assert_ne!(permute(&w, 2)?.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        Ok(())
    }
}
