//! Base models on disk: a GGUF file (dequantized) or a Hugging Face directory, and back to HF layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use candle_core::{DType, Device, Tensor};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::config::{EosIds, ModelConfig};
use crate::error::{Result, TrainError};
use crate::tokenizer::{CHATML, ChatTemplate, GgufTokenizer, tokenizer_from_json};

/// A base model in memory: config, f32 weights under Hugging Face names, tokenizer and chat template.
#[derive(Debug)]
pub struct BaseModel {
    /// The architecture.
    pub config: ModelConfig,
    /// Weights by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub weights: HashMap<String, Tensor>,
    /// The `tokenizer.json` document.
    pub tokenizer_json: Value,
    /// The chat template source (ChatML when the model ships none).
    pub chat_template: String,
    /// Beginning-of-sequence token text.
    pub bos: Option<String>,
    /// End-of-sequence token text.
    pub eos: Option<String>,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl BaseModel {
    /// Loads a GGUF file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).
    ///
    /// # Errors
    /// [`TrainError::Io`] / [`TrainError::Model`] naming the file that is missing or unsupported.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if path.is_dir() { Self::from_hf_dir(path, device) } else { Self::from_gguf(path, device) }
    }

    /// The tokenizer.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] when the document is invalid.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        tokenizer_from_json(&self.tokenizer_json)
    }

    /// The compiled chat template.
    ///
    /// # Errors
    /// [`TrainError::Template`] when it does not compile.
    pub fn template(&self) -> Result<ChatTemplate> {
        ChatTemplate::new(&self.chat_template, self.bos.as_deref().unwrap_or(""), self.eos.as_deref().unwrap_or(""))
    }

    /// Reads every tensor of a GGUF file, dequantized to f32, under Hugging Face names.
    ///
    /// # Errors
    /// [`TrainError::Model`] when the architecture or tokenizer is not supported or a tensor is missing.
    pub fn from_gguf(path: &Path, device: &Device) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(TrainError::io(path))?;
        let content = Content::read(&mut file).map_err(|e| TrainError::model(path, format!("not a GGUF file: {e}")))?;
        let arch = gguf_str(&content, "general.architecture").unwrap_or_default();
        let tok = GgufTokenizer::from_gguf(path, &content)?;
        let vocab_size = tok.json["model"]["vocab"].as_object().map_or(0, serde_json::Map::len);
        let mut config = gguf_config(path, &content, vocab_size)?;
        let (heads, kv_heads) =
            (config.num_attention_heads, config.num_key_value_heads.unwrap_or(config.num_attention_heads));
        let mut weights = HashMap::new();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(hf) = hf_name(name) else {
                continue; // rope_freqs and friends: derived, not weights
            };
            let q =
                content.tensor(&mut file, name, device).map_err(|e| TrainError::model(path, format!("{name}: {e}")))?;
            let mut t = q.dequantize(device).map_err(|e| TrainError::model(path, format!("{name}: {e}")))?;
            // llama.cpp permutes Q/K rows for its RoPE layout in llama-arch conversions; undo it.
            // qwen2 uses NEOX (rotate-half) RoPE like Hugging Face, so its converter leaves Q/K and
            // their biases alone (tests/qwen2.rs checks the logits against llama.cpp's).
            if let Some(h) = permuted_heads(&arch, name, heads, kv_heads) {
                t = unpermute(&t, h)?;
            }
            weights.insert(hf, t);
        }
        if config.vocab_size == 0 {
            config.vocab_size = weights.get("model.embed_tokens.weight").map_or(0, |t| t.dims()[0]);
        }
        let model = Self {
            config,
            weights,
            chat_template: tok.chat_template.clone().unwrap_or_else(|| CHATML.to_string()),
            bos: tok.bos.clone(),
            eos: tok.eos.clone(),
            tokenizer_json: tok.json,
            source: path.to_path_buf(),
        };
        model.check(path)?;
        Ok(model)
    }

    /// Reads a Hugging Face directory: `config.json`, every `*.safetensors` (converted to f32),
    /// `tokenizer.json`, and the chat template from `tokenizer_config.json` or `chat_template.jinja`.
    ///
    /// # Errors
    /// [`TrainError::Io`] / [`TrainError::Model`] naming the missing or bad file.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(TrainError::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(TrainError::model(dir, "no *.safetensors files"));
        }
        let mut weights = HashMap::new();
        for f in &files {
            let loaded = candle_core::safetensors::load(f, device).map_err(|e| TrainError::model(f, e.to_string()))?;
            for (name, t) in loaded {
                weights.insert(name, t.to_dtype(DType::F32)?);
            }
        }
        let tok_path = dir.join("tokenizer.json");
        let tok_text = std::fs::read_to_string(&tok_path).map_err(TrainError::io(&tok_path))?;
        let tokenizer_json: Value = serde_json::from_str(&tok_text).map_err(|e| TrainError::parse(&tok_path, e))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: Value = match std::fs::read_to_string(&tc_path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| TrainError::parse(&tc_path, e))?,
            Err(_) => Value::Null,
        };
        let jinja = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        let chat_template = jinja
            .or_else(|| match &tc["chat_template"] {
                Value::String(s) => Some(s.clone()),
                Value::Array(list) => list
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str().map(str::to_string)),
                _ => None,
            })
            .unwrap_or_else(|| CHATML.to_string());
        let token_text = |key: &str| match &tc[key] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let model = Self {
            bos: token_text("bos_token"),
            eos: token_text("eos_token"),
            config,
            weights,
            tokenizer_json,
            chat_template,
            source: dir.to_path_buf(),
        };
        model.check(dir)?;
        Ok(model)
    }

    /// Checks every weight the forward pass needs is there with the right shape.
    fn check(&self, path: &Path) -> Result<()> {
        let c = &self.config;
        let need = |name: &str, shape: &[usize]| -> Result<()> {
            match self.weights.get(name) {
                None => Err(TrainError::model(path, format!("missing tensor `{name}`"))),
                Some(t) if t.dims() != shape => Err(TrainError::model(
                    path,
                    format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.dims()),
                )),
                Some(_) => Ok(()),
            }
        };
        need("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?;
        need("model.norm.weight", &[c.hidden_size])?;
        if !c.tie_word_embeddings {
            need("lm_head.weight", &[c.vocab_size, c.hidden_size])?;
        }
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            need(&format!("{p}.input_layernorm.weight"), &[c.hidden_size])?;
            need(&format!("{p}.post_attention_layernorm.weight"), &[c.hidden_size])?;
            for t in crate::lora::Target::ALL {
                let (i, o) = c.dims_of(t);
                need(&format!("{p}.{}.weight", t.hf_path()), &[o, i])?;
            }
            if c.attention_bias {
                for t in [crate::lora::Target::Q, crate::lora::Target::K, crate::lora::Target::V] {
                    need(&format!("{p}.{}.bias", t.hf_path()), &[c.dims_of(t).1])?;
                }
            }
        }
        Ok(())
    }

    /// Writes the model in Hugging Face layout: `config.json`, `model.safetensors`, `tokenizer.json`,
    /// `tokenizer_config.json` (with the chat template) and `generation_config.json`.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the file that could not be written.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        write_json(
            &dir.join("config.json"),
            &serde_json::to_value(&self.config).map_err(|e| TrainError::parse(dir, e))?,
        )?;
        let st = dir.join("model.safetensors");
        candle_core::safetensors::save(&self.weights, &st).map_err(|e| TrainError::model(&st, e.to_string()))?;
        write_json(&dir.join("tokenizer.json"), &self.tokenizer_json)?;
        write_json(
            &dir.join("tokenizer_config.json"),
            &json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": self.bos, "eos_token": self.eos, "pad_token": self.eos, "unk_token": null,
                "add_prefix_space": false, "clean_up_tokenization_spaces": false,
                "model_max_length": self.config.max_position_embeddings,
                "chat_template": self.chat_template,
            }),
        )?;
        write_json(
            &dir.join("generation_config.json"),
            &json!({"bos_token_id": self.config.bos_token_id, "eos_token_id": self.config.eos_token_id}),
        )?;
        Ok(())
    }
}

