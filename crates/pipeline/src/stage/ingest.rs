//! Ingest: documents to `chunks.jsonl` (appended to; documents already in it are skipped).

use std::path::{Path, PathBuf};

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use docraft_ingest::{
    AutoLoader, ChunkSettings, Discovery, FileFilter, FileReport, FileStatus, Ingest, IngestUpdate, Report, Sizer,
};

use super::Ctx;
use crate::error::Result;
use crate::settings::{
    DEFAULT_CHUNK_CHARS, DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_CHARS, DEFAULT_OVERLAP_TOKENS, IngestSettings,
    parse_capacity,
};

/// What an ingest run did.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    /// Per file and in total.
    pub report: Report,
    /// The chunking, described (`800..=1200 characters, overlap 100`).
    pub chunking: String,
    /// Whether the run was cancelled before every file was read (rerun to continue).
    pub cancelled: bool,
}

/// The chunking the settings ask for.
///
/// # Errors
/// [`PipelineError::Setting`](crate::PipelineError::Setting) for a bad size; the ingest error for an unreadable tokenizer.
pub fn chunk_settings(s: &IngestSettings) -> Result<ChunkSettings> {
    let (sizer, default_size, default_overlap) = match &s.tokenizer {
        Some(t) => (Sizer::tokens_from_file(t)?, DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS),
        None => (Sizer::Characters, DEFAULT_CHUNK_CHARS, DEFAULT_OVERLAP_CHARS),
    };
    let (min, max) = match &s.chunk_size {
        Some(c) => parse_capacity(c)?,
        None => default_size,
    };
    let overlap = s.overlap.unwrap_or(if min > default_overlap { default_overlap } else { 0 });
    Ok(ChunkSettings::new(min..=max)?.with_overlap(overlap)?.with_sizer(sizer))
}

/// The include/exclude filter of the settings.
///
/// # Errors
/// The ingest error for an invalid glob.
pub fn file_filter(s: &IngestSettings) -> Result<FileFilter> {
    Ok(FileFilter::new(&s.include, &s.exclude)?)
}

/// The documents ingest would read from `inputs` (ingest's own discovery, with the
/// include/exclude globs), sorted, and the paths it could not take with the reason.
///
/// # Errors
/// The ingest error for a path that does not exist or an invalid glob.
pub fn documents(s: &IngestSettings, inputs: &[PathBuf]) -> Result<Discovery> {
    Ok(docraft_ingest::discover(inputs, &file_filter(s)?)?)
}

fn report_file(ctx: &Ctx, done: u64, total: u64, r: &FileReport) {
    let name = Path::new(&r.path).file_name().map_or_else(|| r.path.clone(), |n| n.to_string_lossy().into_owned());
    ctx.progress(done, total, "files", name);
    match r.status {
        FileStatus::Failed => ctx.warn(format!("failed: {}", r.reason.as_deref().unwrap_or(&r.path))),
        FileStatus::Ok => {
            for w in &r.warnings {
                ctx.warn(format!("warning: {}: {w}", r.path));
            }
        }
        FileStatus::Skipped => {}
    }
}

/// Reads `inputs` (files and folders), chunks them and appends the chunks to `output`;
/// writes the JSON report to `report` when given.
///
/// # Errors
/// Settings, discovery or writing errors. A file that cannot be read is not an error: it is
/// in the report with its reason, and the others go on.
pub fn run(
    s: &IngestSettings,
    inputs: &[PathBuf],
    output: &Path,
    report: Option<&Path>,
    ctx: &Ctx,
) -> Result<IngestOutcome> {
    let settings = chunk_settings(s)?;
    let chunking = settings.describe();
    let ingest = Ingest::new(settings)
        .with_loader(AutoLoader::new().keep_page_furniture(s.keep_page_furniture))
        .with_filter(file_filter(s)?)
        .with_cancel(ctx.cancel().clone());
    let total = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let progress = |u: &IngestUpdate| match u {
        IngestUpdate::Started { files } => {
            total.store(*files as u64, Relaxed);
            ctx.progress(0, *files as u64, "files", String::new());
        }
        IngestUpdate::FileDone(r) => report_file(ctx, done.fetch_add(1, Relaxed) + 1, total.load(Relaxed), r),
    };
    let result = super::with_threads(s.threads, ctx.stage(), || Ok(ingest.run(inputs, output, &progress)?))?;
    if let Some(p) = report {
        crate::manifest::write_json(p, &result)?;
    }
    let cancelled = result.cancelled;
    Ok(IngestOutcome { report: result, chunking, cancelled })
}

