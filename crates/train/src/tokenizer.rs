//! Tokenizers rebuilt from GGUF metadata, and chat templates rendered with minijinja.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use docraft_core::ChatMessage;
use minijinja::Environment;
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};

/// The ChatML template, used when a model ships none.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A Hugging Face chat template (Jinja), compiled once.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos` and `eos` are the strings the template may refer to.
    ///
    /// # Errors
    /// [`TrainError::Template`] with minijinja's message when the template does not compile.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| "26 Nov 2026".to_string());
        env.add_template_owned("chat", source.to_string()).map_err(|e| TrainError::Template(e.to_string()))?;
        Ok(Self { env, source: source.to_string(), bos: bos.to_string(), eos: eos.to_string() })
    }

    /// The Jinja source.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` (each seen by the template as `{role, content}`, the role in lower
    /// case); with `add_generation_prompt` the text ends where the assistant's reply begins.
    ///
    /// # Errors
    /// [`TrainError::Template`] when rendering fails (templates may raise on role orders they reject).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| TrainError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| TrainError::Template(e.to_string()))
    }
}

/// Tokenizer files rebuilt from a GGUF: `tokenizer.json` and what `tokenizer_config.json` needs.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    /// The `tokenizer.json` document.
    pub json: Value,
    /// The chat template stored in the file, if any.
    pub chat_template: Option<String>,
    /// Beginning-of-sequence token text.
    pub bos: Option<String>,
    /// End-of-sequence token text.
    pub eos: Option<String>,
    /// Padding token text.
    pub pad: Option<String>,
}

fn meta<'a>(content: &'a Content, key: &str) -> Option<&'a GgufValue> {
    content.metadata.get(key)
}

fn strings(path: &Path, content: &Content, key: &str) -> Result<Vec<String>> {
    let v = meta(content, key).ok_or_else(|| TrainError::model(path, format!("GGUF has no `{key}`")))?;
    let items = v.to_vec().map_err(|e| TrainError::model(path, format!("`{key}`: {e}")))?;
    items.iter().map(|s| s.to_string().cloned().map_err(|e| TrainError::model(path, format!("`{key}`: {e}")))).collect()
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl GgufTokenizer {
    /// Rebuilds the byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`) of a GGUF file.
    ///
    /// # Errors
    /// [`TrainError::Model`] when the vocabulary is missing or uses a tokenizer kind not supported yet
    /// (SentencePiece `llama` vocabularies: load those from a Hugging Face directory instead).
    pub fn from_gguf(path: &Path, content: &Content) -> Result<Self> {
        let kind = meta(content, "tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if kind != "gpt2" {
            return Err(TrainError::model(
                path,
                format!(
                    "tokenizer kind `{kind}` is not supported from GGUF (only byte-level BPE `gpt2`); use a Hugging Face directory"
                ),
            ));
        }
        let tokens = strings(path, content, "tokenizer.ggml.tokens")?;
        let merges = strings(path, content, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = meta(content, "tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect())
            .unwrap_or_default();
        let pre = meta(content, "tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        let pre_tokenizer = match pre.as_str() {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            "" | "default" | "gpt2" => byte_level(true),
            "qwen2" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
            "llama-bpe" | "llama3" => {
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
            }
            other => {
                return Err(TrainError::model(
                    path,
                    format!("pre-tokenizer `{other}` is not supported from GGUF; use a Hugging Face directory"),
                ));
            }
        };
        let vocab: serde_json::Map<String, Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3 | 4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect();
        let json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        let token = |key: &str| {
            meta(content, key).and_then(|v| v.to_u32().ok()).and_then(|id| tokens.get(id as usize)).cloned()
        };
        Ok(Self {
            json,
            chat_template: meta(content, "tokenizer.chat_template").and_then(|v| v.to_string().ok()).cloned(),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            pad: token("tokenizer.ggml.padding_token_id"),
        })
    }

    /// The usable tokenizer.
    ///
    /// # Errors
    /// [`TrainError::Tokenizer`] when the tokenizers crate rejects the document.
    pub fn build(&self) -> Result<Tokenizer> {
        tokenizer_from_json(&self.json)
    }
}

/// Builds a [`Tokenizer`] from a `tokenizer.json` document.
///
/// # Errors
/// [`TrainError::Tokenizer`] when the document is not a valid tokenizer.
pub fn tokenizer_from_json(json: &Value) -> Result<Tokenizer> {
    let bytes = serde_json::to_vec(json).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    Tokenizer::from_bytes(bytes).map_err(|e| TrainError::Tokenizer(e.to_string()))
}

/// A byte-level `tokenizer.json` with no merges: `specials` first, then the 256 byte tokens; for
/// tests and tiny models.
#[must_use]
pub fn byte_tokenizer_json(specials: &[&str]) -> Value {
    let bytes = byte_alphabet();
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert((*s).to_string(), json!(i));
        added.push(json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": true}));
    }
    for (i, c) in bytes.iter().enumerate() {
        vocab.insert(c.to_string(), json!(specials.len() + i));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": byte_level(true),
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

/// GPT-2's byte-to-unicode table, in byte order.
fn byte_alphabet() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut out = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            out[b as usize] = char::from_u32(256 + extra).unwrap_or('?');
            extra += 1;
        } else {
            out[b as usize] = char::from_u32(b).unwrap_or('?');
        }
    }
    out
}
