use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use docraft_core::{EmbedError, Embedder, content_hash};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedOptions, check_model_dir, model_err};

/// Files a model directory must hold for candle.
const MODEL_FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// A BERT-style sentence-embedding model run by candle on the CPU, from `model.safetensors`:
/// no ONNX Runtime needed. Mean pooling over the attention mask, L2-normalized, as the ONNX
/// embedder does, so the same model gives the same vectors.
pub struct CandleEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    pool: Option<rayon::ThreadPool>,
    id: String,
    options: EmbedOptions,
}

impl std::fmt::Debug for CandleEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleEmbedder").field("id", &self.id).field("options", &self.options).finish_non_exhaustive()
    }
}

fn runtime(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Runtime(format!("candle: {e}"))
}

impl CandleEmbedder {
    /// How the ids of this backend's models begin (`candle:MODEL:...`): an index records the id
    /// of the model that built it, so this tells which backend reads it.
    pub const ID_PREFIX: &'static str = "candle:";

    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    ///
    /// # Errors
    /// [`EmbedError::Model`] naming a missing or unreadable file, or weights that do not fit
    /// the config.
    pub fn from_dir(dir: impl AsRef<Path>, options: EmbedOptions) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        check_model_dir(dir, &MODEL_FILES)?;
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| model_err(&dir.join(f), e));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| model_err(&dir.join("config.json"), format!("not a BERT config: {e}")))?;
        let weights = read("model.safetensors")?;
        let id = format!(
            "{}{}:{}",
            Self::ID_PREFIX,
            dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
            content_hash(&weights).get(..16).unwrap_or_default()
        );
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| model_err(&dir.join("model.safetensors"), e))?;
        let model = BertModel::load(vb, &config).map_err(|e| model_err(&dir.join("model.safetensors"), e))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| model_err(&dir.join("tokenizer.json"), e))?;
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        let pad_token = tokenizer.get_padding().map_or_else(|| "[PAD]".to_string(), |p| p.pad_token.clone());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: options.max_tokens.max(1), ..Default::default() }))
            .map_err(|e| model_err(&dir.join("tokenizer.json"), e))?;
        let pool = match options.threads {
            Some(n) => Some(rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build().map_err(runtime)?),
            None => None,
        };
        Ok(Self { model, tokenizer, device, pool, id, options })
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(runtime)?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor, EmbedError> {
            let data: Vec<Tensor> = encodings
                .iter()
                .map(|e| Tensor::new(f(e), &self.device))
                .collect::<candle_core::Result<_>>()
                .map_err(runtime)?;
            Tensor::stack(&data, 0).map_err(runtime)
        };
        let ids = rows(&|e| e.get_ids())?;
        let type_ids = rows(&|e| e.get_type_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let pooled = (|| -> candle_core::Result<Tensor> {
            let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let mean = summed.broadcast_div(&mask.sum(1)?)?;
            mean.broadcast_div(&mean.sqr()?.sum_keepdim(1)?.sqrt()?)
        })()
        .map_err(runtime)?;
        pooled.to_vec2::<f32>().map_err(runtime)
    }
}

impl Embedder for CandleEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        super::by_length(texts, self.options.batch_size, |batch| match &self.pool {
            Some(pool) => pool.install(|| self.embed_batch(batch)),
            None => self.embed_batch(batch),
        })
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}
