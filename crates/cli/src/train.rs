//! `docraft train`, `convert`, `merge` and `chat`: thin wrappers over docraft-train.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use docraft_core::{ChatMessage, Role};
use docraft_pipeline::settings::TrainSettings;
use docraft_pipeline::stage::train::TrainPaths;
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};
use docraft_train::generate::{ChatModel, GenOptions};
use docraft_train::{Adapter, BaseModel, BatchSize, GgufQuant, Llama, Settings};

/// Where the base model comes from, and on which device it runs.
#[derive(Args)]
pub struct BaseArgs {
    /// The base model: a GGUF file (dequantized to f32) or a Hugging Face directory
    /// (config.json, *.safetensors, tokenizer.json).
    #[arg(long, value_name = "FILE.gguf|HF_DIR")]
    base: PathBuf,
    /// Run on CUDA device 0 (needs a build with `--features cuda`); bf16 weights there.
    #[arg(long)]
    cuda: bool,
}

impl BaseArgs {
    fn load_base(&self) -> Result<(BaseModel, candle_core::Device)> {
        let device = docraft_train::device(self.cuda)?;
        let base = BaseModel::load(&self.base, &device).with_context(|| format!("loading {}", self.base.display()))?;
        Ok((base, device))
    }

    fn load(&self) -> Result<(BaseModel, Llama)> {
        stage::train::load_base(&self.base, self.cuda).with_context(|| format!("loading {}", self.base.display()))
    }
}

/// A flag's help with the library's default.
fn h(what: &str, default: impl std::fmt::Display) -> String {
    format!("{what} [default: {default}]")
}

fn d() -> Settings {
    Settings::default()
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    base: BaseArgs,
    /// Training data (JSONL): chat `messages` (OpenAI format, e.g. `docraft export` or the
    /// RAFT `*.train.chat.jsonl`), ShareGPT `conversations`, `prompt`/`completion`, Alpaca
    /// `instruction`/`output`, `text`/`label` or plain `text`.
    #[arg(long)]
    data: PathBuf,
    /// Validation data in the same formats: loss and token accuracy every --eval-every steps.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// The run directory: config.json, metrics.jsonl, events.jsonl, checkpoints/, adapter/.
    #[arg(short, long)]
    output: PathBuf,
    /// A YAML or JSON file of settings (any field below, plus warmup_steps, scheduler,
    /// target_modules, packing, weight_decay, max_grad_norm, adam_*, keep_checkpoints, ...).
    /// Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, help = h("Passes over the data, 1-10", d().epochs))]
    epochs: Option<usize>,
    #[arg(long, help = h("Peak learning rate, 1e-6 to 1e-3", d().learning_rate))]
    learning_rate: Option<f64>,
    #[arg(long, help = h("Examples per optimizer step, 1-256 or `auto`", batch(d().batch_size)))]
    batch_size: Option<String>,
    #[arg(long, help = h("Examples per forward pass (the batch is accumulated)", d().micro_batch_size))]
    micro_batch_size: Option<usize>,
    #[arg(long, help = h("LoRA rank, 4-64", d().lora_rank))]
    lora_rank: Option<usize>,
    #[arg(long, help = h("LoRA alpha, 8-64", d().lora_alpha))]
    lora_alpha: Option<f64>,
    #[arg(long, help = h("Dropout on the LoRA path, 0-0.5", d().lora_dropout))]
    lora_dropout: Option<f64>,
    #[arg(long, value_delimiter = ',', help = h("Adapted projections, comma-separated", d().target_modules.join(",")))]
    target_modules: Option<Vec<String>>,
    #[arg(long, help = h("Longest example in tokens; longer ones are cut and counted", d().max_seq_len))]
    max_seq_len: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, help = h("Evaluate every N steps (and at the end)", d().eval_every))]
    eval_every: Option<usize>,
    #[arg(long, help = h("Checkpoint every N steps (and at the end)", d().checkpoint_every))]
    checkpoint_every: Option<usize>,
    #[arg(long, help = h("Seed of every random choice", d().seed))]
    seed: Option<u64>,
    /// Continue from the newest checkpoint in the run directory (after a crash or kill).
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn batch(b: BatchSize) -> String {
    match b {
        BatchSize::Auto => "auto".into(),
        BatchSize::Fixed(n) => n.to_string(),
    }
}

fn settings(a: &TrainArgs) -> Result<Settings> {
    let mut s = match &a.config {
        Some(p) => Settings::from_file(p)?,
        None => Settings::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { s.$f = v; } )* };
    }
    set!(
        epochs,
        learning_rate,
        micro_batch_size,
        lora_rank,
        lora_alpha,
        lora_dropout,
        max_seq_len,
        eval_every,
        checkpoint_every,
        seed,
        target_modules
    );
    if let Some(b) = &a.batch_size {
        s.batch_size = BatchSize::parse(b)?;
    }
    if a.max_steps.is_some() {
        s.max_steps = a.max_steps;
    }
    s.validate()?;
    Ok(s)
}

