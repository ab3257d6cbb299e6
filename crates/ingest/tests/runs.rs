//! Whole ingest runs: every bad input gets its named outcome while the other files are still
//! ingested; duplicates are ingested once; a killed run resumes without duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use docraft_core::jsonl::read_all;
use docraft_core::{CancelToken, Chunk, NoProgress};
use docraft_ingest::{ChunkSettings, FileFilter, FileStatus, Ingest, IngestUpdate, Report};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn settings() -> ChunkSettings {
    ChunkSettings::new(300..=600).and_then(|s| s.with_overlap(50)).expect("valid settings")
}

/// A folder with two good documents and the given bad fixture.
fn folder_with(bad: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for good in ["docs/handbook-en.pdf", "docs/guia-es.md"] {
        let src = fixtures().join(good);
        std::fs::copy(&src, dir.path().join(src.file_name().context("name")?))?;
    }
    std::fs::copy(fixtures().join("bad").join(bad), dir.path().join(bad))?;
    Ok(dir)
}

fn run(dir: &Path, out: &Path) -> Result<Report> {
    Ok(Ingest::new(settings()).run(&[dir], out, &NoProgress)?)
}

/// Runs a folder holding `bad` and checks: `bad` failed with `kind`, the others were ingested.
fn bad_case(bad: &str, kind: &str, reason_has: &str) -> Result<()> {
    let dir = folder_with(bad)?;
    let out = dir.path().join("out/chunks.jsonl");
    let report = run(dir.path(), &out)?;
    let f = report.files.iter().find(|f| f.path.ends_with(bad)).context("bad file in report")?;
    assert_eq!(f.status, FileStatus::Failed);
    assert_eq!(f.kind.as_deref(), Some(kind));
    let reason = f.reason.as_deref().unwrap_or_default();
    assert!(reason.contains(bad), "the reason names the file: {reason}");
    assert!(reason.contains(reason_has), "{reason}");
    assert_eq!(report.totals.ok, 2, "the other files are still ingested");
    assert_eq!(report.totals.failed, 1);
    let (chunks, _) = read_all::<Chunk>(&out)?;
    assert_eq!(chunks.len(), report.totals.chunks);
    assert!(chunks.iter().all(|c| !c.source.ends_with(bad)));
    Ok(())
}

#[test]
fn zero_byte_pdf() -> Result<()> {
    bad_case("empty.pdf", "empty", "empty file")
}

#[test]
fn non_pdf_named_pdf() -> Result<()> {
    bad_case("not-a-pdf.pdf", "not_pdf", "HTML page")
}

#[test]
fn truncated_pdf() -> Result<()> {
    bad_case("truncated.pdf", "damaged", "truncated")
}

#[test]
fn pdf_that_needs_a_password() -> Result<()> {
    bad_case("password.pdf", "encrypted", "needs a password")
}

#[test]
fn scanned_pdf_without_text_layer() -> Result<()> {
    bad_case("scanned.pdf", "no_text", "OCR")
}

#[test]
fn unreadable_and_unsupported_files_are_reported() -> Result<()> {
    let dir = folder_with("empty.pdf")?;
    std::fs::write(dir.path().join("report.docx"), b"PK\x03\x04 a zip")?;
    let out = dir.path().join("chunks.jsonl");
    // Named on the command line, an unsupported file is reported, not silently ignored.
    let report = Ingest::new(settings()).run(
        &[dir.path().join("report.docx"), dir.path().join("handbook-en.pdf")],
        &out,
        &NoProgress,
    )?;
    let docx = report.files.iter().find(|f| f.path.ends_with("report.docx")).context("docx")?;
    assert_eq!(docx.kind.as_deref(), Some("unsupported"));
    assert_eq!(report.totals.ok, 1);
    // Inside a walked folder it is not one of ours and is left out.
    let report = run(dir.path(), &dir.path().join("again.jsonl"))?;
    assert!(report.files.iter().all(|f| !f.path.ends_with("report.docx")));
    Ok(())
}

#[test]
fn identical_documents_are_ingested_once() -> Result<()> {
    let dir = folder_with("empty.pdf")?;
    std::fs::copy(dir.path().join("handbook-en.pdf"), dir.path().join("copy-of-handbook.pdf"))?;
    let report = run(dir.path(), &dir.path().join("out.jsonl"))?;
    // Path order decides which one is kept: "copy-of-handbook.pdf" sorts first.
    let find = |name: &str| report.files.iter().find(|f| f.path.ends_with(name));
    let copy = find("copy-of-handbook.pdf").context("copy")?;
    let original = find("handbook-en.pdf").context("original")?;
    assert_eq!(copy.status, FileStatus::Ok);
    assert_eq!(original.status, FileStatus::Skipped);
    let reason = original.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("same content as") && reason.contains("copy-of-handbook.pdf"), "{reason}");
    let (chunks, _) = read_all::<Chunk>(dir.path().join("out.jsonl"))?;
    let ids: HashSet<_> = chunks.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), chunks.len(), "no chunk twice");
    Ok(())
}

