//! `docraft run`: the whole pipeline into one run directory (the engine is docraft-pipeline;
//! this file parses arguments, reads the config and draws progress).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use docraft_pipeline::{Event, Pipeline, RunLayout, Settings, Stage};

#[derive(Args)]
pub struct RunArgs {
    /// Documents: files and folders (walked recursively: .pdf, .md, .markdown, .txt).
    #[arg(required_unless_present = "print_config")]
    docs: Vec<PathBuf>,
    /// The run directory: chunks, index, datasets, adapter, report, manifest.json.
    #[arg(short, long, required_unless_present = "print_config")]
    output: Option<PathBuf>,
    /// Settings of every stage (TOML; `--print-config` shows every key with its default).
    /// Without it, RUN_DIR/config.toml from an earlier run, else the defaults.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Stop after this stage (ingest, index, qa, export, raft, train, eval).
    #[arg(long)]
    until: Option<String>,
    /// Redo every stage, even unchanged ones.
    #[arg(long)]
    force: bool,
    /// Print every setting (the defaults, with --config applied) as a config file and exit.
    #[arg(long)]
    print_config: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: &RunArgs) -> Result<ExitCode> {
    let kept = a.output.as_ref().map(|d| RunLayout::new(d).config());
    let config = a.config.clone().or_else(|| kept.filter(|k| k.is_file()));
    let (settings, origin) = match &config {
        Some(p) => (Settings::from_file(p)?, p.display().to_string()),
        None => (Settings::default(), "(defaults)".to_string()),
    };
    if a.print_config {
        println!("# docraft run settings ({origin}); every key of every stage with its value.");
        print!("{}", settings.to_toml()?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(dir) = a.output.clone() else { bail!("--output RUN_DIR is required") };
    let until: Stage = a.until.as_deref().map_or(Ok(Stage::Eval), str::parse)?;
    let term = crate::render::Terminal::for_run(a.quiet);
    let pipeline =
        Pipeline::new(settings, a.docs.clone(), dir).with_force(a.force).with_until(until).with_config_origin(origin);
    let summary = pipeline.run(&|e: &Event| term.event(e), &crate::render::cancel_on_interrupt())?;
    if let Some(r) = &summary.report {
        println!("report: {}", r.display());
    }
    println!("manifest: {}", summary.manifest.display());
    Ok(ExitCode::SUCCESS)
}
