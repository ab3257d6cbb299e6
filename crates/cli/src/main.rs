//! `docraft`: turn an organization's documents into training data, on its own machine.
//!
//! The binary only parses arguments, wires the library crates and reports; the work is in
//! `docraft-ingest` and friends.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use docraft_ingest::{AutoLoader, Loader};
use docraft_pipeline::settings::IngestSettings;
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};

mod ask;
mod client;
mod eval;
mod hub;
mod jobs;
mod qa;
mod raft;
mod render;
mod run;
mod search;
mod serve;
mod train;

/// docraft turns your documents (PDF, Markdown, text) into training data and better models,
/// on your own machine.
///
/// Pipeline: ingest (documents -> chunks.jsonl) -> index -> Q&A / RAFT datasets -> LoRA
/// training -> evaluation. Start with `docraft ingest DOCS/ -o chunks.jsonl`.
#[derive(Parser)]
#[command(name = "docraft", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline into one run directory: ingest, index, RAFT (and/or Q&A), LoRA
    /// training, evaluation with a report.
    ///
    /// `docraft run DOCS... -o RUN_DIR --config docraft.toml`. The config has one table per
    /// stage (`[ingest]`, `[index]`, `[qa]`, `[export]`, `[raft]`, `[train]`, `[eval]`) whose keys are the
    /// long flags of that stage's own subcommand, plus `[models]` (generator, base, embedder);
    /// `docraft run --print-config` prints a commented example. RUN_DIR/manifest.json records
    /// each stage's command, the sha256 of its inputs, models, prompts and outputs. Running
    /// the same command again skips unchanged stages, resumes an interrupted one (generation
    /// continues after the last finished chunk, training from its last checkpoint) and redoes
    /// those whose inputs or settings changed.
    Run(Box<run::RunArgs>),
    /// Ask a question over an index: the answer comes from the retrieved chunks only, with
    /// [file, page] citations, streamed as it is written.
    ///
    /// When even the closest chunk is far from the question, it says it does not know (in the
    /// question's language) instead of answering. With --chat, questions are read from
    /// standard input and follow-ups are rewritten with the conversation before retrieval.
    /// The model is any llama-family GGUF or Hugging Face directory, optionally with a LoRA
    /// adapter (--adapter RUN_DIR/train/adapter).
    Ask(Box<ask::AskArgs>),
    /// Evaluate: retrieval recall@k and MRR; open-book QA of a base model and base + adapter
    /// (exact match, token F1, answer contains gold, quotes found); loss curves.
    ///
    /// Writes report.md, report.json, SVG plots and each model's answers (qa.base.jsonl,
    /// qa.adapter.jsonl) into the output directory.
    Eval(Box<eval::EvalArgs>),
    /// Print a document's extracted text (pages separated by a form feed, as pdftotext does).
    Extract(ExtractArgs),
    /// Read documents, split them into chunks and append them to a JSONL file.
    ///
    /// Directories are walked recursively (.pdf, .md, .markdown, .txt unless --include says
    /// otherwise). A file that cannot be read is reported with its reason and the run goes on.
    /// Re-running with the same output skips documents already in it, so an interrupted run
    /// continues where it stopped. Exit status: 0 when at least one file was ingested (or was
    /// already done) and, with --strict, none failed.
    Ingest(IngestArgs),
    /// Build or update a vector index of chunks (`docraft index build chunks.jsonl -o INDEX`).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Search an index: the chunks closest in meaning to a question, with source and pages.
    ///
    /// Scores are cosine similarities (1 is identical). Filters narrow the search inside the
    /// index: `doc=ID`, `source=GLOB` (path or file name, e.g. '*.pdf'), `page=N` or
    /// `page=A-B`, or any metadata field (`language=es`, `format=pdf`). Repeating a key means
    /// "any of these"; different keys must all hold.
    Search(search::SearchArgs),
    /// Generate question/answer pairs from chunks with a local GGUF model or an
    /// OpenAI-compatible endpoint.
    ///
    /// Writes QA.jsonl (accepted pairs), QA.rejected.jsonl (every rejected candidate with its
    /// reason and the raw output) and QA.progress.jsonl (one line per finished chunk). Killed
    /// at any moment, the same command continues where it stopped: finished chunks are not
    /// redone and no pair is written twice. Endpoints that are not on this machine are refused
    /// unless --allow-remote is given.
    Generate(Box<qa::GenerateArgs>),
    /// Export QA pairs as a training file (openai-chat, completion, alpaca, sharegpt,
    /// text-label), optionally holding out whole documents for validation.
    Export(qa::ExportArgs),
    /// Check a dataset file the way OpenAI's fine-tuning data preparation does; exit 1 with a
    /// line-numbered report when it is not valid.
    Validate(qa::ValidateArgs),
    /// Build RAFT records: questions per chunk, each with its oracle chunk among distractors
    /// and a chain of thought quoting the oracle.
    ///
    /// Questions come from the Q&A prompt (OUT_NAME.questions.jsonl); each question then gets
    /// k distractor chunks (hard: its nearest neighbours in --index; random otherwise), the
    /// oracle with probability --p, and a chain of thought whose every
    /// ##begin_quote##...##end_quote## is checked against the oracle. Failures are asked again,
    /// then rejected with their reason (OUT_NAME.rejected.jsonl). Writes one file per split
    /// and format (OUT_NAME.train.chat.jsonl, ...), split by source document. Killed at any
    /// moment, the same command continues where it stopped.
    Raft(Box<raft::RaftArgs>),
    /// Fine-tune a LoRA adapter on a chat / completion / text JSONL dataset (candle, CPU or CUDA).
    ///
    /// Reads the base from a GGUF file (the same one llama.cpp runs) or a Hugging Face
    /// directory. Writes into the run directory: config.json (resolved settings),
    /// metrics.jsonl (loss, validation loss and token accuracy, learning rate, tokens/s, peak
    /// memory per step), events.jsonl, checkpoints/step-N (every --checkpoint-every steps,
    /// written atomically, the newest kept) and adapter/ in Hugging Face peft's layout. Killed
    /// at any moment, the same command with --resume continues on the same trajectory. Threads:
    /// RAYON_NUM_THREADS (default: all cores).
    Train(Box<train::TrainArgs>),
    /// Write a GGUF model in Hugging Face layout (config.json, model.safetensors, tokenizer
    /// files), dequantized to f32, for other tools (transformers, peft).
    Convert(train::ConvertArgs),
    /// Merge a LoRA adapter into its base (W + alpha/r·B·A) and write the model in Hugging Face
    /// layout.
    Merge(train::MergeArgs),
    /// Write a model for llama.cpp and Ollama: the base GGUF with an adapter merged into it
    /// (--quant f16|q8_0|q4_0|q4_k_m), or with --lora-only the adapter alone as a llama.cpp
    /// LoRA GGUF (applied at load time: `docraft generate --backend llama --lora FILE`,
    /// `llama-cli --lora FILE`). An Ollama Modelfile is written beside it.
    ExportGguf(train::ExportGgufArgs),
    /// Talk to a base model, with or without an adapter: one message, or a conversation read
    /// from standard input line by line. Answers stream as they are generated.
    Chat(Box<train::ChatArgs>),
    /// Serve the OpenAI-compatible HTTP API (files, organizations' API keys) until Ctrl-C or
    /// SIGTERM.
    ///
    /// State lives in --data (SQLite in DATA/docraft.db, uploads under DATA/orgs/ORG-ID/) or
    /// in the database of --database (sqlite://PATH or postgres://...). Create an
    /// organization and its first key with `docraft admin org create NAME`.
    Serve(serve::ServeArgs),
    /// Run only the workers of a server, without HTTP, until Ctrl-C or SIGTERM: fine-tuning
    /// jobs, document ingestion and dataset jobs, leased from the database that `docraft serve
    /// --workers 0` processes answer the API from (--database postgres://...), over the same
    /// --data directory. On SIGTERM running jobs checkpoint and go back to the queue; after a
    /// crash another worker takes a job up once its lease (--lease-seconds) runs out.
    Worker(serve::WorkerArgs),
    /// Administer the server's organizations and API keys (works on the same --data or
    /// --database as `docraft serve`, also while it runs).
    #[command(subcommand)]
    Admin(serve::AdminCommand),
    /// Fine-tuning jobs on a `docraft serve` server: create (uploading the dataset), list,
    /// get, cancel, pause, resume, events.
    ///
    /// Every command takes --server URL (DOCRAFT_SERVER, default http://127.0.0.1:8420),
    /// --api-key KEY (DOCRAFT_API_KEY; an organization's key from `docraft admin org create`)
    /// and --json (the server's JSON as returned). Server errors are printed as
    /// `error (HTTP STATUS): MESSAGE` and exit with status 1.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The models and LoRA adapters of a `docraft serve` server: list, get, delete, and
    /// download an adapter's files.
    ///
    /// Takes the same --server, --api-key and --json as `docraft jobs`.
    #[command(subcommand)]
    Hub(hub::HubCommand),
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Embed the chunks of a chunks.jsonl file into an index directory (`-o DIR`) or a
    /// PostgreSQL + pgvector collection (`--store postgres://…/DB?collection=NAME`).
    ///
    /// If the output already holds an index built with the same model, it is updated: chunks
    /// of documents that changed or went away are removed, new chunks added, and texts the
    /// index already has are not embedded again. The new index replaces the old one only
    /// when it is complete; a failed build leaves the old one intact.
    Build(search::IndexBuildArgs),
    /// Copy an index directory into a PostgreSQL + pgvector collection, vectors and all (no
    /// re-embedding): the collection answers the same questions with the same citations.
    Import(search::IndexImportArgs),
}

