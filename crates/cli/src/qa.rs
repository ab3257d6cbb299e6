//! `docraft generate`, `docraft export`, `docraft validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use docraft_llm::{Backend, GeneratorSettings, JsonMode};
use docraft_pipeline::settings::{ExportSettings, QaSettings, QuestionChecks};
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};
use docraft_qa_gen::export::Format;
use docraft_qa_gen::validate::{TokenCounter, validate};

/// The generator options `generate` and `raft` share: the fields of [`GeneratorSettings`],
/// whose `Default` gives every default shown in `--help`.
#[derive(Args, Debug)]
pub struct GeneratorArgs {
    /// Which generator: llama (llama.cpp in process, any GGUF file) or openai (an
    /// OpenAI-compatible HTTP endpoint).
    #[arg(long, default_value_t = GeneratorSettings::default().backend)]
    backend: Backend,
    /// llama: the GGUF file (default: the SmolLM2 model setup.sh fetches); openai: the model
    /// name.
    #[arg(long)]
    model: Option<String>,
    /// openai: base URL including /v1, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    base_url: Option<String>,
    /// openai: environment variable holding the API key.
    #[arg(long, default_value_t = GeneratorSettings::default().api_key_env)]
    api_key_env: String,
    /// openai: allow an endpoint that is not on this machine. Requests that leave it are
    /// logged to --request-log.
    #[arg(long)]
    allow_remote: bool,
    /// openai: log of requests sent off this machine (default: QA_NAME.requests.jsonl).
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// openai: how JSON output is requested: off, object, schema.
    #[arg(long, default_value_t = GeneratorSettings::default().json_mode)]
    json_mode: JsonMode,
    /// openai: requests in flight at once.
    #[arg(long, default_value_t = GeneratorSettings::default().concurrency)]
    concurrency: usize,
    /// openai: seconds before a request times out.
    #[arg(long, default_value_t = GeneratorSettings::default().timeout)]
    timeout: f64,
    /// openai: retries after 429, 5xx, timeouts.
    #[arg(long, default_value_t = GeneratorSettings::default().retries)]
    retries: u32,
    /// llama: sequences decoded together.
    #[arg(long, default_value_t = GeneratorSettings::default().parallel)]
    parallel: u32,
    /// llama: CPU threads (default: all).
    #[arg(long)]
    threads: Option<u32>,
    /// llama: context per sequence, in tokens.
    #[arg(long, default_value_t = GeneratorSettings::default().context)]
    context: u32,
    /// llama: chat template name when the GGUF has none (e.g. gemma, chatml).
    #[arg(long)]
    chat_template: Option<String>,
    /// llama: layers offloaded to the GPU (builds with the `cuda` feature).
    #[arg(long, default_value_t = GeneratorSettings::default().gpu_layers)]
    gpu_layers: u32,
    /// llama: do not constrain output with a JSON grammar.
    #[arg(long)]
    no_grammar: bool,
    /// llama: evaluate every prompt whole instead of reusing the cache of the prefix the
    /// prompts share (the output is the same either way).
    #[arg(long)]
    no_prefix_reuse: bool,
    /// llama: a small GGUF with the same vocabulary that drafts tokens for the model to check
    /// (speculative decoding; greedy requests only, i.e. --temperature 0; same output).
    #[arg(long, value_name = "FILE.gguf")]
    draft_model: Option<PathBuf>,
    /// llama: most tokens the draft model proposes in a row (fewer when it is unsure).
    #[arg(long, default_value_t = GeneratorSettings::default().draft_max)]
    draft_max: u32,
    /// llama: a LoRA adapter in llama.cpp's GGUF format, applied to the model at load time
    /// (`docraft export-gguf --lora-only` writes one).
    #[arg(long, value_name = "FILE.gguf")]
    lora: Option<PathBuf>,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = GeneratorSettings::default().temperature)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = GeneratorSettings::default().top_p)]
    top_p: f32,
    /// Seed: the same chunks, model, settings and seed give the same dataset (llama).
    #[arg(long, default_value_t = GeneratorSettings::default().seed)]
    seed: u64,
}

impl GeneratorArgs {
    /// The settings the flags give.
    pub fn settings(&self) -> GeneratorSettings {
        GeneratorSettings {
            backend: self.backend,
            model: self.model.clone(),
            base_url: self.base_url.clone(),
            api_key_env: self.api_key_env.clone(),
            allow_remote: self.allow_remote,
            request_log: self.request_log.clone(),
            json_mode: self.json_mode,
            concurrency: self.concurrency,
            timeout: self.timeout,
            retries: self.retries,
            parallel: self.parallel,
            threads: self.threads,
            context: self.context,
            chat_template: self.chat_template.clone(),
            gpu_layers: self.gpu_layers,
            no_grammar: self.no_grammar,
            no_prefix_reuse: self.no_prefix_reuse,
            draft_model: self.draft_model.clone(),
            draft_max: self.draft_max,
            lora: self.lora.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
        }
    }
}

