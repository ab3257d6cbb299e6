//! `docraft`: turn an organization's documents into training data, on its own machine.
//!
//! The binary only parses arguments, wires the library crates and reports; the work is in
//! `docraft-ingest` and friends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use docraft_ingest::{
    AutoLoader, ChunkSettings, FileFilter, FileReport, FileStatus, Ingest, Loader, Progress, Report, Sizer,
};
use indicatif::{ProgressBar, ProgressStyle};

mod ask;
mod eval;
mod qa;
mod raft;
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
    /// Administer the server's organizations and API keys (works on the same --data or
    /// --database as `docraft serve`, also while it runs).
    #[command(subcommand)]
    Admin(serve::AdminCommand),
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Embed the chunks of a chunks.jsonl file and write an index directory.
    ///
    /// If the output already holds an index built with the same model, it is updated: chunks
    /// of documents that changed or went away are removed, new chunks added, and texts the
    /// index already has are not embedded again. The new index replaces the old one only
    /// when it is complete; a failed build leaves the old one intact.
    Build(search::IndexBuildArgs),
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
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(&a),
        Command::Ask(a) => ask::ask(&a),
        Command::Eval(a) => eval::eval(&a),
        Command::Extract(a) => extract(&a),
        Command::Ingest(a) => ingest(&a),
        Command::Index(IndexCommand::Build(a)) => search::build(&a),
        Command::Search(a) => search::search(&a),
        Command::Generate(a) => qa::generate(&a),
        Command::Export(a) => qa::export_cmd(&a),
        Command::Validate(a) => qa::validate_cmd(&a),
        Command::Raft(a) => raft::raft(&a),
        Command::Train(a) => train::train(&a),
        Command::Convert(a) => train::convert(&a),
        Command::Merge(a) => train::merge(&a),
        Command::Chat(a) => train::chat(&a),
        Command::Serve(a) => serve::serve(&a),
        Command::Admin(a) => serve::admin(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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

/// Parses `N`, `A..B`, `A..=B` or `A-B` (both ends inclusive).
fn parse_capacity(s: &str) -> Result<(usize, usize)> {
    let s = s.trim();
    let parts: Option<(&str, &str)> = s.split_once("..=").or_else(|| s.split_once("..")).or_else(|| s.split_once('-'));
    let (a, b) = match parts {
        Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
        None => (s.parse::<usize>(), s.parse::<usize>()),
    };
    match (a, b) {
        (Ok(a), Ok(b)) if a <= b && b > 0 => Ok((a, b)),
        _ => bail!("--chunk-size {s:?}: expected N or MIN..MAX with 0 < MIN <= MAX"),
    }
}

fn chunk_settings(a: &IngestArgs) -> Result<ChunkSettings> {
    let (sizer, default_size, default_overlap) = match &a.tokenizer {
        Some(t) => (Sizer::tokens_from_file(t)?, (200, 300), 30),
        None => (Sizer::Characters, (800, 1200), 100),
    };
    let (min, max) = match &a.chunk_size {
        Some(s) => parse_capacity(s)?,
        None => default_size,
    };
    let overlap = a.overlap.unwrap_or(if min > default_overlap { default_overlap } else { 0 });
    Ok(ChunkSettings::new(min..=max)?.with_overlap(overlap)?.with_sizer(sizer))
}

struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress for Bar {
    fn start(&self, files: usize) {
        self.bar.set_length(files as u64);
    }

    fn file_done(&self, r: &FileReport) {
        self.bar.inc(1);
        self.bar.set_message(short(&r.path));
        if self.quiet {
            return;
        }
        match r.status {
            FileStatus::Failed => {
                self.bar.println(format!("failed: {}", r.reason.as_deref().unwrap_or("unknown")));
            }
            FileStatus::Ok => {
                for w in &r.warnings {
                    self.bar.println(format!("warning: {}: {w}", r.path));
                }
            }
            FileStatus::Skipped => {}
        }
    }
}

fn short(p: &str) -> String {
    Path::new(p).file_name().map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
}

fn ingest(a: &IngestArgs) -> Result<ExitCode> {
    let settings = chunk_settings(a)?;
    let filter = FileFilter::new(&a.include, &a.exclude)?;
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().context("--threads")?;
    }
    let bar = progress_bar(a.quiet, 0, "files");
    let progress = Bar { bar, quiet: a.quiet };
    let describe = settings.describe();
    let report = Ingest::new(settings)
        .with_loader(AutoLoader::new().keep_page_furniture(a.keep_page_furniture))
        .with_filter(filter)
        .run(&a.paths, &a.output, &progress)?;
    progress.bar.finish_and_clear();

    if let Some(p) = &a.report {
        write_report(p, &report)?;
    }
    print_summary(&report, &a.output, &describe);
    let t = &report.totals;
    let failed_strict = a.strict && t.failed > 0;
    let nothing = t.ok == 0 && t.skipped == 0;
    Ok(if failed_strict || nothing { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn write_report(path: &Path, report: &Report) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), report)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

fn print_summary(report: &Report, output: &Path, chunking: &str) {
    let t = &report.totals;
    if let Some(r) = &report.repaired {
        eprintln!("repaired: {r}");
    }
    eprintln!(
        "ingested {} of {} files ({} failed, {} skipped): {} pages, {} chunks ({} new) [{chunking}]",
        t.ok, t.files, t.failed, t.skipped, t.pages, t.chunks, t.chunks_written
    );
    eprintln!(
        "{:.1} MB in {:.2} s: {:.1} MB/s, {:.0} pages/s -> {}",
        t.bytes as f64 / 1e6,
        t.seconds,
        t.mb_per_s,
        t.pages_per_s,
        output.display()
    );
    let failed: Vec<&FileReport> = report.files.iter().filter(|f| f.status == FileStatus::Failed).collect();
    if !failed.is_empty() {
        eprintln!("failed files:");
        for f in failed {
            eprintln!("  {}", f.reason.as_deref().unwrap_or(&f.path));
        }
    }
}

/// The progress bar every command shows (hidden with --quiet): elapsed time, bar, count of
/// `what`, rate, ETA and a message.
pub(crate) fn progress_bar(quiet: bool, len: u64, what: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
    );
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert_eq!(parse_capacity("500").unwrap(), (500, 500));
        assert_eq!(parse_capacity("500..1000").unwrap(), (500, 1000));
        assert_eq!(parse_capacity("500..=1000").unwrap(), (500, 1000));
        assert_eq!(parse_capacity("500-1000").unwrap(), (500, 1000));
        assert!(parse_capacity("1000..500").is_err());
        assert!(parse_capacity("0").is_err());
        assert!(parse_capacity("abc").is_err());
    }
}
