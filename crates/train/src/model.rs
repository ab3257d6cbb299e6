//! A llama-family decoder written with differentiable candle ops, so gradients reach LoRA adapters.
//!
//! Layout follows Hugging Face's `LlamaForCausalLM` (rotate-half RoPE, grouped-query attention,
//! SwiGLU MLP, RMS norms). Activations are kept as `[tokens, width]` matrices; attention reshapes to
//! `[batch, kv_heads, group · time, head_dim]` so grouped heads share keys and values without copies.

use std::cell::Cell;
use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use docraft_core::rng::SplitMix64;

use crate::base::BaseModel;
use crate::config::ModelConfig;
use crate::error::{Result, TrainError};
use crate::lora::{Adapter, Target};
use crate::ops;

/// Weights of one decoder block.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor,
    mlp_norm: Tensor,
    /// Indexed by [`Target::index`]; `[out, in]`.
    w: [Tensor; 7],
    bias: [Option<Tensor>; 7],
}

/// The model: frozen weights plus RoPE tables.
#[derive(Debug, Clone)]
pub struct Llama {
    config: ModelConfig,
    embed: Tensor,
    layers: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
    dtype: DType,
    device: Device,
}

/// Token ids of a batch with positions and an attention mask (causal, and block-diagonal when
/// several examples are packed into one row).
#[derive(Debug, Clone)]
pub struct Inputs {
    ids: Tensor,
    positions: Tensor,
    mask: Tensor,
    batch: usize,
    seq: usize,
}

impl Inputs {
    /// A batch from rows of equal length; `segments[b][t]` says which packed example a token belongs
    /// to (tokens attend only within their segment, and positions restart at each segment).
    ///
    /// # Errors
    /// [`TrainError::Setting`] when rows differ in length or are empty.
    pub fn new(rows: &[Vec<u32>], segments: &[Vec<u32>], dtype: DType, device: &Device) -> Result<Self> {
        let batch = rows.len();
        let seq = rows.first().map_or(0, Vec::len);
        if batch == 0 || seq == 0 || rows.iter().any(|r| r.len() != seq) || segments.len() != batch {
            return Err(TrainError::setting("batch", "rows must be non-empty and of equal length"));
        }
        let mut ids = Vec::with_capacity(batch * seq);
        let mut pos = Vec::with_capacity(batch * seq);
        let mut mask = vec![0f32; batch * seq * seq];
        for (b, (row, seg)) in rows.iter().zip(segments).enumerate() {
            ids.extend_from_slice(row);
            let mut start = 0;
            for t in 0..seq {
                if t > 0 && seg[t] != seg[t - 1] {
                    start = t;
                }
                pos.push((t - start) as u32);
                for s in 0..seq {
                    if s > t || s < start {
                        mask[(b * seq + t) * seq + s] = -1e9;
                    }
                }
            }
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (batch, seq), device)?,
            positions: Tensor::from_vec(pos, batch * seq, device)?,
            mask: Tensor::from_vec(mask, (batch, 1, 1, seq, seq), device)?.to_dtype(dtype)?,
            batch,
            seq,
        })
    }

    /// One causal row without packing.
    ///
    /// # Errors
    /// As [`Inputs::new`].
    pub fn single(ids: &[u32], dtype: DType, device: &Device) -> Result<Self> {
        Self::new(&[ids.to_vec()], &[vec![0; ids.len()]], dtype, device)
    }

    /// Rows × columns.
    #[must_use]
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.seq)
    }
}

/// Dropout on the LoRA path, with masks drawn from a keyed seed so a resumed run draws the same ones.
#[derive(Debug)]
pub struct Dropout {
    p: f64,
    seed: u64,
    key: u64,
    counter: Cell<u64>,
}

impl Dropout {
    /// Dropout with probability `p`, for the micro-batch identified by `key`.
    #[must_use]
    pub fn new(p: f64, seed: u64, key: u64) -> Self {
        Self { p, seed, key, counter: Cell::new(0) }
    }