/// The question checks `generate` and `raft` share (each on unless turned off here).
#[derive(Args, Debug)]
pub struct QuestionCheckArgs {
    /// Ask about every chunk: do not skip tables of contents, indexes, copyright and license
    /// text or navigation (by default they are skipped, counted and recorded in the
    /// .rejected.jsonl file with their reason).
    #[arg(long)]
    keep_all_chunks: bool,
    /// Accept questions that are not asked as questions (no ?/¿, no question word first).
    #[arg(long)]
    no_question_filter: bool,
    /// Accept questions that point at the passage ("the text", "este fragmento").
    #[arg(long)]
    no_passage_filter: bool,
    /// Accept pairs whose answer answers nothing (a question, "I don't know", "no se
    /// menciona").
    #[arg(long)]
    no_answer_filter: bool,
}

impl QuestionCheckArgs {
    /// The settings these flags give.
    pub fn settings(&self) -> QuestionChecks {
        QuestionChecks {
            keep_all_chunks: self.keep_all_chunks,
            no_question_filter: self.no_question_filter,
            no_passage_filter: self.no_passage_filter,
            no_answer_filter: self.no_answer_filter,
        }
    }
}

fn q() -> QaSettings {
    QaSettings::default()
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
    #[arg(short = 'n', long, default_value_t = q().questions_per_chunk)]
    questions_per_chunk: usize,
    /// Most tokens generated per chunk.
    #[arg(long, default_value_t = q().max_tokens)]
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
    #[arg(long, default_value_t = q().grounding)]
    grounding: f32,
    /// Turn off the language check.
    #[arg(long)]
    no_language_filter: bool,
    /// Near-duplicate threshold (0 turns the check off): trigram similarity, or cosine with
    /// --dedup-embeddings.
    #[arg(long, default_value_t = q().dedup)]
    dedup: f32,
    /// Judge near-duplicates by embeddings (the local default embedder, USE-m3).
    #[arg(long)]
    dedup_embeddings: bool,
    #[command(flatten)]
    checks: QuestionCheckArgs,
    /// Have a judge model score each pair that passes the filters, 1-5 for faithfulness and
    /// usefulness, and reject those below --judge-min-score; its scores stay in the pair.
    #[arg(long)]
    judge: bool,
    /// Least judge score (1-5) both faithfulness and usefulness must reach.
    #[arg(long, default_value_t = q().judge_min_score, value_parser = clap::value_parser!(u8).range(1..=5))]
    judge_min_score: u8,
    /// The judge model: a GGUF file, or a JSON object of generator settings, e.g.
    /// '{"backend": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen"}'
    /// (default: the generator that writes the pairs).
    #[arg(long, value_parser = parse_generator)]
    judge_generator: Option<GeneratorSettings>,
    /// Hide the progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl GenerateArgs {
    fn settings(&self) -> QaSettings {
        QaSettings {
            enabled: true,
            generator: self.generator.settings(),
            questions_per_chunk: self.questions_per_chunk,
            max_tokens: self.max_tokens,
            limit: self.limit,
            max_pairs: self.max_pairs,
            max_tokens_total: self.max_tokens_total,
            max_cost: self.max_cost,
            price_input: self.price_input,
            price_output: self.price_output,
            grounding: self.grounding,
            no_language_filter: self.no_language_filter,
            dedup: self.dedup,
            dedup_embeddings: self.dedup_embeddings,
            checks: self.checks.settings(),
            judge: self.judge,
            judge_min_score: self.judge_min_score,
            judge_generator: self.judge_generator.clone(),
        }
    }
}

/// A generator given on the command line ([`GeneratorSettings::parse_spec`]).
fn parse_generator(s: &str) -> Result<GeneratorSettings, String> {
    GeneratorSettings::parse_spec(s).map_err(|e| e.to_string())
}

pub fn generate(a: &GenerateArgs) -> Result<ExitCode> {
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Qa, &sink, crate::render::cancel_on_interrupt());
    let paths =
        stage::qa::QaPaths { chunks: a.chunks.clone(), output: a.output.clone(), local_model: None, embedder: None };
    let o = stage::qa::generate(&a.settings(), &paths, a.estimate_only, &ctx)?;
    if a.estimate_only {
        return Ok(ExitCode::SUCCESS);
    }
    term.summary(Stage::Qa, &stage::qa::summary(&o, &a.output));
    Ok(ExitCode::SUCCESS)
}

