//! `docraft generate`, `docraft export`, `docraft validate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use docraft_core::{Chunk, Embedder, Generator, Sampling, jsonl::read_all};
use docraft_qa_gen::export::{ExportOptions, Format, export};
use docraft_qa_gen::validate::{TokenCounter, validate};
use docraft_qa_gen::{
    Budget, Filters, GenerateOptions, Generation, JsonMode, LlamaConfig, LlamaGenerator, OpenAiConfig, OpenAiGenerator,
    Price, RunFiles, default_gguf,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    /// llama.cpp in process, any GGUF file.
    Llama,
    /// An OpenAI-compatible HTTP endpoint.
    Openai,
}

/// The generator options `generate` and `raft` share.
#[derive(Args)]
pub struct GeneratorArgs {
    /// Which generator.
    #[arg(long, value_enum, default_value = "llama")]
    backend: Backend,
    /// llama: the GGUF file (default: the SmolLM2 model setup.sh fetches); openai: the model
    /// name.
    #[arg(long)]
    model: Option<String>,
    /// openai: base URL including /v1, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    base_url: Option<String>,
    /// openai: environment variable holding the API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// openai: allow an endpoint that is not on this machine. Requests that leave it are
    /// logged to --request-log.
    #[arg(long)]
    allow_remote: bool,
    /// openai: log of requests sent off this machine (default: QA_NAME.requests.jsonl).
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// openai: how JSON output is requested: off, object, schema.
    #[arg(long, default_value = "object")]
    json_mode: JsonMode,
    /// openai: requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// openai: seconds before a request times out.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// openai: retries after 429, 5xx, timeouts.
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// llama: sequences decoded together.
    #[arg(long, default_value_t = 8)]
    parallel: u32,
    /// llama: CPU threads (default: all).
    #[arg(long)]
    threads: Option<u32>,
    /// llama: context per sequence, in tokens.
    #[arg(long, default_value_t = 2048)]
    context: u32,
    /// llama: chat template name when the GGUF has none (e.g. gemma, chatml).
    #[arg(long)]
    chat_template: Option<String>,
    /// llama: layers offloaded to the GPU (builds with the `cuda` feature).
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
    /// llama: do not constrain output with a JSON grammar.
    #[arg(long)]
    no_grammar: bool,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    /// Seed: the same chunks, model, settings and seed give the same dataset (llama).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl GeneratorArgs {
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Sampling settings from the flags.
    pub fn sampling(&self) -> Sampling {
        Sampling { temperature: self.temperature, top_p: self.top_p, seed: self.seed, ..Sampling::default() }
    }

