//! LoRA adapters: per target projection a pair A [r, in] and B [out, r], saved and loaded in the
//! layout Hugging Face peft uses, and merged into base weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use docraft_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::error::{Result, TrainError};

/// A linear projection of a decoder block that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `self_attn.q_proj`
    Q,
    /// `self_attn.k_proj`
    K,
    /// `self_attn.v_proj`
    V,
    /// `self_attn.o_proj`
    O,
    /// `mlp.gate_proj`
    Gate,
    /// `mlp.up_proj`
    Up,
    /// `mlp.down_proj`
    Down,
}

impl Target {
    /// Every projection, in block order.
    pub const ALL: [Target; 7] = [Self::Q, Self::K, Self::V, Self::O, Self::Gate, Self::Up, Self::Down];

    /// Position in [`Target::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The module name peft uses in `target_modules` (`q_proj`, ...).
    #[must_use]
    pub fn module(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The path inside a block (`self_attn.q_proj`, `mlp.down_proj`, ...).
    #[must_use]
    pub fn hf_path(self) -> &'static str {
        match self {
            Self::Q => "self_attn.q_proj",
            Self::K => "self_attn.k_proj",
            Self::V => "self_attn.v_proj",
            Self::O => "self_attn.o_proj",
            Self::Gate => "mlp.gate_proj",
            Self::Up => "mlp.up_proj",
            Self::Down => "mlp.down_proj",
        }
    }

    /// Parses `q`, `q_proj` or `self_attn.q_proj` (and so on).
    ///
    /// # Errors
    /// [`TrainError::Setting`] for an unknown name.
    pub fn parse(name: &str) -> Result<Self> {
        let short = name.rsplit('.').next().unwrap_or(name).trim_end_matches("_proj");
        Ok(match short {
            "q" => Self::Q,
            "k" => Self::K,
            "v" => Self::V,
            "o" => Self::O,
            "gate" => Self::Gate,
            "up" => Self::Up,
            "down" => Self::Down,
            _ => {
                return Err(TrainError::setting(
                    "target_modules",
                    format!("unknown module `{name}`; use q, k, v, o, gate, up, down"),
                ));
            }
        })
    }
}

/// Rank, scale, dropout and targets of an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: usize,
    /// Alpha; the LoRA path is scaled by alpha / r (alpha / sqrt(r) with `use_rslora`).
    pub alpha: f64,
    /// Dropout probability on the LoRA path's input.
    pub dropout: f64,
    /// Adapted projections.
    pub targets: Vec<Target>,
    /// Rank-stabilized scaling.
    #[serde(default)]
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The multiplier of B·A.
    #[must_use]
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.alpha / (self.rank as f64).sqrt() } else { self.alpha / self.rank as f64 }
    }
}

/// One adapted projection: A [r, in], B [out, r].
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Down projection.
    pub a: Var,
    /// Up projection (zero at initialization).
    pub b: Var,
}

/// A LoRA adapter for every block of a model.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Its settings.
    pub config: LoraConfig,
    /// `layers[l][target.index()]`.
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

const PREFIX: &str = "base_model.model.model.layers";

impl Adapter {
    /// A fresh adapter: A drawn like peft's Kaiming-uniform (bound 1/sqrt(in)) from `seed`, B zero.
    ///
    /// # Errors
    /// [`TrainError::Setting`] for a zero rank; tensor errors.
    pub fn new(model: &ModelConfig, config: LoraConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        if config.rank == 0 {
            return Err(TrainError::setting("lora_rank", "must be positive"));
        }
        let mut layers = Vec::with_capacity(model.num_hidden_layers);
        for l in 0..model.num_hidden_layers {
            let mut row: [Option<LoraPair>; 7] = Default::default();
            for &t in &config.targets {
                let (i, o) = model.dims_of(t);
                let mut rng = SplitMix64::keyed(seed, &[l as u64, t.index() as u64]);
                let vals = rng.uniform(config.rank * i, 1.0 / (i as f64).sqrt());
                let a = Tensor::from_vec(vals, (config.rank, i), device)?.to_dtype(dtype)?;
                let b = Tensor::zeros((o, config.rank), dtype, device)?;
                row[t.index()] = Some(LoraPair { a: Var::from_tensor(&a)?, b: Var::from_tensor(&b)? });
            }
            layers.push(row);
        }
        Ok(Self { config, layers })
    }