    /// A fresh mask shaped like `x` (values 0 or 1/(1−p)), or `None` when p is 0.
    fn mask(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.p <= 0.0 {
            return Ok(None);
        }
        let n = self.counter.get();
        self.counter.set(n + 1);
        let mut rng = SplitMix64::keyed(self.seed, &[0xD80F, self.key, n]);
        let keep = 1.0 - self.p;
        let scale = (1.0 / keep) as f32;
        let threshold = (keep * (1u64 << 32) as f64) as u64;
        let count = x.elem_count();
        let mut mask = Vec::with_capacity(count);
        while mask.len() < count {
            let r = rng.next_u64();
            mask.push(if (r & 0xFFFF_FFFF) < threshold { scale } else { 0.0 });
            if mask.len() < count {
                mask.push(if (r >> 32) < threshold { scale } else { 0.0 });
            }
        }
        Ok(Some(Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?))
    }
}

/// Keys and values of past tokens, for generation.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Tokens seen so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was seen yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Sum of the token losses of a batch and how many targets the model got right.
#[derive(Debug)]
pub struct LossOut {
    /// Sum of negative log-likelihoods over the target tokens (a scalar that gradients flow from).
    pub sum: Tensor,
    /// Target tokens.
    pub tokens: usize,
    /// Targets that were the model's top-1 prediction.
    pub correct: usize,
}

impl Llama {
    /// Builds the model from a loaded base, in `dtype` on `device`.
    ///
    /// # Errors
    /// [`TrainError::Model`] if a weight is missing.
    pub fn new(base: &BaseModel, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_weights(&base.config, &base.weights, dtype, device)
    }

