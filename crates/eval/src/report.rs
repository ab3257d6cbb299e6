//! `report.md`, `report.json` and the plots of an evaluation.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use docraft_core::train::MetricRecord;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::plot::{Series, bar_chart, line_chart};
use crate::qa::QaScores;
use crate::retrieval::{RetrievalReport, Skipped};

/// Training and validation loss by optimizer step, from a training run's `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Losses {
    /// `(step, train_loss)`.
    pub train: Vec<(f64, f64)>,
    /// `(step, valid_loss)` where an evaluation ran.
    pub valid: Vec<(f64, f64)>,
}

impl Losses {
    /// Reads `metrics.jsonl` ([`MetricRecord`] lines; lines that are not are skipped, and so
    /// are losses that are not finite).
    ///
    /// # Errors
    /// [`EvalError::Io`] when the file cannot be read.
    pub fn read(metrics: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(metrics).map_err(|e| EvalError::io(metrics, e))?;
        let mut l = Self::default();
        for m in text.lines().filter_map(|line| serde_json::from_str::<MetricRecord>(line).ok()) {
            #[allow(clippy::cast_precision_loss)]
            let step = m.step as f64;
            if m.train_loss.is_finite() {
                l.train.push((step, m.train_loss));
            }
            if let Some(x) = m.valid_loss.filter(|x| x.is_finite()) {
                l.valid.push((step, x));
            }
        }
        Ok(l)
    }
}

/// Everything an evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Heading of the report.
    pub title: String,
    /// Retrieval scores and the file of questions they come from.
    pub retrieval: Option<(String, RetrievalReport)>,
    /// Open-book QA scores, one per model (base first, then base + adapter).
    pub qa: Vec<QaScores>,
    /// The file the QA cases came from.
    pub qa_set: Option<String>,
    /// Loss curves of the training run.
    pub losses: Option<Losses>,
    /// Lines of input that gave no case.
    pub skipped: Vec<Skipped>,
    /// Free remarks (e.g. which split was evaluated and why).
    pub notes: Vec<String>,
}

fn write_file(path: &Path, text: &str) -> Result<PathBuf> {
    std::fs::write(path, text).map_err(|e| EvalError::io(path, e))?;
    Ok(path.to_path_buf())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

impl Report {
    /// Writes `report.md`, `report.json` and the plots (`loss.svg`, `qa.svg`, `retrieval.svg`,
    /// each only when there is something to draw) into `dir`; returns the paths written,
    /// `report.md` first.
    ///
    /// # Errors
    /// [`EvalError::Io`] naming the file that could not be written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        let mut md = format!("# {}\n\n", self.title);
        let mut written = Vec::new();
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        if !self.notes.is_empty() {
            md.push('\n');
        }
        if let Some((set, r)) = &self.retrieval {
            let _ = writeln!(md, "## Retrieval\n\n{} questions from `{set}`.\n", r.questions);
            md.push_str("| metric | value |\n|---|---|\n");
            for (k, v) in &r.recall_at {
                let _ = writeln!(md, "| recall@{k} | {} |", pct(*v));
            }
            let _ = writeln!(md, "| MRR | {:.3} |\n\n![retrieval](retrieval.svg)\n", r.mrr);
            let cats: Vec<String> = r.recall_at.keys().map(|k| format!("recall@{k}")).chain(["MRR".into()]).collect();
            let vals: Vec<f64> = r.recall_at.values().copied().chain([r.mrr]).collect();
            let svg = bar_chart(
                "Retrieval",
                "share",
                &cats.iter().map(String::as_str).collect::<Vec<_>>(),
                &[("index", vals)],
            );
            written.push(write_file(&dir.join("retrieval.svg"), &svg)?);
        }
        if !self.qa.is_empty() {
            let _ = writeln!(
                md,
                "## Open-book QA\n\n{} questions{}; greedy decoding. Quotes found: share of the chain of \
                 thought's `##begin_quote##` quotes present in the context.\n",
                self.qa.first().map_or(0, |q| q.questions),
                self.qa_set.as_ref().map(|s| format!(" from `{s}`")).unwrap_or_default()
            );
            md.push_str("| model | exact match | token F1 | contains gold | quotes found | errors |\n|---|---|---|---|---|---|\n");
            for q in &self.qa {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.3} | {} | {} | {} |",
                    q.model,
                    pct(q.exact_match),
                    q.f1,
                    pct(q.contains),
                    q.quotes_found.map_or("no quotes".into(), pct),
                    q.errors
                );
            }
            md.push_str("\n![before and after](qa.svg)\n\n");
            let series: Vec<(&str, Vec<f64>)> = self
                .qa
                .iter()
                .map(|q| (q.model.as_str(), vec![q.exact_match, q.f1, q.contains, q.quotes_found.unwrap_or(0.0)]))
                .collect();
            let svg = bar_chart(
                "Open-book QA",
                "score",
                &["exact match", "token F1", "contains gold", "quotes found"],
                &series,
            );
            written.push(write_file(&dir.join("qa.svg"), &svg)?);
            if let Some(first) = self.qa.first() {
                md.push_str("### Examples\n\n");
                for (i, row) in first.rows.iter().enumerate().take(3) {
                    let _ = writeln!(md, "**Q:** {}  \n**gold:** {}  ", one_line(&row.question), one_line(&row.gold));
                    for q in &self.qa {
                        if let Some(r) = q.rows.get(i) {
                            let _ = writeln!(md, "**{}:** {}  ", q.model, one_line(&r.answer));
                        }
                    }
                    md.push('\n');
                }
            }
        }
        if let Some(l) = &self.losses {
            let _ = writeln!(
                md,
                "## Training\n\n{} steps; last train loss {}; last validation loss {}.\n\n![loss](loss.svg)\n",
                l.train.len(),
                l.train.last().map_or("-".into(), |p| format!("{:.4}", p.1)),
                l.valid.last().map_or("-".into(), |p| format!("{:.4}", p.1)),
            );
            let mut series = vec![Series { name: "train loss".into(), points: l.train.clone() }];
            if !l.valid.is_empty() {
                series.push(Series { name: "validation loss".into(), points: l.valid.clone() });
            }
            written.push(write_file(&dir.join("loss.svg"), &line_chart("Loss by step", "step", "loss", &series))?);
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(md, "## Skipped input lines\n");
            for s in &self.skipped {
                let _ = writeln!(md, "- {}:{}: {}", s.path.display(), s.line, s.reason);
            }
        }
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        written.insert(0, write_file(&dir.join("report.json"), &json)?);
        written.insert(0, write_file(&dir.join("report.md"), &md)?);
        Ok(written)
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}