    /// Loads the model or connects to the endpoint; remote requests are logged to
    /// --request-log, else `default_log`.
    pub fn build(&self, default_log: PathBuf) -> Result<Box<dyn Generator>> {
        let a = self;
        Ok(match a.backend {
            Backend::Llama => {
                let model = a.model.as_ref().map_or_else(default_gguf, PathBuf::from);
                let mut cfg = LlamaConfig::new(model)
                    .with_context(a.context)?
                    .with_parallel(a.parallel)?
                    .with_gpu_layers(a.gpu_layers)
                    .with_grammar(!a.no_grammar);
                if let Some(t) = a.threads {
                    cfg = cfg.with_threads(t)?;
                }
                if let Some(name) = &a.chat_template {
                    cfg = cfg.with_chat_template(name);
                }
                Box::new(LlamaGenerator::load(cfg)?)
            }
            Backend::Openai => {
                let Some(url) = &a.base_url else {
                    bail!("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
                };
                let Some(model) = &a.model else { bail!("--backend openai needs --model NAME") };
                let log = a.request_log.clone().unwrap_or_else(|| default_log.clone());
                let mut cfg = OpenAiConfig::new(url, model)
                    .with_concurrency(a.concurrency)?
                    .with_timeout(Duration::from_secs_f64(a.timeout.max(0.001)))?
                    .with_retries(a.retries, Duration::from_secs(1))
                    .with_remote(a.allow_remote, Some(log.clone()))
                    .with_json_mode(a.json_mode);
                cfg.api_key_env.clone_from(&a.api_key_env);
                let g = OpenAiGenerator::new(cfg)?;
                if g.is_remote() {
                    eprintln!("note: {url} is not on this machine; every request is logged to {}", log.display());
                }
                Box::new(g)
            }
        })
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// chunks.jsonl written by `docraft ingest`.
    chunks: PathBuf,
    /// The dataset to write (appended to; QA_NAME.rejected.jsonl and QA_NAME.progress.jsonl
    /// go beside it).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
    /// Question/answer pairs asked for per chunk.
    #[arg(short = 'n', long, default_value_t = 3)]
    questions_per_chunk: usize,
    /// Most tokens generated per chunk.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Only the first N chunks.
    #[arg(long)]
    limit: Option<usize>,
    /// Stop (cleanly, resumable) once this many pairs are accepted in this run.
    #[arg(long)]
    max_pairs: Option<u64>,
    /// Stop before this run would use more tokens (prompt + output).
    #[arg(long)]
    max_tokens_total: Option<u64>,
    /// Stop before this run would cost more (needs --price-input and --price-output).
    #[arg(long)]
    max_cost: Option<f64>,
    /// Price per million prompt tokens, for the estimate and --max-cost.
    #[arg(long, requires = "price_output")]
    price_input: Option<f64>,
    /// Price per million generated tokens.
    #[arg(long, requires = "price_input")]
    price_output: Option<f64>,
    /// Print the token and cost estimate and stop.
    #[arg(long)]
    estimate_only: bool,
    /// Least share of the answer's words found in the chunk (0 turns the check off).
    #[arg(long, default_value_t = 0.5)]
    grounding: f32,
    /// Turn off the language check.
    #[arg(long)]
    no_language_filter: bool,
    /// Near-duplicate threshold (0 turns the check off): trigram similarity, or cosine with
    /// --dedup-embeddings.
    #[arg(long, default_value_t = 0.9)]
    dedup: f32,
    /// Judge near-duplicates by embeddings (the local all-MiniLM-L6-v2 model).
    #[arg(long)]
    dedup_embeddings: bool,
    /// Hide the progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// The chunks of a chunks.jsonl (the first `limit`), warning about a torn last line.
pub fn read_chunks(path: &std::path::Path, limit: Option<usize>) -> Result<Vec<Chunk>> {
    let (mut chunks, torn) = read_all::<Chunk>(path)?;
    if let Some(t) = torn {
        eprintln!("warning: {t}");
    }
    if let Some(n) = limit {
        chunks.truncate(n);
    }
    Ok(chunks)
}

pub fn generate(a: &GenerateArgs) -> Result<ExitCode> {
    let chunks = read_chunks(&a.chunks, a.limit)?;
    let generator = a.generator.build(RunFiles::new(&a.output).requests)?;
    let price = match (a.price_input, a.price_output) {
        (Some(i), Some(o)) => Some(Price { input_per_million: i, output_per_million: o }),
        _ => None,
    };
    let options = GenerateOptions {
        questions_per_chunk: a.questions_per_chunk,
        max_tokens: a.max_tokens,
        sampling: a.generator.sampling(),
        filters: Filters {
            grounding: (a.grounding > 0.0).then_some(a.grounding),
            language: !a.no_language_filter,
            dedup: (a.dedup > 0.0).then_some(a.dedup),
            ..Filters::default()
        },
        budget: Budget { max_pairs: a.max_pairs, max_tokens: a.max_tokens_total, max_cost: a.max_cost },
        price,
        batch: None,
    };
    let embedder: Option<Box<dyn Embedder>> = if a.dedup_embeddings {
        let dir = docraft_index::default_model_dir();
        Some(Box::new(
            docraft_index::OnnxEmbedder::from_dir(&dir, docraft_index::EmbedOptions::default())
                .with_context(|| format!("--dedup-embeddings needs the embedding model in {}", dir.display()))?,
        ))
    } else {
        None
    };
    let mut run = Generation::new(generator.as_ref(), options)?;
    if let Some(e) = embedder.as_deref() {
        run = run.with_embedder(e);
    }

    let est = run.estimate(&chunks, &a.output)?;
    let approx = if est.exact { "" } else { "about " };
    eprint!(
        "{} chunks to do ({} already done): {approx}{} prompt tokens + at most {} generated",
        est.chunks,
        chunks.len() - est.chunks,
        est.prompt_tokens,
        est.max_completion_tokens
    );
    match est.max_cost {
        Some(c) => eprintln!(", at most {c:.4} in cost"),
        None => eprintln!(),
    }
    if a.estimate_only {
        return Ok(ExitCode::SUCCESS);
    }

    let bar = crate::progress_bar(a.quiet, est.chunks as u64, "chunks");
    let summary = run.run(&chunks, &a.output, &|p: &docraft_qa_gen::Progress| {
        bar.set_position(p.done as u64);
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let rate = (p.accepted + p.rejected) as f64 / secs;
        #[allow(clippy::cast_precision_loss)]
        let tps = p.usage.completion_tokens as f64 / secs;
        bar.set_message(format!("{} kept, {} rejected, {rate:.2} pairs/s, {tps:.0} tok/s", p.accepted, p.rejected));
    })?;
    bar.finish_and_clear();

    let files = RunFiles::new(&a.output);
    println!(
        "chunks: {} ({} done before, {} now, {} left)",
        summary.chunks, summary.resumed, summary.processed, summary.remaining
    );
    println!(
        "pairs: {} generated = {} accepted + {} rejected",
        summary.generated,
        summary.accepted,
        summary.rejected_total()
    );
    for (reason, n) in &summary.rejected {
        println!("  rejected {reason}: {n}");
    }
    if summary.repaired > 0 {
        println!("outputs repaired before parsing: {}", summary.repaired);
    }
    if summary.rolled_back > 0 {
        println!("records of an interrupted chunk moved aside and redone: {}", summary.rolled_back);
    }
    println!(
        "tokens this run: {} prompt + {} generated in {:.1} s",
        summary.usage.prompt_tokens, summary.usage.completion_tokens, summary.seconds
    );
    if let Some(why) = &summary.stopped {
        println!("stopped early: {why}; run the same command again to continue");
    }
    println!("dataset: {}\nrejected: {}", files.accepted.display(), files.rejected.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    /// qa.jsonl written by `docraft generate`.
    input: PathBuf,
    /// Output format: openai-chat, completion, alpaca, sharegpt, text-label.
    #[arg(long)]
    format: Format,
    /// The training file (the validation file goes beside it as NAME.valid.jsonl).
    #[arg(short, long)]
    output: PathBuf,
    /// A system prompt for every example.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Share of pairs held out for validation, split by source document.
    #[arg(long, default_value_t = 0.0)]
    valid_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn export_cmd(a: &ExportArgs) -> Result<ExitCode> {
    let options = ExportOptions {
        format: a.format,
        system_prompt: a.system_prompt.clone(),
        valid_fraction: a.valid_fraction,
        seed: a.seed,
    };
    let r = export(&a.input, &a.output, &options)?;
    println!("train: {} ({} examples from {} documents)", r.train_path.display(), r.train, r.train_docs);
    if let Some(p) = &r.valid_path {
        println!("valid: {} ({} examples from {} documents)", p.display(), r.valid, r.valid_docs);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The dataset file.
    file: PathBuf,
    /// Its format: openai-chat, completion, alpaca, sharegpt, text-label.
    #[arg(long, default_value = "openai-chat")]
    format: Format,
    /// A tokenizer.json for exact token counts (default: about 4 characters per token).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn validate_cmd(a: &ValidateArgs) -> Result<ExitCode> {
    let counter = match &a.tokenizer {
        Some(p) => TokenCounter::from_file(p)?,
        None => TokenCounter::Estimate,
    };
    let r = validate(&a.file, a.format, &counter)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let f = a.file.display();
        for p in &r.errors {
            if p.line > 0 {
                println!("{f}:{}: error: {}: {}", p.line, p.kind, p.message);
            } else {
                println!("{f}: error: {}: {}", p.kind, p.message);
            }
        }
        for p in r.warnings.iter().take(20) {
            if p.line > 0 {
                println!("{f}:{}: warning: {}: {}", p.line, p.kind, p.message);
            } else {
                println!("{f}: warning: {}: {}", p.kind, p.message);
            }
        }
        let t = &r.tokens;
        let est = if r.exact_tokens { "" } else { " (estimated: about 4 characters per token)" };
        println!("examples: {}", r.examples);
        println!(
            "tokens per example{est}: min {} / median {} / mean {:.1} / p95 {} / max {}",
            t.min, t.median, t.mean, t.p95, t.max
        );
        println!("over {} tokens: {}", docraft_qa_gen::validate::MAX_TOKENS_PER_EXAMPLE, r.too_long);
        println!(
            "default training: {} epochs x {} tokens = about {} billed tokens",
            r.epochs, r.billing_tokens_per_epoch, r.billed_tokens
        );
        if r.is_valid() {
            println!("valid");
        } else {
            let counts: Vec<String> = r.error_counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("INVALID: {} errors ({})", r.errors.len(), counts.join(", "));
        }
    }
    Ok(if r.is_valid() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