    /// Builds the model from weights under Hugging Face names.
    ///
    /// # Errors
    /// [`TrainError::Model`] if a weight is missing.
    pub fn from_weights(
        config: &ModelConfig,
        weights: &HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<Tensor> {
            let t = weights.get(name).ok_or_else(|| TrainError::model(name, "missing weight"))?;
            Ok(t.to_device(device)?.to_dtype(dtype)?)
        };
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if config.tie_word_embeddings { embed.clone() } else { get("lm_head.weight")? };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let w = Target::ALL.map(|t| get(&format!("{p}.{}.weight", t.hf_path())));
            let bias = Target::ALL.map(|t| weights.get(&format!("{p}.{}.bias", t.hf_path())).cloned());
            let [q, k, v, o, g, u, d] = w;
            let mut b: [Option<Tensor>; 7] = Default::default();
            for (slot, t) in b.iter_mut().zip(bias) {
                *slot = t.map(|t| t.to_device(device).and_then(|t| t.to_dtype(dtype))).transpose()?;
            }
            layers.push(Block {
                attn_norm: get(&format!("{p}.input_layernorm.weight"))?,
                mlp_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                w: [q?, k?, v?, o?, g?, u?, d?],
                bias: b,
            });
        }
        let (cos, sin) = rope_tables(config, dtype, device)?;
        Ok(Self {
            config: config.clone(),
            embed,
            layers,
            norm: get("model.norm.weight")?,
            lm_head,
            cos,
            sin,
            dtype,
            device: device.clone(),
        })
    }

    /// A randomly initialized model (projections with variance 1/in, embedding with variance 1), for
    /// tests and examples.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn random(config: &ModelConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_weights(config, &random_weights(config, seed, device)?, dtype, device)
    }

    /// The weights under Hugging Face names (what [`BaseModel::save_hf`] writes).
    #[must_use]
    pub fn weights(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        out.insert("model.embed_tokens.weight".to_string(), self.embed.clone());
        out.insert("model.norm.weight".to_string(), self.norm.clone());
        if !self.config.tie_word_embeddings {
            out.insert("lm_head.weight".to_string(), self.lm_head.clone());
        }
        for (l, b) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.insert(format!("{p}.input_layernorm.weight"), b.attn_norm.clone());
            out.insert(format!("{p}.post_attention_layernorm.weight"), b.mlp_norm.clone());
            for t in Target::ALL {
                out.insert(format!("{p}.{}.weight", t.hf_path()), b.w[t.index()].clone());
                if let Some(bias) = &b.bias[t.index()] {
                    out.insert(format!("{p}.{}.bias", t.hf_path()), bias.clone());
                }
            }
        }
        out
    }

    /// The architecture.
    #[must_use]
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The compute dtype.
    #[must_use]
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A copy with `adapter` merged into the weights (W + scale·B·A): same outputs as base + adapter,
    /// faster for inference.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn merged(&self, adapter: &Adapter) -> Result<Self> {
        let mut w = self.weights();
        adapter.merge_into(&mut w)?;
        Self::from_weights(&self.config, &w, self.dtype, &self.device)
    }

    fn linear(
        &self,
        x: &Tensor,
        layer: usize,
        t: Target,
        adapter: Option<&Adapter>,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        let block = &self.layers[layer];
        let i = t.index();
        if let Some((pair, scale)) =
            adapter.and_then(|a| a.layers.get(layer).and_then(|r| r[i].as_ref()).map(|p| (p, a.config.scale())))
        {
            let mask = match dropout {
                Some(d) => d.mask(x)?,
                None => None,
            };
            // The adapter keeps f32 master weights; a bf16 model computes with bf16 copies.
            let a = pair.a.as_tensor().to_dtype(x.dtype())?;
            let b = pair.b.as_tensor().to_dtype(x.dtype())?;
            return ops::lora_linear(x, &block.w[i], block.bias[i].as_ref(), &a, &b, scale, mask);
        }
        let y = ops::frozen_linear(x, &block.w[i])?;
        Ok(match &block.bias[i] {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Runs the decoder; returns the final-norm hidden states `[batch · seq, hidden]`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn hidden(&self, inputs: &Inputs, adapter: Option<&Adapter>, dropout: Option<&Dropout>) -> Result<Tensor> {
        let (b, t) = inputs.shape();
        let ids = inputs.ids.flatten_all()?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let cos = self.cos.index_select(&inputs.positions, 0)?.reshape((b, t, 1, ()))?;
        let sin = self.sin.index_select(&inputs.positions, 0)?.reshape((b, t, 1, ()))?;
        for l in 0..self.layers.len() {
            x = self.block(l, &x, b, t, &cos, &sin, &inputs.mask, None, adapter, dropout)?;
        }
        ops::rms_norm(&x, &self.norm, self.config.rms_norm_eps)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        x: &Tensor,
        b: usize,
        t: usize,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        adapter: Option<&Adapter>,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (nh, nkv, hd) = (c.num_attention_heads, c.kv_heads(), c.head_dim());
        let block = &self.layers[l];
        let h = ops::rms_norm(x, &block.attn_norm, c.rms_norm_eps)?;
        let q = self.linear(&h, l, Target::Q, adapter, dropout)?.reshape((b, t, nh, hd))?;
        let k = self.linear(&h, l, Target::K, adapter, dropout)?.reshape((b, t, nkv, hd))?;
        let v = self.linear(&h, l, Target::V, adapter, dropout)?.reshape((b, t, nkv, hd))?;
        let q = ops::rope(&q, cos, sin)?.transpose(1, 2)?.contiguous()?;
        let mut k = ops::rope(&k, cos, sin)?.transpose(1, 2)?.contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let rep = nh / nkv;
        // [b, nh, t, hd] -> [b, nkv, rep·t, hd]: query heads of one group share a key/value head.
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let att = ops::attention(&q, &k, &v, mask, rep, 1.0 / (hd as f64).sqrt())?;
        let att = att.reshape((b, nh, t, hd))?.transpose(1, 2)?.reshape((b * t, nh * hd))?;
        let x = (x + self.linear(&att, l, Target::O, adapter, dropout)?)?;
        let h = ops::rms_norm(&x, &block.mlp_norm, c.rms_norm_eps)?;
        let gate = self.linear(&h, l, Target::Gate, adapter, dropout)?;
        let up = self.linear(&h, l, Target::Up, adapter, dropout)?;
        let act = ops::swiglu(&gate, &up)?;
        Ok((x + self.linear(&act, l, Target::Down, adapter, dropout)?)?)
    }

    /// Logits `[rows, vocab]` for hidden states `[rows, hidden]`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        ops::frozen_linear(hidden, &self.lm_head)
    }

    /// Summed cross-entropy of `targets[i]` predicted at flat position `rows[i]` of `hidden`; only
    /// those rows reach the output projection.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn loss(&self, hidden: &Tensor, rows: &[u32], targets: &[u32]) -> Result<LossOut> {
        let n = rows.len();
        let idx = Tensor::from_slice(rows, n, &self.device)?;
        let tgt = Tensor::from_slice(targets, n, &self.device)?;
        let logits = self.logits(&hidden.index_select(&idx, 0)?)?;
        // Half precision is too coarse for a log-softmax over the vocabulary.
        let logits =
            if matches!(logits.dtype(), DType::BF16 | DType::F16) { logits.to_dtype(DType::F32)? } else { logits };
        let sum = ops::cross_entropy(&logits, &tgt)?.sum_all()?;
        let pred: Vec<u32> = logits.detach().argmax(D::Minus1)?.to_vec1()?;
        let correct = pred.iter().zip(targets).filter(|(a, b)| a == b).count();
        Ok(LossOut { sum, tokens: n, correct })
    }

    /// Feeds `ids` after what `cache` holds and returns the logits of the last one, `[vocab]`.
    ///
    /// # Errors
    /// Tensor errors; [`TrainError::Setting`] when the context would exceed the model's length.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache, adapter: Option<&Adapter>) -> Result<Tensor> {
        let t = ids.len();
        let start = cache.len;
        if start + t > self.cos.dim(0)? {
            return Err(TrainError::setting(
                "max_tokens",
                format!("context of {} tokens exceeds the model's {}", start + t, self.cos.dim(0)?),
            ));
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let s = start + t;
        let mut mask = vec![0f32; t * s];
        for i in 0..t {
            for j in (start + i + 1)..s {
                mask[i * s + j] = -1e9;
            }
        }
        let mask = Tensor::from_vec(mask, (1, 1, 1, t, s), &self.device)?.to_dtype(self.dtype)?;
        let ids_t = Tensor::from_slice(ids, t, &self.device)?;
        let mut x = self.embed.index_select(&ids_t, 0)?;
        let cos = self.cos.narrow(0, start, t)?.reshape((1, t, 1, ()))?;
        let sin = self.sin.narrow(0, start, t)?.reshape((1, t, 1, ()))?;
        for l in 0..self.layers.len() {
            let slot = &mut cache.layers[l];
            x = self.block(l, &x, 1, t, &cos, &sin, &mask, Some(slot), adapter, None)?;
        }
        cache.len = s;
        let last = x.narrow(0, t - 1, 1)?;
        let h = ops::rms_norm(&last, &self.norm, self.config.rms_norm_eps)?;
        Ok(self.logits(&h)?.squeeze(0)?.to_dtype(DType::F32)?)
    }
}

