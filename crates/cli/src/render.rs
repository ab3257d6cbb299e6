//! Drawing the pipeline's events: a progress bar per stage, messages above it, summaries.

use std::sync::Mutex;

use docraft_pipeline::{Event, Level, SkipReason, Stage, StartMode};
use indicatif::{ProgressBar, ProgressStyle};

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

/// An event sink for the terminal.
pub(crate) struct Terminal {
    quiet: bool,
    /// `docraft run`: a `[stage] ...` line when a stage starts, is skipped or finishes.
    stage_lines: bool,
    bar: Mutex<Option<(Stage, String, ProgressBar)>>,
}

impl Terminal {
    /// A sink for one subcommand.
    pub(crate) fn new(quiet: bool) -> Self {
        Self { quiet, stage_lines: false, bar: Mutex::new(None) }
    }

    /// A sink for `docraft run`.
    pub(crate) fn for_run(quiet: bool) -> Self {
        Self { quiet, stage_lines: true, bar: Mutex::new(None) }
    }

    fn finish_bar(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some((_, _, bar)) = b.take()
        {
            bar.finish_and_clear();
        }
    }

    fn println(&self, text: &str) {
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            Some((_, _, bar)) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    /// Prints a stage's summary lines (ingest and index on standard error, as their per-file
    /// output; the datasets' counts on standard output).
    pub(crate) fn summary(&self, stage: Stage, lines: &[String]) {
        self.finish_bar();
        let to_stderr = matches!(stage, Stage::Ingest | Stage::Index);
        for line in lines {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }

    /// Handles one event.
    pub(crate) fn event(&self, e: &Event) {
        match e {
            Event::Started { stage, mode } => {
                if self.stage_lines {
                    match mode {
                        StartMode::Fresh => println!("[{stage}] running"),
                        StartMode::Resume => println!("[{stage}] resuming the interrupted run"),
                    }
                }
            }
            Event::Skipped { stage, reason } => {
                if self.stage_lines && *reason == SkipReason::Unchanged {
                    println!("[{stage}] unchanged, skipped");
                }
            }
            Event::Progress { stage, done, total, unit, message } => {
                let Ok(mut b) = self.bar.lock() else { return };
                let fresh = !matches!(b.as_ref(), Some((s, u, _)) if s == stage && u == unit);
                if fresh {
                    if let Some((_, _, old)) = b.take() {
                        old.finish_and_clear();
                    }
                    *b = Some((*stage, unit.clone(), progress_bar(self.quiet, *total, unit)));
                }
                if let Some((_, _, bar)) = b.as_ref() {
                    bar.set_length(*total);
                    bar.set_position(*done);
                    bar.set_message(message.clone());
                }
            }
            Event::Message { level, text, .. } => {
                if !self.quiet || *level == Level::Warn {
                    self.println(text);
                }
            }
            Event::Finished { stage, summary, .. } => self.summary(*stage, summary),
            Event::Cancelled { stage } => {
                self.finish_bar();
                println!("[{stage}] cancelled: run the same command again to resume");
            }
            Event::Failed { .. } => self.finish_bar(),
        }
    }
}

/// A token cancelled by the first Ctrl-C (SIGINT): the running stage stops after its current
/// unit of work, keeps what it wrote, and the same command resumes it. A second Ctrl-C quits at
/// once (exit status 130), as a kill would; that too is resumable.
pub(crate) fn cancel_on_interrupt() -> docraft_core::CancelToken {
    let token = docraft_core::CancelToken::new();
    let t = token.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("\ninterrupted: stopping after the current unit of work (Ctrl-C again quits at once)");
            t.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
    token
}