    /// Every trainable tensor with its peft name, in a fixed order.
    #[must_use]
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for (l, row) in self.layers.iter().enumerate() {
            for t in Target::ALL {
                if let Some(p) = &row[t.index()] {
                    out.push((format!("{PREFIX}.{l}.{}.lora_A.weight", t.hf_path()), &p.a));
                    out.push((format!("{PREFIX}.{l}.{}.lora_B.weight", t.hf_path()), &p.b));
                }
            }
        }
        out
    }

    /// Number of trainable values.
    #[must_use]
    pub fn parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) as peft does.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the file.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let mut modules: Vec<&str> = self.config.targets.iter().map(|t| t.module()).collect();
        modules.sort_unstable();
        let cfg = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": self.config.use_rslora,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        });
        crate::base::write_json(&dir.join("adapter_config.json"), &cfg)?;
        let tensors: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().to_dtype(DType::F32)?)))
            .collect::<Result<_>>()?;
        let path = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &path).map_err(|e| TrainError::model(&path, e.to_string()))
    }

    /// Reads an adapter peft wrote (or we did) for a model with `model`'s shape.
    ///
    /// # Errors
    /// [`TrainError::Model`] for settings we do not support (DoRA, per-module ranks), missing tensors or
    /// wrong shapes, naming the file.
    pub fn load_peft(dir: &Path, model: &ModelConfig, dtype: DType, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(TrainError::io(&cfg_path))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| TrainError::parse(&cfg_path, e))?;
        if v["use_dora"].as_bool() == Some(true) {
            return Err(TrainError::model(&cfg_path, "DoRA adapters are not supported"));
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if v[key].as_object().is_some_and(|o| !o.is_empty()) {
                return Err(TrainError::model(&cfg_path, format!("`{key}` (per-module ranks) is not supported")));
            }
        }
        let rank = v["r"].as_u64().ok_or_else(|| TrainError::model(&cfg_path, "no `r`"))? as usize;
        let alpha = v["lora_alpha"].as_f64().unwrap_or(rank as f64);
        let targets: Vec<Target> = match &v["target_modules"] {
            Value::Array(a) => a.iter().filter_map(Value::as_str).map(Target::parse).collect::<Result<_>>()?,
            Value::String(s) => Target::ALL.into_iter().filter(|t| s.contains(t.module())).collect(),
            _ => return Err(TrainError::model(&cfg_path, "no `target_modules`")),
        };
        let mut targets = targets;
        targets.sort();
        targets.dedup();
        let config = LoraConfig {
            rank,
            alpha,
            dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
            targets: targets.clone(),
            use_rslora: v["use_rslora"].as_bool().unwrap_or(false),
        };
        let st = dir.join("adapter_model.safetensors");
        let raw = candle_core::safetensors::load(&st, device).map_err(|e| TrainError::model(&st, e.to_string()))?;
        // peft strips the adapter name on save, but files written by hand may keep `.default`.
        let tensors: HashMap<String, Tensor> = raw
            .into_iter()
            .map(|(k, t)| (k.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."), t))
            .collect();
        let mut layers = Vec::with_capacity(model.num_hidden_layers);
        for l in 0..model.num_hidden_layers {
            let mut row: [Option<LoraPair>; 7] = Default::default();
            for &t in &targets {
                let (i, o) = model.dims_of(t);
                let get = |which: &str, shape: (usize, usize)| -> Result<Var> {
                    let name = format!("{PREFIX}.{l}.{}.{which}.weight", t.hf_path());
                    let t =
                        tensors.get(&name).ok_or_else(|| TrainError::model(&st, format!("missing tensor `{name}`")))?;
                    if t.dims2()? != shape {
                        return Err(TrainError::model(
                            &st,
                            format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.dims()),
                        ));
                    }
                    Ok(Var::from_tensor(&t.to_dtype(dtype)?)?)
                };
                row[t.index()] = Some(LoraPair { a: get("lora_A", (rank, i))?, b: get("lora_B", (o, rank))? });
            }
            layers.push(row);
        }
        Ok(Self { config, layers })
    }

    /// Copies the values of `other` (same shape) into this adapter's variables.
    ///
    /// # Errors
    /// Shape errors when the adapters differ.
    pub fn assign(&self, values: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = values.get(&name).ok_or_else(|| TrainError::model(&name, "missing in checkpoint"))?;
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// `W + scale · B·A` for every adapted weight of `weights` (Hugging Face names), in place.
    ///
    /// # Errors
    /// Tensor errors; [`TrainError::Model`] if a base weight is missing.
    pub fn merge_into(&self, weights: &mut HashMap<String, Tensor>) -> Result<()> {
        let scale = self.config.scale();
        for (l, row) in self.layers.iter().enumerate() {
            for t in Target::ALL {
                let Some(p) = &row[t.index()] else { continue };
                let name = format!("model.layers.{l}.{}.weight", t.hf_path());
                let w = weights.get(&name).ok_or_else(|| TrainError::model(&name, "base weight missing"))?;
                let delta = (p.b.as_tensor().matmul(p.a.as_tensor())? * scale)?.to_dtype(w.dtype())?;
                // Detached: the adapter's tensors are trainable variables, and a weight computed
                // from them would make every forward through the merged model record its
                // graph, so decoding kept every token's activations alive (an eval reached 23 GB).
                let merged = (w + delta)?.detach();
                weights.insert(name, merged);
            }
        }
        Ok(())
    }
}