fn rope_tables(config: &ModelConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = config.head_dim();
    let n = config.max_position_embeddings.max(1);
    let inv: Vec<f64> = (0..hd / 2).map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / hd as f64)).collect();
    let mut cos = Vec::with_capacity(n * hd / 2);
    let mut sin = Vec::with_capacity(n * hd / 2);
    for p in 0..n {
        for f in &inv {
            // f32 angles, as transformers computes them.
            let a = (p as f32) * (*f as f32);
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, hd / 2), device)?.to_dtype(dtype)?,
        Tensor::from_vec(sin, (n, hd / 2), device)?.to_dtype(dtype)?,
    ))
}

fn random_weights(c: &ModelConfig, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut n = 0u64;
    // Projections: uniform with variance 1/in; the embedding: variance 1 (PyTorch's `nn.Embedding`
    // default), so tied output logits are not squeezed by the unit-scale final norm.
    let mut rand = |rows: usize, cols: usize, var: f64| -> Result<Tensor> {
        n += 1;
        let mut rng = SplitMix64::keyed(seed, &[n]);
        let v = rng.uniform(rows * cols, (3.0 * var).sqrt());
        Ok(Tensor::from_vec(v, (rows, cols), device)?)
    };
    out.insert("model.embed_tokens.weight".into(), rand(c.vocab_size, c.hidden_size, 1.0)?);
    if !c.tie_word_embeddings {
        out.insert("lm_head.weight".into(), rand(c.vocab_size, c.hidden_size, 1.0 / c.hidden_size as f64)?);
    }
    let ones = Tensor::ones(c.hidden_size, DType::F32, device)?;
    out.insert("model.norm.weight".into(), ones.clone());
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.insert(format!("{p}.input_layernorm.weight"), ones.clone());
        out.insert(format!("{p}.post_attention_layernorm.weight"), ones.clone());
        for t in Target::ALL {
            let (i, o) = c.dims_of(t);
            out.insert(format!("{p}.{}.weight", t.hf_path()), rand(o, i, 1.0 / i as f64)?);
        }
        if c.attention_bias {
            for t in [Target::Q, Target::K, Target::V] {
                let o = c.dims_of(t).1;
                out.insert(format!("{p}.{}.bias", t.hf_path()), (rand(1, o, 1.0)?.squeeze(0)? * 0.1)?);
            }
        }
    }
    Ok(out)
}
