//! The whole pipeline through the library: ingest, index, RAFT, LoRA training and evaluation
//! of the fixtures into one run directory, with progress printed as it comes.
//!
//! ```text
//! cargo run --release -p docraft-examples --example pipeline -- fixtures/docs out/example-run
//! ```
//! Run it again: every stage is skipped as unchanged. Press Ctrl-C (or kill it) and run it
//! again: it resumes where it stopped.

use docraft_core::CancelToken;
use docraft_pipeline::{Event, Pipeline, Settings};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let docs = args.next().unwrap_or_else(|| "fixtures/docs".into());
    let run_dir = args.next().unwrap_or_else(|| "out/example-run".into());

    // The library defaults, made small enough for a laptop.
    let mut settings = Settings::default();
    settings.raft.limit = Some(8);
    settings.raft.questions_per_chunk = 1;
    settings.train.settings.max_steps = Some(4);
    settings.eval.limit = 4;

    let report = |e: &Event| match e {
        Event::Started { stage, mode } => println!("{stage}: {mode:?}"),
        Event::Finished { stage, summary, .. } => println!("{stage}: done\n  {}", summary.join("\n  ")),
        Event::Skipped { stage, reason } => println!("{stage}: skipped ({reason:?})"),
        _ => {}
    };
    let summary = Pipeline::new(settings, vec![docs.into()], run_dir).run(&report, &CancelToken::new())?;
    println!("manifest: {}", summary.manifest.display());
    if let Some(r) = summary.report {
        println!("report: {}", r.display());
    }
    Ok(())
}