#[derive(Args)]
struct ExtractArgs {
    /// The document (PDF, Markdown or text).
    file: PathBuf,
    /// Print the document as JSON (text, page byte ranges, sections, metadata) instead.
    #[arg(long)]
    json: bool,
    /// Keep running headers, footers and page numbers of PDFs (removed by default).
    #[arg(long)]
    keep_page_furniture: bool,
}

#[derive(Args)]
struct IngestArgs {
    /// Files and directories to ingest.
    #[arg(required_unless_present = "sql")]
    paths: Vec<PathBuf>,
    /// Read database rows instead of files: sqlite://PATH or postgres://USER@HOST/DB (a
    /// read-only transaction); each row becomes a document. Needs --query.
    #[arg(long, value_name = "URL", requires = "query", conflicts_with = "paths")]
    sql: Option<String>,
    /// The SELECT whose rows are read (with --sql).
    #[arg(long, value_name = "SELECT")]
    query: Option<String>,
    /// The column naming each row (with --sql) [default: the row's position].
    #[arg(long, value_name = "COLUMN")]
    id_column: Option<String>,
    /// Columns making each row's text, comma-separated (with --sql) [default: the text columns].
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    text_columns: Vec<String>,
    /// Columns kept as metadata, comma-separated (with --sql) [default: the others].
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    metadata_columns: Vec<String>,
    /// Most rows read (with --sql).
    #[arg(long, value_name = "N", default_value_t = docraft_ingest::sql::DEFAULT_ROW_LIMIT)]
    row_limit: usize,
    /// The chunks file (JSONL, appended to; one chunk per line with id, doc_id, source, text,
    /// span, pages, headings).
    #[arg(short, long)]
    output: PathBuf,
    /// Write a JSON report: {"files": [{path, status, reason, pages, chunks}], "totals": {..}}.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Chunk size: N, or a range MIN..MAX (chunks aim for MIN and may grow to MAX to end at
    /// a paragraph or sentence). In characters, or in tokens with --tokenizer.
    /// [default: 800..1200 characters, or 200..300 tokens with --tokenizer]
    #[arg(long, value_name = "N|MIN..MAX")]
    chunk_size: Option<String>,
    /// Overlap between consecutive chunks, in the same unit. [default: 100 characters, or 30 tokens]
    #[arg(long)]
    overlap: Option<usize>,
    /// Measure chunks in tokens of this tokenizer.json (its truncation and padding are ignored).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Only take files matching this glob (e.g. '*.pdf', 'manuals/**'); repeatable.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files matching this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Fail (exit 1) if any file fails.
    #[arg(long)]
    strict: bool,
    /// Keep running headers, footers and page numbers of PDFs (removed by default).
    #[arg(long)]
    keep_page_furniture: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar and no per-file lines; the summary is still printed.
    #[arg(short, long)]
    quiet: bool,
}