fn e() -> ExportSettings {
    ExportSettings::default()
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
    #[arg(long, default_value_t = e().valid_fraction)]
    valid_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = e().seed)]
    seed: u64,
}

pub fn export_cmd(a: &ExportArgs) -> Result<ExitCode> {
    let settings = ExportSettings {
        format: a.format,
        system_prompt: a.system_prompt.clone(),
        valid_fraction: a.valid_fraction,
        seed: a.seed,
    };
    let r = stage::qa::export_pairs(&settings, &a.input, &a.output)?;
    for line in stage::qa::export_summary(&r) {
        println!("{line}");
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        generator: GeneratorArgs,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["docraft"]).unwrap();
        assert_eq!(cli.generator.settings(), GeneratorSettings::default());
    }

    #[derive(Parser)]
    struct Gen {
        #[command(flatten)]
        generate: GenerateArgs,
    }

    #[test]
    fn generate_flags_default_to_the_settings_and_reach_them() {
        let cli = Gen::try_parse_from(["docraft", "chunks.jsonl", "-o", "qa.jsonl"]).unwrap();
        assert_eq!(cli.generate.settings(), QaSettings { enabled: true, ..QaSettings::default() });
        let cli = Gen::try_parse_from([
            "docraft",
            "chunks.jsonl",
            "-o",
            "qa.jsonl",
            "--keep-all-chunks",
            "--no-question-filter",
            "--no-passage-filter",
            "--no-answer-filter",
            "--judge",
            "--judge-min-score=4",
            r#"--judge-generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "j"}"#,
        ])
        .unwrap();
        let s = cli.generate.settings();
        let c = s.checks;
        assert!(c.keep_all_chunks && c.no_question_filter && c.no_passage_filter && c.no_answer_filter && s.judge);
        assert_eq!(s.judge_min_score, 4);
        let j = s.judge_generator.unwrap();
        assert_eq!((j.backend, j.model.as_deref()), (Backend::Openai, Some("j")));
        let local = Gen::try_parse_from(["docraft", "c", "-o", "q", "--judge-generator", "judge.gguf"]).unwrap();
        assert_eq!(local.generate.settings().judge_generator.unwrap().model.as_deref(), Some("judge.gguf"));
        assert!(Gen::try_parse_from(["docraft", "c", "-o", "q", "--judge-min-score=6"]).is_err());
        assert!(
            Gen::try_parse_from(["docraft", "c", "-o", "q", r#"--judge-generator={"backend": "openai"}"#]).is_err()
        );
        assert!(Gen::try_parse_from(["docraft", "c", "-o", "q", r#"--judge-generator={"modle": "x"}"#]).is_err());
    }

    #[test]
    fn every_flag_reaches_its_setting() {
        let cli = Cli::try_parse_from([
            "docraft",
            "--backend=openai",
            "--model=m",
            "--base-url=http://127.0.0.1:1/v1",
            "--api-key-env=KEY",
            "--allow-remote",
            "--request-log=r.jsonl",
            "--json-mode=schema",
            "--concurrency=7",
            "--timeout=2.5",
            "--retries=1",
            "--parallel=3",
            "--threads=2",
            "--context=512",
            "--chat-template=chatml",
            "--gpu-layers=5",
            "--no-grammar",
            "--no-prefix-reuse",
            "--draft-model=draft.gguf",
            "--draft-max=4",
            "--lora=tuned.gguf",
            "--temperature=0",
            "--top-p=0.5",
            "--seed=9",
        ])
        .unwrap();
        let expected = GeneratorSettings {
            backend: Backend::Openai,
            model: Some("m".into()),
            base_url: Some("http://127.0.0.1:1/v1".into()),
            api_key_env: "KEY".into(),
            allow_remote: true,
            request_log: Some("r.jsonl".into()),
            json_mode: JsonMode::Schema,
            concurrency: 7,
            timeout: 2.5,
            retries: 1,
            parallel: 3,
            threads: Some(2),
            context: 512,
            chat_template: Some("chatml".into()),
            gpu_layers: 5,
            no_grammar: true,
            no_prefix_reuse: true,
            draft_model: Some("draft.gguf".into()),
            draft_max: 4,
            lora: Some("tuned.gguf".into()),
            temperature: 0.0,
            top_p: 0.5,
            seed: 9,
        };
        assert_eq!(cli.generator.settings(), expected);
        assert!(Cli::try_parse_from(["docraft", "--backend=vllm"]).is_err());
        assert!(Cli::try_parse_from(["docraft", "--json-mode=yaml"]).is_err());
    }
}