pub fn train(a: &TrainArgs) -> Result<ExitCode> {
    let settings = TrainSettings { enabled: true, cuda: a.base.cuda, settings: settings(a)? };
    let paths = TrainPaths {
        base: a.base.base.clone(),
        data: a.data.clone(),
        valid: a.valid.clone(),
        output: a.output.clone(),
    };
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Train, &sink, crate::render::cancel_on_interrupt());
    let report = stage::train::run(&settings, &paths, a.resume, &ctx)
        .with_context(|| format!("training on {}", a.data.display()))?;
    term.summary(Stage::Train, &stage::train::summary(&report));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The GGUF file (any llama-family model with a byte-level BPE vocabulary).
    gguf: PathBuf,
    /// The Hugging Face directory to write (config.json, model.safetensors, tokenizer files).
    #[arg(short, long)]
    output: PathBuf,
}

pub fn convert(a: &ConvertArgs) -> Result<ExitCode> {
    let base = BaseModel::from_gguf(&a.gguf, &candle_core::Device::Cpu)?;
    base.save_hf(&a.output)?;
    println!("{} tensors written to {}", base.weights.len(), a.output.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct MergeArgs {
    #[command(flatten)]
    base: BaseArgs,
    /// The adapter directory (adapter_config.json + adapter_model.safetensors, ours or peft's).
    #[arg(long)]
    adapter: PathBuf,
    /// The merged model, in Hugging Face layout.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn merge(a: &MergeArgs) -> Result<ExitCode> {
    let (mut base, device) = a.base.load_base()?;
    let adapter = Adapter::load_peft(&a.adapter, &base.config, candle_core::DType::F32, &device)?;
    adapter.merge_into(&mut base.weights)?;
    base.save_hf(&a.output)?;
    println!("merged {} into {}", a.adapter.display(), a.output.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportGgufArgs {
    /// The base the adapter was trained on, as a GGUF file (its metadata, tokenizer and chat
    /// template are copied).
    #[arg(long, value_name = "FILE.gguf")]
    base: PathBuf,
    /// The adapter directory (adapter_config.json + adapter_model.safetensors, ours or peft's).
    #[arg(long)]
    adapter: PathBuf,
    /// The GGUF file to write.
    #[arg(short, long, value_name = "FILE.gguf")]
    output: PathBuf,
    /// Tensor type of the merged model's weights (norms stay f32).
    #[arg(long, default_value_t = GgufQuant::default())]
    quant: GgufQuant,
    /// Write the adapter alone as a llama.cpp LoRA GGUF instead of a merged model.
    #[arg(long, conflicts_with = "quant")]
    lora_only: bool,
}

pub fn export_gguf(a: &ExportGgufArgs) -> Result<ExitCode> {
    let done = if a.lora_only {
        docraft_train::export_lora(&a.base, &a.adapter, &a.output)?
    } else {
        docraft_train::export_merged(&a.base, Some(&a.adapter), &a.output, a.quant)?
    };
    let types: Vec<String> = done.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let what = if a.lora_only { "LoRA pairs" } else { "weights merged" };
    println!(
        "{} tensors ({}), {} {what}, {:.1} MB -> {} (Ollama: {})",
        done.tensors,
        types.join(", "),
        done.adapted,
        done.bytes as f64 / 1e6,
        done.path.display(),
        done.modelfile.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    base: BaseArgs,
    /// An adapter directory to apply (merged into the weights for speed).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// One message to answer; without it, read messages from standard input, one per line,
    /// keeping the conversation.
    message: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn chat(a: &ChatArgs) -> Result<ExitCode> {
    let (base, model) = a.base.load()?;
    let adapter = match &a.adapter {
        Some(dir) => Some(Adapter::load_peft(dir, &base.config, model.dtype(), model.device())?),
        None => None,
    };
    let chat = ChatModel::new(&model, adapter.as_ref(), base.tokenizer()?, base.template()?)?;
    let opts =
        GenOptions { max_tokens: a.max_tokens, temperature: a.temperature, seed: a.seed, ..GenOptions::default() };
    let mut history: Vec<ChatMessage> = a.system.iter().map(|s| ChatMessage::new(Role::System, s.as_str())).collect();
    let answer = |history: &mut Vec<ChatMessage>, text: &str| -> Result<()> {
        history.push(ChatMessage::new(Role::User, text));
        let mut out = std::io::stdout();
        let reply = chat.reply(history, &opts, |t| {
            let _ = write!(out, "{t}");
            let _ = out.flush();
        })?;
        println!();
        history.push(ChatMessage::new(Role::Assistant, reply));
        Ok(())
    };
    if let Some(m) = &a.message {
        answer(&mut history, m)?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            answer(&mut history, line.trim())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