impl IngestArgs {
    fn settings(&self) -> IngestSettings {
        IngestSettings {
            chunk_size: self.chunk_size.clone(),
            overlap: self.overlap,
            tokenizer: self.tokenizer.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            strict: self.strict,
            keep_page_furniture: self.keep_page_furniture,
            threads: self.threads,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(&a),
        Command::Ask(a) => ask::ask(&a),
        Command::Eval(a) => eval::eval(&a),
        Command::Extract(a) => extract(&a),
        Command::Ingest(a) => ingest(&a),
        Command::Index(IndexCommand::Build(a)) => search::build(&a),
        Command::Index(IndexCommand::Import(a)) => search::import(&a),
        Command::Search(a) => search::search(&a),
        Command::Generate(a) => qa::generate(&a),
        Command::Export(a) => qa::export_cmd(&a),
        Command::Validate(a) => qa::validate_cmd(&a),
        Command::Raft(a) => raft::raft(&a),
        Command::Train(a) => train::train(&a),
        Command::Convert(a) => train::convert(&a),
        Command::Merge(a) => train::merge(&a),
        Command::ExportGguf(a) => train::export_gguf(&a),
        Command::Chat(a) => train::chat(&a),
        Command::Serve(a) => serve::serve(&a),
        Command::Worker(a) => serve::worker(&a),
        Command::Admin(a) => serve::admin(&a),
        Command::Jobs(a) => jobs::jobs(&a),
        Command::Hub(a) => hub::hub(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<client::ClientError>() {
                Some(client::ClientError::Api { status, .. }) => eprintln!("error (HTTP {status}): {e:#}"),
                _ => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn extract(a: &ExtractArgs) -> Result<ExitCode> {
    let doc = AutoLoader::new().keep_page_furniture(a.keep_page_furniture).load_path(&a.file)?;
    for w in &doc.warnings {
        eprintln!("warning: {}: {w}", a.file.display());
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if doc.pages.is_empty() {
        writeln!(out, "{}", doc.text)?;
    } else {
        for span in &doc.pages {
            let page = doc.slice(*span).unwrap_or_default();
            out.write_all(page.as_bytes())?;
            if !page.is_empty() {
                out.write_all(b"\n")?;
            }
            out.write_all(b"\x0c")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn ingest(a: &IngestArgs) -> Result<ExitCode> {
    let settings = a.settings();
    let term = render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Ingest, &sink, crate::render::cancel_on_interrupt());
    if let (Some(url), Some(query)) = (&a.sql, &a.query) {
        let mut source = docraft_ingest::sql::SqlSource::new(url.clone(), query.clone())?
            .with_text_columns(a.text_columns.clone())
            .with_metadata_columns(a.metadata_columns.clone())
            .with_limit(a.row_limit);
        if let Some(c) = &a.id_column {
            source = source.with_id_column(c.clone());
        }
        let o = stage::ingest::run_sql(&settings, &source, &a.output, &ctx)?;
        println!(
            "{} rows: {} chunks appended to {}, {} rows unchanged",
            o.rows,
            o.chunks,
            a.output.display(),
            o.unchanged
        );
        return Ok(ExitCode::SUCCESS);
    }
    let o = stage::ingest::run(&settings, &a.paths, &a.output, a.report.as_deref(), &ctx)?;
    term.summary(Stage::Ingest, &stage::ingest::summary(&o, &a.output));
    if o.cancelled {
        eprintln!("cancelled: the files done are kept; run the same command again to continue");
        return Ok(ExitCode::from(130));
    }
    let t = &o.report.totals;
    let failed_strict = a.strict && t.failed > 0;
    let nothing = t.ok == 0 && t.skipped == 0;
    Ok(if failed_strict || nothing { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    /// The long flags of a subcommand, with `_` for `-`.
    fn flags(path: &[&str]) -> BTreeSet<String> {
        let mut cmd = Cli::command();
        for p in path {
            cmd = cmd.find_subcommand(p).cloned().unwrap_or_else(|| panic!("no subcommand {p}"));
        }
        cmd.get_arguments().filter_map(|a| a.get_long()).map(|l| l.replace('-', "_")).collect()
    }

    /// Flags that are paths, modes or output choices of the command line, not stage settings.
    const CLI_ONLY: &[&str] = &[
        "output",
        "store",
        "quiet",
        "report",
        "help",
        "estimate_only",
        "config",
        "resume",
        "base",
        "data",
        "valid",
        "index",
        "questions",
        "qa_set",
        "adapter",
        "train_run",
        "sql",
        "query",
        "id_column",
        "text_columns",
        "metadata_columns",
        "row_limit",
    ];

    /// Flags of the searching subcommands (`search`, `ask`, `eval`, `raft`) whose keys live in
    /// `[index]` (how the index is searched), not in the subcommand's own section.
    const SEARCH_FLAGS: &[&str] = &["retrieval", "vector_weight", "keyword_weight"];

    #[test]
    fn config_keys_are_the_subcommands_flags() {
        let index_keys = docraft_pipeline::settings::section_keys("index");
        for f in SEARCH_FLAGS {
            assert!(index_keys.contains(*f), "[index] lacks the search key {f}");
        }
        for path in [&["raft"][..], &["eval"], &["search"], &["ask"]] {
            let have = flags(path);
            assert!(SEARCH_FLAGS.iter().all(|f| have.contains(*f)), "`docraft {}` lacks a search flag", path[0]);
        }
        let cases: [(&str, &[&str]); 7] = [
            ("ingest", &["ingest"]),
            ("index", &["index", "build"]),
            ("qa", &["generate"]),
            ("export", &["export"]),
            ("raft", &["raft"]),
            ("train", &["train"]),
            ("eval", &["eval"]),
        ];
        for (section, path) in cases {
            let keys = docraft_pipeline::settings::section_keys(section);
            let flags: BTreeSet<String> = flags(path)
                .into_iter()
                .filter(|f| !CLI_ONLY.contains(&f.as_str()) && !SEARCH_FLAGS.contains(&f.as_str()))
                .collect();
            let missing: Vec<&String> = flags.iter().filter(|f| !keys.contains(*f)).collect();
            assert!(missing.is_empty(), "[{section}] lacks the keys of flags {missing:?}");
            if section != "train" {
                // The trainer has advanced settings (scheduler, warmup_steps, ...) that only
                // its config file sets; every other key is a flag.
                let unflagged: Vec<&String> = keys
                    .iter()
                    .filter(|k| *k != "enabled" && !flags.contains(*k) && !SEARCH_FLAGS.contains(&k.as_str()))
                    .collect();
                assert!(unflagged.is_empty(), "`docraft {}` lacks flags for [{section}] {unflagged:?}", path.join(" "));
            }
        }
    }
}
