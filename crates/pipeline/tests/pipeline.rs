//! The run engine without models: ingest only (`until = ingest`), so these run in plain
//! `cargo test`. The whole pipeline with real models is tested through `docraft run`
//! (crates/cli/tests/run.rs) and in `full_pipeline_*` below (ignored without setup).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use docraft_core::CancelToken;
use docraft_pipeline::{
    Event, Manifest, Pipeline, PipelineError, RunLayout, Settings, SkipReason, Stage, StageStatus, StartMode,
};

fn docs(dir: &Path, n: usize) -> PathBuf {
    let d = dir.join("docs");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        let body: String = (0..40)
            .map(|j| format!("Paragraph {j} of document {i}: the archive keeps invoices for {i} years.\n\n"))
            .collect();
        std::fs::write(d.join(format!("doc-{i:02}.md")), format!("# Document {i}\n\n{body}")).unwrap();
    }
    std::fs::write(d.join("notes.txt"), "A note that the include glob can leave out.").unwrap();
    d
}

/// Runs and records every event.
fn run(p: &Pipeline, cancel: &CancelToken) -> (Result<docraft_pipeline::RunSummary, PipelineError>, Vec<Event>) {
    let events = Mutex::new(Vec::new());
    let r = p.run(&|e: &Event| events.lock().unwrap().push(e.clone()), cancel);
    (r, events.into_inner().unwrap())
}

fn ingest_only(settings: Settings, docs: &Path, out: &Path) -> Pipeline {
    Pipeline::new(settings, vec![docs.to_path_buf()], out).with_until(Stage::Ingest)
}

#[test]
fn unchanged_runs_skip_and_globs_are_part_of_the_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = docs(tmp.path(), 3);
    let out = tmp.path().join("run");
    let (r, events) = run(&ingest_only(Settings::default(), &d, &out), &CancelToken::new());
    let summary = r.unwrap();
    assert_eq!(summary.ran, vec![Stage::Ingest]);
    assert!(events.contains(&Event::Started { stage: Stage::Ingest, mode: StartMode::Fresh }));
    assert!(events.iter().any(|e| matches!(e, Event::Finished { stage: Stage::Ingest, .. })));
    let layout = RunLayout::new(&out);
    let m = Manifest::load(&layout.manifest()).unwrap();
    assert_eq!(m.stages[&Stage::Ingest].status, StageStatus::Done);
    assert_eq!(m.documents.len(), 4, "{:?}", m.documents);
    let chunks = std::fs::read_to_string(layout.chunks()).unwrap();
    assert!(chunks.contains("notes.txt"));

    // Same settings: skipped, nothing rewritten.
    let (r, events) = run(&ingest_only(Settings::default(), &d, &out), &CancelToken::new());
    assert_eq!(r.unwrap().unchanged, vec![Stage::Ingest]);
    assert!(events.contains(&Event::Skipped { stage: Stage::Ingest, reason: SkipReason::Unchanged }));
    assert_eq!(std::fs::read_to_string(layout.chunks()).unwrap(), chunks);

    // An include glob changes the documents and the fingerprint: redone from scratch.
    let mut s = Settings::default();
    s.ingest.include = vec!["*.md".into()];
    let (r, _) = run(&ingest_only(s, &d, &out), &CancelToken::new());
    assert_eq!(r.unwrap().ran, vec![Stage::Ingest]);
    let m = Manifest::load(&layout.manifest()).unwrap();
    assert_eq!(m.documents.len(), 3);
    let again = std::fs::read_to_string(layout.chunks()).unwrap();
    assert!(!again.contains("notes.txt"), "the old chunks were not removed");
    // The settings of the run are kept in full, and read back to the same settings.
    let kept = Settings::from_file(&layout.config()).unwrap();
    assert_eq!(kept.ingest.include, vec!["*.md".to_string()]);
}

#[test]
fn a_cancelled_stage_is_recorded_and_resumed_to_the_same_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = docs(tmp.path(), 12);
    let mut s = Settings::default();
    s.ingest.threads = Some(1);

    // Uninterrupted, for reference.
    let full = tmp.path().join("full");
    run(&ingest_only(s.clone(), &d, &full), &CancelToken::new()).0.unwrap();

    // Cancelled from the sink after the third file.
    let out = tmp.path().join("run");
    let cancel = CancelToken::new();
    let events = Mutex::new(Vec::new());
    let p = ingest_only(s.clone(), &d, &out);
    let r = p.run(
        &|e: &Event| {
            if let Event::Progress { done, .. } = e
                && *done >= 3
            {
                cancel.cancel();
            }
            events.lock().unwrap().push(e.clone());
        },
        &cancel,
    );
    assert!(matches!(r, Err(PipelineError::Cancelled { stage: Stage::Ingest })), "{r:?}");
    assert!(events.lock().unwrap().contains(&Event::Cancelled { stage: Stage::Ingest }));
    let layout = RunLayout::new(&out);
    let m = Manifest::load(&layout.manifest()).unwrap();
    assert_eq!(m.stages[&Stage::Ingest].status, StageStatus::Cancelled);
    let partial = std::fs::read_to_string(layout.chunks()).unwrap_or_default();
    let full_text = std::fs::read_to_string(RunLayout::new(&full).chunks()).unwrap();
    assert!(partial.len() < full_text.len(), "the run was not stopped early");

    // The same run resumes and ends with exactly the uninterrupted output.
    let (r, events) = run(&ingest_only(s, &d, &out), &CancelToken::new());
    r.unwrap();
    assert!(events.contains(&Event::Started { stage: Stage::Ingest, mode: StartMode::Resume }));
    assert_eq!(std::fs::read_to_string(layout.chunks()).unwrap(), full_text);
    assert_eq!(Manifest::load(&layout.manifest()).unwrap().stages[&Stage::Ingest].status, StageStatus::Done);
}

#[test]
fn bad_config_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docraft.toml");
    std::fs::write(&cfg, "[raft]\nlimit = 3\n[train]\nlora_rank = 2\n").unwrap();
    let e = Settings::from_file(&cfg).unwrap_err().to_string();
    assert!(e.contains("docraft.toml") && e.contains("lora_rank"), "{e}");
    // The demo config of the repository parses.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docraft.toml");
    let s = Settings::from_file(&demo).unwrap();
    assert!(s.raft.enabled && !s.qa.enabled);
}
