//! `docraft train`, `convert`, `merge` and `chat`: thin wrappers over docraft-train.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use docraft_train::data::{Dataset, Encoder};
use docraft_train::generate::{ChatModel, GenOptions};
use docraft_train::{Adapter, BaseModel, BatchSize, Llama, Message, Settings, Trainer};

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
        let (base, device) = self.load_base()?;
        let model = Llama::new(&base, docraft_train::compute_dtype(&device), &device)?;
        Ok((base, model))
    }
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
    /// Passes over the data, 1-10 [default: 3].
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate, 1e-6 to 1e-3 [default: 5e-5].
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Examples per optimizer step, 1-256 or `auto` [default: 32].
    #[arg(long)]
    batch_size: Option<String>,
    /// Examples per forward pass (the batch is accumulated) [default: 4].
    #[arg(long)]
    micro_batch_size: Option<usize>,
    /// LoRA rank, 4-64 [default: 16].
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha, 8-64 [default: 32].
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Dropout on the LoRA path, 0-0.5 [default: 0.1].
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// Adapted projections, comma-separated (q,k,v,o,gate,up,down) [default: all].
    #[arg(long, value_delimiter = ',')]
    target_modules: Option<Vec<String>>,
    /// Longest example in tokens; longer ones are cut and counted [default: 1024].
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Evaluate every N steps (and at the end) [default: 100].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Checkpoint every N steps (and at the end) [default: 500].
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Seed of every random choice [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Continue from the newest checkpoint in the run directory (after a crash or kill).
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
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

fn load_data(path: &Path, enc: &Encoder, quiet: bool) -> Result<Dataset> {
    let d = Dataset::load(path, enc)?;
    for r in &d.rejected {
        eprintln!("skipped: {r}");
    }
    if !quiet {
        eprintln!(
            "{}: {} examples ({} target tokens), {} rejected, {} cut at max_seq_len",
            path.display(),
            d.examples.len(),
            d.target_tokens(),
            d.rejected.len(),
            d.truncated
        );
    }
    Ok(d)
}

pub fn train(a: &TrainArgs) -> Result<ExitCode> {
    let s = settings(a)?;
    let (base, model) = a.base.load()?;
    let enc = Encoder::new(base.tokenizer()?, base.template()?, base.eos.clone(), s.max_seq_len);
    let train = load_data(&a.data, &enc, a.quiet)?;
    let mut trainer = Trainer::new(&model, s, train, &a.output)?
        .with_resume(a.resume)
        .with_info("base_model", serde_json::json!(a.base.base.display().to_string()));
    if let Some(v) = &a.valid {
        trainer = trainer.with_valid(load_data(v, &enc, a.quiet)?);
    }
    let (bs, _, total) = trainer.plan();
    let bar = crate::progress_bar(a.quiet, total as u64, "steps");
    if !a.quiet {
        eprintln!("training {} LoRA parameters, {total} steps of {bs} examples", trainer.adapter().parameter_count());
    }
    let show = |i: &docraft_train::StepInfo| {
        bar.set_position(i.step as u64);
        bar.set_message(format!("loss {:.4}, {:.0} tok/s, lr {:.2e}", i.loss, i.tokens_per_s, i.learning_rate));
    };
    let mut trainer = trainer;
    let report = trainer.run(&show)?;
    bar.finish_and_clear();
    let mut line = format!(
        "{} steps ({} this run{}), last train loss {}",
        report.steps,
        report.steps - report.resumed_from.unwrap_or(0),
        report.resumed_from.map(|s| format!(", resumed from step {s}")).unwrap_or_default(),
        report.last_train_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    if let (Some(l), Some(acc)) = (report.valid_loss, report.valid_accuracy) {
        line += &format!(", valid loss {l:.4}, token accuracy {acc:.3}");
    }
    println!("{line}; {:.0} tokens/s", report.tokens_per_s);
    if report.rejected > 0 || report.truncated > 0 {
        println!(
            "{} lines rejected, {} examples cut at max_seq_len (see events.jsonl)",
            report.rejected, report.truncated
        );
    }
    println!("adapter: {}", report.adapter_dir.display());
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
    let mut history: Vec<Message> = a.system.iter().map(|s| Message::new("system", s)).collect();
    let answer = |history: &mut Vec<Message>, text: &str| -> Result<()> {
        history.push(Message::new("user", text));
        let mut out = std::io::stdout();
        let reply = chat.reply(history, &opts, |t| {
            let _ = write!(out, "{t}");
            let _ = out.flush();
        })?;
        println!();
        history.push(Message::new("assistant", &reply));
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