/// Writes pretty JSON to `path`.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::parse(path, e))?;
    std::fs::write(path, text + "\n").map_err(TrainError::io(path))
}

pub(crate) fn gguf_str(content: &Content, key: &str) -> Option<String> {
    content.metadata.get(key).and_then(|v: &GgufValue| v.to_string().ok()).cloned()
}

/// The model configuration a GGUF file's metadata describes (llama, mistral and qwen2
/// architectures), with `vocab_size` as given (0: unknown).
///
/// # Errors
/// [`TrainError::Model`] naming `path` for another architecture or a missing key.
pub fn gguf_config(path: &Path, content: &Content, vocab_size: usize) -> Result<ModelConfig> {
    let arch = gguf_str(content, "general.architecture").unwrap_or_default();
    let (model_type, architecture) = match arch.as_str() {
        "llama" => ("llama", "LlamaForCausalLM"),
        "mistral" => ("mistral", "MistralForCausalLM"),
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        other => {
            return Err(TrainError::model(
                path,
                format!("architecture `{other}` is not a supported llama-family model"),
            ));
        }
    };
    let num = |key: &str| -> Result<usize> {
        content
            .metadata
            .get(&format!("{arch}.{key}"))
            .and_then(|v| v.to_u32().ok().or_else(|| v.to_u64().ok().and_then(|x| u32::try_from(x).ok())))
            .map(|v| v as usize)
            .ok_or_else(|| TrainError::model(path, format!("GGUF has no `{arch}.{key}`")))
    };
    // GGUF stores these as f32: widen through the shortest decimal, so 1e-6 stays 1e-6 (and not
    // 9.99999997e-7) in the config.json we write and in the norms.
    let float = |key: &str, default: f64| -> f64 {
        content
            .metadata
            .get(&format!("{arch}.{key}"))
            .and_then(|v| v.to_f32().ok())
            .map_or(default, |x| x.to_string().parse().unwrap_or(f64::from(x)))
    };
    let heads = num("attention.head_count")?;
    let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
    let hidden = num("embedding_length")?;
    let id = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
    let has_output = content.tensor_infos.contains_key("output.weight");
    let config = ModelConfig {
        architectures: vec![architecture.to_string()],
        model_type: model_type.to_string(),
        vocab_size,
        hidden_size: hidden,
        intermediate_size: num("feed_forward_length")?,
        num_hidden_layers: num("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim: num("attention.key_length").ok().filter(|d| *d != hidden / heads),
        rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
        rope_theta: float("rope.freq_base", 10_000.0),
        max_position_embeddings: num("context_length").unwrap_or(2048),
        tie_word_embeddings: !has_output,
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id").map(EosIds::One),
        torch_dtype: "float32".into(),
        rope_scaling: None,
    };
    config.validate().map_err(|m| TrainError::model(path, m))?;
    Ok(config)
}

/// Maps a GGUF tensor name to its Hugging Face name (`None` for tensors that are not weights).
#[must_use]
pub fn hf_name(gguf: &str) -> Option<String> {
    let (stem, kind) = gguf.rsplit_once('.')?;
    let top = match stem {
        "token_embd" => Some("model.embed_tokens"),
        "output_norm" => Some("model.norm"),
        "output" => Some("lm_head"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{kind}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let (_, hf) = BLOCK_PARTS.iter().find(|(g, _)| *g == part)?;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// A block's tensors: GGUF name part and Hugging Face path (the norms, then the projections
/// in [`crate::Target`]'s order).
pub(crate) const BLOCK_PARTS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The head count by which llama.cpp permuted the rows of GGUF tensor `name` in a model of
/// architecture `arch` (Q weights by `heads`, K weights by `kv_heads`), or `None` when the
/// tensor is stored in Hugging Face's row order.
pub(crate) fn permuted_heads(arch: &str, name: &str, heads: usize, kv_heads: usize) -> Option<usize> {
    if !permutes_qk(arch) {
        return None;
    }
    if name.ends_with("attn_q.weight") {
        Some(heads)
    } else if name.ends_with("attn_k.weight") {
        Some(kv_heads)
    } else {
        None
    }
}

/// Whether llama.cpp's converter permutes the Q/K rows of architecture `arch` (for its RoPE
/// layout): llama and mistral yes; qwen2 (NEOX RoPE, like Hugging Face) no.
fn permutes_qk(arch: &str) -> bool {
    arch == "llama" || arch == "mistral"
}

/// llama.cpp's row permutation of a Q or K weight (or a LoRA B) with `heads` heads, from
/// Hugging Face layout: the inverse of [`unpermute`].
///
/// # Errors
/// A shape error when the rows do not split into `heads` pairs.
pub fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, 2, rows / heads / 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Undoes llama.cpp's row permutation of a Q or K weight with `heads` heads.
///
/// # Errors
/// A shape error when the rows do not split into `heads` pairs.
pub fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, rows / heads / 2, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}