/// What [`run_sql`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlOutcome {
    /// Rows read (one document each).
    pub rows: usize,
    /// Chunks appended.
    pub chunks: usize,
    /// Rows already in the output (same text), skipped.
    pub unchanged: usize,
}

/// Database rows as documents: reads `source`, chunks each row's text with the settings'
/// chunking and appends the chunks (with the row's columns as metadata) to `output`. Rows
/// whose chunks are already in `output` are skipped, so a second run adds only what changed.
///
/// # Errors
/// The source's error (connection, query, columns), chunking or writing errors.
pub fn run_sql(
    s: &IngestSettings,
    source: &docraft_ingest::sql::SqlSource,
    output: &Path,
    ctx: &Ctx,
) -> Result<SqlOutcome> {
    use docraft_core::jsonl::{JsonlReader, JsonlWriter};
    use docraft_ingest::Chunker;
    let docs = source.read()?;
    let chunker = docraft_ingest::TextChunker::new(chunk_settings(s)?);
    let mut known = std::collections::HashSet::new();
    if output.exists() {
        for c in JsonlReader::<docraft_core::Chunk>::open(output)?.flatten() {
            known.insert(c.doc_id);
        }
    }
    let (mut writer, _) = JsonlWriter::<docraft_core::Chunk>::append(output)?;
    let mut out = SqlOutcome { rows: docs.len(), chunks: 0, unchanged: 0 };
    for (i, doc) in docs.iter().enumerate() {
        if ctx.is_cancelled() {
            return Err(crate::PipelineError::Cancelled { stage: ctx.stage() });
        }
        if known.contains(&doc.id) {
            out.unchanged += 1;
            continue;
        }
        let chunks = chunker.chunk(doc)?;
        out.chunks += chunks.len();
        writer.write_all(&chunks)?;
        ctx.progress(i as u64 + 1, docs.len() as u64, "rows", String::new());
    }
    writer.sync()?;
    Ok(out)
}

/// The summary lines of an ingest run.
#[must_use]
pub fn summary(o: &IngestOutcome, output: &Path) -> Vec<String> {
    let t = &o.report.totals;
    let mut lines = Vec::new();
    if let Some(r) = &o.report.repaired {
        lines.push(format!("repaired: {r}"));
    }
    lines.push(format!(
        "ingested {} of {} files ({} failed, {} skipped): {} pages, {} chunks ({} new) [{}]",
        t.ok, t.files, t.failed, t.skipped, t.pages, t.chunks, t.chunks_written, o.chunking
    ));
    lines.push(format!(
        "{:.1} MB in {:.2} s: {:.1} MB/s, {:.0} pages/s -> {}",
        t.bytes as f64 / 1e6,
        t.seconds,
        t.mb_per_s,
        t.pages_per_s,
        output.display()
    ));
    let failed: Vec<&FileReport> = o.report.files.iter().filter(|f| f.status == FileStatus::Failed).collect();
    if !failed.is_empty() {
        lines.push("failed files:".into());
        for f in failed {
            lines.push(format!("  {}", f.reason.as_deref().unwrap_or(&f.path)));
        }
    }
    if !o.report.skipped_paths.is_empty() {
        lines.push(format!("paths not read ({}):", o.report.skipped_paths.len()));
        for p in &o.report.skipped_paths {
            lines.push(format!("  {p}"));
        }
    }
    lines
}