#[test]
fn rerun_skips_and_killed_run_resumes_without_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let docs = fixtures().join("docs");
    let clean = dir.path().join("clean.jsonl");
    let first = Ingest::new(settings()).run(&[&docs], &clean, &NoProgress)?;
    assert!(first.totals.ok >= 8 && first.totals.failed == 0, "{:?}", first.totals);
    let (all, _) = read_all::<Chunk>(&clean)?;
    let bytes = std::fs::read(&clean)?;

    // Same output again: nothing to do.
    let again = Ingest::new(settings()).run(&[&docs], &clean, &NoProgress)?;
    assert_eq!(again.totals.skipped, first.totals.ok);
    assert_eq!(again.totals.chunks_written, 0);
    assert_eq!(std::fs::read(&clean)?, bytes);

    // A run killed in the middle of a line, half-way through the file.
    let killed = dir.path().join("killed.jsonl");
    let cut = bytes.len() / 2;
    std::fs::write(&killed, &bytes[..cut])?;
    assert_ne!(bytes[cut - 1], b'\n', "the cut should tear a line");
    let resumed = Ingest::new(settings()).run(&[&docs], &killed, &NoProgress)?;
    assert!(resumed.repaired.is_some(), "the torn line is reported");
    assert!(resumed.totals.skipped > 0, "finished documents are not redone");
    let (after, torn) = read_all::<Chunk>(&killed)?;
    assert!(torn.is_none());
    let ids: Vec<_> = after.iter().map(|c| c.id.clone()).collect();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates after resuming");
    let expected: HashSet<_> = all.iter().map(|c| c.id.clone()).collect();
    assert_eq!(unique, expected, "the resumed output has exactly the chunks of a clean run");
    Ok(())
}

#[test]
fn output_order_does_not_depend_on_threads() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let docs = fixtures().join("docs");
    let mut outputs = Vec::new();
    for threads in [1, 2, 4] {
        let out = dir.path().join(format!("t{threads}.jsonl"));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        pool.install(|| Ingest::new(settings()).run(&[&docs], &out, &NoProgress))?;
        outputs.push(std::fs::read(&out)?);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    Ok(())
}

#[test]
fn include_and_exclude_globs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("pdf-only.jsonl");
    let filter = FileFilter::new(&["*.pdf".into()], &["*encrypted*".into(), "mixed-*".into()])?;
    let report = Ingest::new(settings()).with_filter(filter).run(&[fixtures().join("docs")], &out, &NoProgress)?;
    let names: Vec<&str> = report.files.iter().filter_map(|f| Path::new(&f.path).file_name()?.to_str()).collect();
    assert_eq!(names, ["bulletin-gs.pdf", "handbook-en.pdf", "multiscript.pdf", "politica-es.pdf"]);
    Ok(())
}

#[test]
fn a_cancelled_run_keeps_the_files_done_and_a_rerun_completes_the_same_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let docs = fixtures().join("docs");
    let clean = dir.path().join("clean.jsonl");
    let whole = Ingest::new(settings()).run(&[&docs], &clean, &NoProgress)?;
    assert!(whole.totals.ok > 3);

    let out = dir.path().join("cut.jsonl");
    let token = CancelToken::new();
    let done = std::sync::Mutex::new(Vec::new());
    let started = std::sync::Mutex::new(None);
    let progress = |u: &IngestUpdate| match u {
        IngestUpdate::Started { files } => *started.lock().unwrap() = Some(*files),
        IngestUpdate::FileDone(r) => {
            let mut d = done.lock().unwrap();
            d.push(r.path.clone());
            if d.len() == 3 {
                token.cancel();
            }
        }
    };
    let report = Ingest::new(settings()).with_cancel(token.clone()).run(&[&docs], &out, &progress)?;
    assert_eq!(*started.lock().unwrap(), Some(whole.files.len()));
    assert!(report.cancelled);
    let first3: Vec<String> = whole.files.iter().take(3).map(|f| f.path.clone()).collect();
    assert_eq!(*done.lock().unwrap(), first3, "exactly three files, in path order");
    assert_eq!(report.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(), first3);
    let (kept, _) = read_all::<Chunk>(&out)?;
    assert_eq!(kept.len(), whole.files.iter().take(3).map(|f| f.chunks).sum::<usize>(), "their chunks are kept");
    assert_eq!(report.totals.chunks_written, kept.len());

    let rest = Ingest::new(settings()).run(&[&docs], &out, &NoProgress)?;
    assert!(!rest.cancelled);
    assert_eq!(rest.totals.skipped, 3);
    assert_eq!(std::fs::read(&out)?, std::fs::read(&clean)?, "the same output as one uninterrupted run");
    Ok(())
}
