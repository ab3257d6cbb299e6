//! Workers: each leases one job at a time from the `jobs` table and trains it with the
//! trainer `docraft train` runs, in `DATA/orgs/<org-id>/jobs/<job-id>/run`.
//!
//! - **Lease**: a claim is a single `UPDATE … WHERE` on a job that is waiting or whose lease
//!   ran out, so two workers (threads or processes on one database) never hold one job. The
//!   worker renews the lease every heartbeat; a worker that lost it stops its run.
//! - **As it happens**: each step's metrics arrive over a channel from the training thread;
//!   the trainer's `events.jsonl` (epochs, evaluations, checkpoints) and its checkpoint
//!   directories are read every heartbeat. Every row has an idempotency key, so a retried
//!   write never duplicates one.
//! - **Stops**: cancel and pause are requests in the job's row, read every heartbeat; the
//!   trainer stops at the next step after writing a checkpoint. On shutdown each running job
//!   is checkpointed and handed back to the queue.
//! - **Crashes**: after a `kill -9`, the job's lease runs out and a worker takes it up again
//!   from its last checkpoint; metrics and events the lost steps wrote are deleted first and
//!   written again as the steps are redone, so each step appears once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use docraft_core::CancelToken;
use docraft_core::train::{CheckpointState, EventKind, EventLevel, MetricRecord, TrainEvent};
use docraft_pipeline::settings::TrainSettings;
use docraft_pipeline::stage::Ctx;
use docraft_pipeline::stage::train::{TrainPaths, Trained, has_checkpoint, prepare, train};
use docraft_pipeline::{Event, Level};
use docraft_pipeline::{PipelineError, Stage};
use docraft_train::{RunFiles, StepInfo};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::db::{Db, now};
use crate::ids::new_id;
use crate::jobs::{CHECKPOINT_PREFIX, JobRow, JobStatus, add_event};
use crate::models::{ModelEntry, ModelKind, find_base, insert};
use crate::server::AppState;
use crate::{Result, ServerError};

/// RAFT validation records answered by base and adapter for the open-book QA evaluation.
const OPEN_BOOK_CASES: usize = 20;
/// Most tokens of each open-book answer (a RAFT answer quotes, then gives its final answer).
const OPEN_BOOK_MAX_TOKENS: u32 = 96;

/// The open-book QA scores of base and adapter, with a few answers to look at.
fn open_book_json(base: &docraft_eval::qa::QaScores, tuned: &docraft_eval::qa::QaScores) -> Value {
    let side = |s: &docraft_eval::qa::QaScores| {
        json!({"questions": s.questions, "exact_match": s.exact_match, "f1": s.f1, "contains": s.contains,
               "quotes_found": s.quotes_found, "errors": s.errors,
               "examples": s.rows.iter().take(3).map(|r| json!({"question": r.question, "gold": r.gold, "answer": r.answer}))
                   .collect::<Vec<_>>()})
    };
    json!({"base": side(base), "adapter": side(tuned)})
}

/// Clock ticks per second of `/proc/*/stat` CPU times (100 on every Linux this runs on).
const CLOCK_TICKS: f64 = 100.0;

/// The workers of one server process.
#[derive(Debug)]
pub struct Workers {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `n` training workers over `state` (none for 0), and the configured document
    /// (ingest) workers.
    #[must_use]
    pub fn spawn(state: &AppState, n: usize) -> Self {
        let (stop, _) = watch::channel(false);
        let mut tasks: Vec<JoinHandle<()>> = (0..n)
            .map(|i| {
                let state = state.clone();
                let rx = stop.subscribe();
                tokio::spawn(async move { worker_loop(state, i, rx).await })
            })
            .collect();
        for i in 0..state.config().dataset_workers {
            let (state, rx) = (state.clone(), stop.subscribe());
            tasks.push(tokio::spawn(async move { crate::datasets::worker(state, i, rx).await }));
        }
        for i in 0..state.config().document_workers {
            let (state, rx) = (state.clone(), stop.subscribe());
            tasks.push(tokio::spawn(async move { crate::collections::document_worker(state, i, rx).await }));
        }
        // Workers of other processes on the same PostgreSQL say when there is work.
        if !tasks.is_empty() && state.db().backend() == crate::db::Backend::Postgres {
            let (state, rx) = (state.clone(), stop.subscribe());
            tasks.push(tokio::spawn(async move { crate::server::listen_for_work(state, rx).await }));
        }
        Self { tasks, stop }
    }

    /// Asks every worker to stop: running jobs write a checkpoint and go back to `queued`.
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the workers and waits for them (each running job checkpoints first).
    pub async fn shutdown(self) {
        self.signal_stop();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn worker_loop(state: AppState, index: usize, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let owner = match new_id("") {
            Ok(r) => format!("w{index}-{}-{r}", std::process::id()),
            Err(e) => {
                tracing::error!(error = %e, "worker: no random source");
                return;
            }
        };
        match claim(&state, &owner).await {
            Ok(Some(job)) => {
                let id = job.id.clone();
                if let Err(e) = run_claimed(&state, job, &owner, &stop).await {
                    tracing::error!(job = %id, error = %e, "worker: job handling failed");
                    let _ = release(state.db(), &id, &owner).await;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "worker: claiming a job failed"),
        }
        tokio::select! {
            () = state.workers_notified() => {}
            () = tokio::time::sleep(state.config().poll) => {}
            _ = stop.changed() => {}
        }
    }
}

fn lease_secs(state: &AppState) -> i64 {
    i64::try_from(state.config().lease.as_secs().max(1)).unwrap_or(30)
}

/// Takes the oldest job that waits, or whose worker's lease ran out.
async fn claim(state: &AppState, owner: &str) -> Result<Option<JobRow>> {
    let t = now();
    let claimable = "status IN ('validating_files', 'queued', 'running') \
                     AND (lease_expires_at IS NULL OR lease_expires_at < $3)";
    let set = "lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3";
    let n = sqlx::query(sqlx::AssertSqlSafe(state.db().claim_sql("jobs", set, claimable, "created_ms, id")))
        .bind(owner)
        .bind(t + lease_secs(state))
        .bind(t)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("claim job"))?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM jobs WHERE lease_owner = $1",
        crate::jobs::JOB_COLUMNS
    )))
    .bind(owner)
    .fetch_optional(state.db().pool())
    .await
    .map_err(ServerError::db("claimed job"))?;
    row.as_ref().map(JobRow::from_row).transpose()
}

async fn release(db: &Db, id: &str, owner: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2 AND lease_owner = $3",
    )
    .bind(now())
    .bind(id)
    .bind(owner)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("release job"))?;
    Ok(())
}

/// `HOST/wINDEX-PID`: the machine and process of a lease's owner (`wINDEX-PID-RANDOM`).
fn worker_name(owner: &str) -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
    });
    let process = owner.rsplit_once('-').map_or(owner, |(p, _)| p);
    if host.is_empty() { process.to_string() } else { format!("{host}/{process}") }
}

/// Why a run was stopped through its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancel,
    Pause,
    Shutdown,
    LostLease,
    /// Storing progress failed (the database): the job goes back to the queue.
    Failure,
}

/// What a heartbeat reads.
struct Beat<'a> {
    state: &'a AppState,
    job: &'a JobRow,
    owner: &'a str,
    last: Option<&'a MetricRecord>,
    total: Option<u64>,
    cpu: &'a CpuMeter,
}

/// Renews the lease, stores CPU time and the estimate, reads cancel/pause requests, and stores
/// what the trainer wrote since the last beat; says why the run must stop, if it must.
async fn heartbeat(b: &Beat<'_>, sync: &mut Sync) -> Result<Option<StopReason>> {
    let db = b.state.db();
    let t = now();
    let estimate = match (b.last, b.total) {
        (Some(m), Some(total)) if m.step > 0 && m.elapsed_s.is_finite() => {
            #[allow(clippy::cast_precision_loss)]
            let per_step = m.elapsed_s / m.step as f64;
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            Some(t + (per_step * total.saturating_sub(m.step) as f64) as i64)
        }
        _ => None,
    };
    #[allow(clippy::cast_possible_truncation)]
    let cpu_total = b.job.cpu_seconds + b.cpu.sample().round() as i64;
    let held = sqlx::query(
        "UPDATE jobs SET lease_expires_at = $1, updated_at = $2, cpu_seconds = $3, \
         estimated_finish = COALESCE($4, estimated_finish) WHERE id = $5 AND lease_owner = $6",
    )
    .bind(t + lease_secs(b.state))
    .bind(t)
    .bind(cpu_total)
    .bind(estimate)
    .bind(&b.job.id)
    .bind(b.owner)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("heartbeat"))?
    .rows_affected();
    if held == 0 {
        tracing::warn!(job = %b.job.id, "worker: lease lost; stopping the run");
        return Ok(Some(StopReason::LostLease));
    }
    let requested: Option<String> = sqlx::query("SELECT requested FROM jobs WHERE id = $1")
        .bind(&b.job.id)
        .fetch_one(db.pool())
        .await
        .map_err(ServerError::db("requests"))?
        .try_get("requested")
        .map_err(ServerError::db("requests"))?;
    sync.events(None).await?;
    sync.checkpoints().await?;
    Ok(match requested.as_deref() {
        Some("cancel") => Some(StopReason::Cancel),
        Some("pause") => Some(StopReason::Pause),
        _ => None,
    })
}

/// What the training thread tells the worker.
enum Msg {
    Prepared { examples: usize, tokens: usize, truncated: usize, rejected: usize, valid: Option<usize> },
    Total(u64),
    Step(Box<MetricRecord>),
    Log(Level, String),
}

/// `text` without the server's paths: `DATA/orgs/<org>/files/file-x` becomes `file-x`, any
/// other path under the organization's directory becomes relative to it.
fn scrub(text: &str, org_dir: &Path) -> String {
    let org = format!("{}/", org_dir.display());
    text.replace(&format!("{org}files/"), "").replace(&org, "")
}

/// Sets a job's final (or waiting) status, if this worker still holds it.
async fn settle(
    db: &Db,
    job_id: &str,
    owner: &str,
    status: JobStatus,
    error: Option<&crate::jobs::JobError>,
) -> Result<bool> {
    let t = now();
    let finished = status.is_final().then_some(t);
    let n = sqlx::query(
        "UPDATE jobs SET status = $1, error = $2, finished_at = COALESCE($3, finished_at), requested = NULL, \
         lease_owner = NULL, lease_expires_at = NULL, estimated_finish = NULL, updated_at = $4 \
         WHERE id = $5 AND lease_owner = $6",
    )
    .bind(status.as_str())
    .bind(error.and_then(|e| serde_json::to_string(e).ok()))
    .bind(finished)
    .bind(t)
    .bind(job_id)
    .bind(owner)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("settle job"))?
    .rows_affected();
    Ok(n > 0)
}

async fn fail(db: &Db, job: &JobRow, owner: &str, code: &str, message: &str) -> Result<()> {
    let err = crate::jobs::JobError { code: code.into(), message: message.into(), param: None };
    add_event(db, &job.id, "s:failed", "error", "message", &format!("Fine-tuning job failed: {message}"), None, None)
        .await?;
    settle(db, &job.id, owner, JobStatus::Failed, Some(&err)).await?;
    Ok(())
}

async fn org_name(db: &Db, org_id: &str) -> Result<String> {
    let row = sqlx::query("SELECT name FROM organizations WHERE id = $1")
        .bind(org_id)
        .fetch_one(db.pool())
        .await
        .map_err(ServerError::db("find organization"))?;
    row.try_get("name").map_err(ServerError::db("decode organization"))
}

/// Reads what the trainer wrote in the run directory into the database.
struct Sync {
    db: Db,
    job_id: String,
    files: RunFiles,
    /// Complete lines of `events.jsonl` already stored (persisted in the job's row).
    lines: i64,
    checkpoints: HashSet<u64>,
}

impl Sync {
    async fn new(db: &Db, job_id: &str, run_dir: &Path) -> Result<Self> {
        let row = sqlx::query("SELECT event_lines FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(db.pool())
            .await
            .map_err(ServerError::db("event lines"))?;
        let lines = row.try_get("event_lines").map_err(ServerError::db("event lines"))?;
        let known = sqlx::query("SELECT step FROM job_checkpoints WHERE job_id = $1")
            .bind(job_id)
            .fetch_all(db.pool())
            .await
            .map_err(ServerError::db("checkpoints"))?;
        let checkpoints =
            known.iter().filter_map(|r| r.try_get::<i64, _>("step").ok()).map(i64::unsigned_abs).collect();
        Ok(Self { db: db.clone(), job_id: job_id.to_string(), files: RunFiles::new(run_dir), lines, checkpoints })
    }

    /// New lines of the trainer's `events.jsonl`; with `lost_after`, lines about later steps
    /// (a trajectory a crash threw away) are passed over, not stored.
    async fn events(&mut self, lost_after: Option<u64>) -> Result<()> {
        let path = self.files.events();
        let Ok(text) = tokio::fs::read_to_string(&path).await else { return Ok(()) };
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        let mut n = 0i64;
        for line in complete.lines() {
            n += 1;
            if n <= self.lines {
                continue;
            }
            let Ok(e) = serde_json::from_str::<TrainEvent>(line) else {
                tracing::warn!(job = %self.job_id, line = n, "unreadable line in events.jsonl");
                continue;
            };
            if lost_after.is_some_and(|s| e.step.is_some_and(|st| st > s)) {
                continue;
            }
            self.store_event(&e).await?;
        }
        if n > self.lines {
            self.lines = n;
            sqlx::query("UPDATE jobs SET event_lines = $1 WHERE id = $2")
                .bind(n)
                .bind(&self.job_id)
                .execute(self.db.pool())
                .await
                .map_err(ServerError::db("event lines"))?;
        }
        Ok(())
    }

    async fn store_event(&self, e: &TrainEvent) -> Result<()> {
        let kind = e.kind.and_then(|k| serde_json::to_value(k).ok()).and_then(|v| v.as_str().map(str::to_string));
        let kind = kind.unwrap_or_else(|| "message".into());
        let dedup = match (e.kind, e.step) {
            (Some(EventKind::ExampleSkipped) | None, _) | (_, None) => {
                format!("t:{kind}:{}", docraft_core::content_hash(e.message.as_bytes()))
            }
            (Some(_), Some(step)) => format!("t:{kind}:{step}"),
        };
        let level = match e.level {
            EventLevel::Info if e.kind == Some(EventKind::ExampleSkipped) => "warn",
            EventLevel::Info => "info",
            EventLevel::Error => "error",
        };
        // The checkpoint's path stays on the server.
        let message = match e.kind {
            Some(EventKind::Checkpoint) => format!("Checkpoint written at step {}", e.step.unwrap_or(0)),
            Some(EventKind::Finished) => "Training finished: adapter written".to_string(),
            _ => e.message.clone(),
        };
        let data = json!({"kind": kind, "step": e.step, "epoch": e.epoch, "valid_loss": e.valid_loss,
                          "valid_mean_token_accuracy": e.valid_accuracy});
        let step = e.step.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        add_event(&self.db, &self.job_id, &dedup, level, "message", &message, Some(&data), step).await
    }

    /// Complete checkpoints not stored yet.
    async fn checkpoints(&mut self) -> Result<()> {
        let files = self.files.clone();
        let found = tokio::task::spawn_blocking(move || files.checkpoint_dirs())
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        for (step, dir) in found {
            let step = step as u64;
            if self.checkpoints.contains(&step) {
                continue;
            }
            let Ok(text) = tokio::fs::read_to_string(dir.join("state.json")).await else { continue };
            let Ok(state) = serde_json::from_str::<CheckpointState>(&text) else { continue };
            let metrics = serde_json::to_string(&state.metrics).map_err(|e| ServerError::Internal(e.to_string()))?;
            sqlx::query(
                "INSERT INTO job_checkpoints (id, job_id, step, metrics, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (job_id, step) DO NOTHING",
            )
            .bind(new_id(CHECKPOINT_PREFIX)?)
            .bind(&self.job_id)
            .bind(i64::try_from(step).unwrap_or(i64::MAX))
            .bind(metrics)
            .bind(now())
            .execute(self.db.pool())
            .await
            .map_err(ServerError::db("insert checkpoint"))?;
            self.checkpoints.insert(step);
        }
        Ok(())
    }
}

/// A metrics event of a step, as OpenAI's `type: metrics` events carry it.
async fn store_step(db: &Db, job_id: &str, m: &MetricRecord, total: Option<u64>) -> Result<()> {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let data = json!({
        "step": m.step,
        "total_steps": total,
        "epoch": finite(Some(m.epoch)),
        "train_loss": finite(Some(m.train_loss)),
        "train_mean_token_accuracy": finite(m.train_accuracy),
        "valid_loss": finite(m.valid_loss),
        "valid_mean_token_accuracy": finite(m.valid_accuracy),
        "learning_rate": finite(Some(m.learning_rate)),
        "tokens_per_s": finite(Some(m.tokens_per_s)),
        "elapsed_s": finite(Some(m.elapsed_s)),
        "peak_rss_mib": m.peak_rss_mib,
    });
    let mut message = format!("Step {}", m.step);
    if let Some(t) = total {
        message += &format!("/{t}");
    }
    message += &format!(": training loss={:.4}", m.train_loss);
    if let Some(v) = m.valid_loss {
        message += &format!(", validation loss={v:.4}");
    }
    let step = i64::try_from(m.step).unwrap_or(i64::MAX);
    add_event(db, job_id, &format!("m:{}", m.step), "info", "metrics", &message, Some(&data), Some(step)).await
}

/// CPU seconds of the threads a job runs on, read from `/proc` (Linux); each thread's
/// latest reading is kept, so threads that ended still count.
#[derive(Clone, Default)]
struct CpuMeter {
    stats: Arc<Mutex<HashMap<PathBuf, f64>>>,
}

impl CpuMeter {
    /// Registers the calling thread.
    fn register(&self) {
        if let Ok(link) = std::fs::read_link("/proc/thread-self") {
            let path = Path::new("/proc").join(link).join("stat");
            if let Ok(mut m) = self.stats.lock() {
                m.insert(path, 0.0);
            }
        }
    }

    fn sample(&self) -> f64 {
        let Ok(mut m) = self.stats.lock() else { return 0.0 };
        for (path, last) in m.iter_mut() {
            if let Some(s) = std::fs::read_to_string(path).ok().and_then(|t| cpu_of_stat(&t)) {
                *last = s;
            }
        }
        m.values().sum()
    }
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn cpu_of_stat(text: &str) -> Option<f64> {
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

#[allow(clippy::too_many_lines)]
async fn run_claimed(state: &AppState, job: JobRow, owner: &str, stop: &watch::Receiver<bool>) -> Result<()> {
    let db = state.db().clone();
    // Requests that came while no worker held the job.
    match job.requested.as_deref() {
        Some("cancel") => {
            add_event(&db, &job.id, "s:cancelled", "info", "message", "Fine-tuning job cancelled", None, None).await?;
            settle(&db, &job.id, owner, JobStatus::Cancelled, None).await?;
            return Ok(());
        }
        Some("pause") => {
            settle(&db, &job.id, owner, JobStatus::Paused, None).await?;
            return Ok(());
        }
        _ => {}
    }
    // Which worker runs the job (workers may be processes on several machines).
    let worker = worker_name(owner);
    let msg = format!("Worker {worker} took the job");
    let data = json!({"worker": worker});
    add_event(&db, &job.id, &format!("s:worker:{owner}"), "info", "message", &msg, Some(&data), None).await?;
    let org_dir = state.org_dir(&job.organization_id);
    let run_dir = org_dir.join("jobs").join(&job.id).join("run");
    let Some(base) = find_base(state, &job.model).await? else {
        let msg = format!("the base model {:?} is no longer on this server", job.model);
        return fail(&db, &job, owner, "model_unavailable", &msg).await;
    };
    tokio::fs::create_dir_all(&run_dir).await.map_err(|e| ServerError::io(&run_dir, e))?;
    let files_dir = org_dir.join("files");
    let paths = TrainPaths {
        base: base.path.clone(),
        data: files_dir.join(&job.training_file),
        valid: job.validation_file.as_ref().map(|v| files_dir.join(v)),
        output: run_dir.clone(),
    };
    // A crash threw away the steps after the last checkpoint: forget what they wrote.
    let checkpoint = RunFiles::new(&run_dir).latest_checkpoint().map_or(0, |(s, _)| s as u64);
    sqlx::query("DELETE FROM job_events WHERE job_id = $1 AND step > $2 AND (dedup LIKE 'm:%' OR dedup LIKE 't:%')")
        .bind(&job.id)
        .bind(i64::try_from(checkpoint).unwrap_or(i64::MAX))
        .execute(db.pool())
        .await
        .map_err(ServerError::db("forget lost steps"))?;
    let mut sync = Sync::new(&db, &job.id, &run_dir).await?;
    sync.events(Some(checkpoint)).await?;
    sync.checkpoints().await?;
    if job.status == JobStatus::ValidatingFiles {
        let msg = format!("Validating training file: {}", job.training_file);
        add_event(&db, &job.id, "s:validating", "info", "message", &msg, None, None).await?;
    } else if checkpoint > 0 {
        let msg = format!("Resuming from the checkpoint at step {checkpoint}");
        add_event(&db, &job.id, &format!("s:resume:{}", new_id("")?), "info", "message", &msg, None, None).await?;
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let cancel = CancelToken::new();
    let cpu = CpuMeter::default();
    let threads = state.config().threads_per_job();
    let settings = TrainSettings { settings: job.settings.clone(), ..TrainSettings::default() };
    let handle = {
        let (cancel, cpu, paths) = (cancel.clone(), cpu.clone(), paths.clone());
        tokio::task::spawn_blocking(move || -> std::result::Result<(Trained, Option<Value>), PipelineError> {
            cpu.register();
            let pool_cpu = cpu.clone();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .start_handler(move |_| pool_cpu.register())
                .build()
                .map_err(|e| PipelineError::setting("train", "threads", e.to_string()))?;
            pool.install(|| {
                let sink = |e: &Event| match e {
                    Event::Message { level, text, .. } => {
                        let _ = tx.send(Msg::Log(*level, text.clone()));
                    }
                    Event::Progress { total, .. } => {
                        let _ = tx.send(Msg::Total(*total));
                    }
                    _ => {}
                };
                let ctx = Ctx::new(Stage::Train, &sink, cancel);
                let prepared = prepare(&settings, &paths, &ctx)?;
                let _ = tx.send(Msg::Prepared {
                    examples: prepared.train().examples.len(),
                    tokens: prepared.train().examples.iter().map(|e| e.ids.len()).sum(),
                    truncated: prepared.train().truncated,
                    rejected: prepared.train().rejected.len(),
                    valid: prepared.valid().map(|v| v.examples.len()),
                });
                let resume = has_checkpoint(&paths.output);
                let on_step = |i: &StepInfo| {
                    let _ = tx.send(Msg::Step(Box::new(i.record.clone())));
                };
                let trained = train(prepared, &paths, resume, &ctx, &on_step)?;
                // RAFT records in the validation file: open-book QA of base and adapter, here,
                // while the heartbeat still holds the lease.
                let qa = match &paths.valid {
                    Some(valid) => {
                        let adapter = paths.output.join("adapter");
                        docraft_pipeline::stage::train::open_book_qa(
                            &paths.base,
                            &adapter,
                            valid,
                            OPEN_BOOK_CASES,
                            OPEN_BOOK_MAX_TOKENS,
                            false,
                        )?
                        .map(|(base, tuned)| open_book_json(&base, &tuned))
                    }
                    None => None,
                };
                Ok((trained, qa))
            })
        })
    };
    tokio::pin!(handle);

    let mut reason: Option<StopReason> = None;
    let mut total: Option<u64> = None;
    let mut prepared = false;
    let mut last: Option<MetricRecord> = None;
    let mut tick = tokio::time::interval(state.config().heartbeat);
    let mut stop = stop.clone();
    let stop_now = |reason: &mut Option<StopReason>, why: StopReason| {
        if reason.is_none() {
            *reason = Some(why);
            cancel.cancel();
        }
    };
    let outcome = loop {
        tokio::select! {
            result = &mut handle => break result,
            Some(msg) = rx.recv() => {
                // The training thread runs on: stop it before anything returns.
                if let Err(e) = handle_msg(&db, &job, msg, &mut total, &mut prepared, &mut last, &org_dir).await {
                    tracing::error!(job = %job.id, error = %e, "worker: storing progress failed; handing the job back");
                    stop_now(&mut reason, StopReason::Failure);
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    stop_now(&mut reason, StopReason::Shutdown);
                }
            }
            _ = tick.tick() => {
                let beat = Beat { state, job: &job, owner, last: last.as_ref(), total, cpu: &cpu };
                match heartbeat(&beat, &mut sync).await {
                    Ok(Some(why)) => stop_now(&mut reason, why),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "worker: heartbeat failed; handing the job back");
                        stop_now(&mut reason, StopReason::Failure);
                    }
                }
            }
        }
    };
    while let Ok(msg) = rx.try_recv() {
        handle_msg(&db, &job, msg, &mut total, &mut prepared, &mut last, &org_dir).await?;
    }
    sync.events(None).await?;
    sync.checkpoints().await?;
    #[allow(clippy::cast_possible_truncation)]
    let cpu_total = job.cpu_seconds + cpu.sample().round() as i64;
    sqlx::query("UPDATE jobs SET cpu_seconds = $1 WHERE id = $2 AND lease_owner = $3")
        .bind(cpu_total)
        .bind(&job.id)
        .bind(owner)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("cpu seconds"))?;
    let step = last.as_ref().map_or(checkpoint, |m| m.step);
    match outcome {
        Err(join) => fail(&db, &job, owner, "internal_error", &format!("the training thread failed: {join}")).await,
        Ok(Ok((trained, qa))) => finish(state, &job, owner, &trained, qa).await,
        Ok(Err(e)) if e.is_cancelled() => match reason {
            Some(StopReason::Cancel) => {
                let msg = format!("Fine-tuning job cancelled at step {step}");
                add_event(&db, &job.id, "s:cancelled", "info", "message", &msg, None, None).await?;
                settle(&db, &job.id, owner, JobStatus::Cancelled, None).await.map(|_| ())
            }
            Some(StopReason::Pause) => {
                let msg = format!("Fine-tuning job paused at step {step} after a checkpoint");
                add_event(&db, &job.id, &format!("s:paused:{}", new_id("")?), "info", "message", &msg, None, None)
                    .await?;
                settle(&db, &job.id, owner, JobStatus::Paused, None).await.map(|_| ())
            }
            Some(StopReason::LostLease) => Ok(()),
            Some(StopReason::Shutdown | StopReason::Failure) | None => {
                let msg = format!("The server stopped at step {step}; the job is queued to continue from there");
                add_event(&db, &job.id, &format!("s:handback:{}", new_id("")?), "info", "message", &msg, None, None)
                    .await?;
                let status = if prepared { JobStatus::Queued } else { job.status };
                settle(&db, &job.id, owner, status, None).await.map(|_| ())
            }
        },
        Ok(Err(e)) => {
            let code = if prepared { "training_failed" } else { "invalid_training_file" };
            fail(&db, &job, owner, code, &scrub(&e.to_string(), &org_dir)).await
        }
    }
}

async fn handle_msg(
    db: &Db,
    job: &JobRow,
    msg: Msg,
    total: &mut Option<u64>,
    prepared: &mut bool,
    last: &mut Option<MetricRecord>,
    org_dir: &Path,
) -> Result<()> {
    match msg {
        Msg::Prepared { examples, tokens, truncated, rejected, valid } => {
            *prepared = true;
            let epochs = i64::try_from(job.settings.epochs).unwrap_or(1);
            let trained = i64::try_from(tokens).unwrap_or(i64::MAX).saturating_mul(epochs);
            let t = now();
            sqlx::query(
                "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1), trained_tokens = $2, \
                 updated_at = $1 WHERE id = $3 AND status IN ('validating_files', 'queued', 'running')",
            )
            .bind(t)
            .bind(trained)
            .bind(&job.id)
            .execute(db.pool())
            .await
            .map_err(ServerError::db("start job"))?;
            let mut msg = format!("Training file: {examples} examples, {tokens} tokens");
            if rejected > 0 {
                msg += &format!(", {rejected} lines rejected");
            }
            if let Some(v) = valid {
                msg += &format!("; validation file: {v} examples");
            }
            let data = json!({"examples": examples, "tokens": tokens, "rejected": rejected,
                              "truncated": truncated, "valid_examples": valid});
            add_event(db, &job.id, "s:files", "info", "message", &msg, Some(&data), None).await?;
            if truncated > 0 {
                let msg = format!(
                    "{truncated} examples are longer than max_seq_len ({}) and were cut",
                    job.settings.max_seq_len
                );
                add_event(db, &job.id, "s:truncated", "warn", "message", &msg, None, None).await?;
            }
            add_event(db, &job.id, "s:started", "info", "message", "Fine-tuning job started", None, None).await?;
        }
        Msg::Total(t) => {
            if *total != Some(t) {
                *total = Some(t);
                sqlx::query("UPDATE jobs SET total_steps = $1 WHERE id = $2")
                    .bind(i64::try_from(t).unwrap_or(i64::MAX))
                    .bind(&job.id)
                    .execute(db.pool())
                    .await
                    .map_err(ServerError::db("total steps"))?;
            }
        }
        Msg::Step(m) => {
            store_step(db, &job.id, &m, *total).await?;
            *last = Some(*m);
        }
        Msg::Log(level, text) => {
            let text = scrub(&text, org_dir);
            let level = match level {
                Level::Info => "info",
                Level::Warn => "warn",
            };
            let dedup = format!("p:{}", docraft_core::content_hash(text.as_bytes()));
            add_event(db, &job.id, &dedup, level, "message", &text, None, None).await?;
        }
    }
    Ok(())
}

/// A succeeded run: the result files, the model in the hub, the job's final row.
async fn finish(state: &AppState, job: &JobRow, owner: &str, trained: &Trained, qa: Option<Value>) -> Result<()> {
    let db = state.db();
    let org_name = org_name(db, &job.organization_id).await?;
    let model_id = job.model_name(&org_name);
    let org_dir = state.org_dir(&job.organization_id);
    let files_dir = org_dir.join("files");
    tokio::fs::create_dir_all(&files_dir).await.map_err(|e| ServerError::io(&files_dir, e))?;

    let rows = sqlx::query("SELECT data FROM job_events WHERE job_id = $1 AND kind = 'metrics' ORDER BY step")
        .bind(&job.id)
        .fetch_all(db.pool())
        .await
        .map_err(ServerError::db("metrics"))?;
    let mut csv = String::from("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n");
    for row in &rows {
        let data: Option<String> = row.try_get("data").map_err(ServerError::db("metrics"))?;
        let Some(d) = data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else { continue };
        let f = |k: &str| d.get(k).filter(|v| !v.is_null()).map_or(String::new(), ToString::to_string);
        csv += &format!(
            "{},{},{},{},{}\n",
            f("step"),
            f("train_loss"),
            f("train_mean_token_accuracy"),
            f("valid_loss"),
            f("valid_mean_token_accuracy")
        );
    }
    let rows = sqlx::query("SELECT created_at, level, message FROM job_events WHERE job_id = $1 ORDER BY seq")
        .bind(&job.id)
        .fetch_all(db.pool())
        .await
        .map_err(ServerError::db("log"))?;
    let mut log = String::new();
    for row in &rows {
        let d = || ServerError::db("log");
        let at: i64 = row.try_get("created_at").map_err(d())?;
        let level: String = row.try_get("level").map_err(d())?;
        let message: String = row.try_get("message").map_err(d())?;
        log += &format!("{at}\t{level}\t{message}\n");
    }
    let results = [(format!("{}-metrics.csv", job.id), csv), (format!("{}.log", job.id), log)];
    let mut result_ids = Vec::new();
    for (name, text) in &results {
        let id = new_id("file-")?;
        let path = files_dir.join(&id);
        tokio::fs::write(&path, text).await.map_err(|e| ServerError::io(&path, e))?;
        result_ids.push((id, name.clone(), text.len()));
    }
    let evaluation = trained.base_eval.map(|(bl, ba)| {
        json!({
            "base": {"loss": bl, "token_accuracy": ba},
            "adapter": {"loss": trained.report.valid_loss, "token_accuracy": trained.report.valid_accuracy},
            "open_book_qa": qa,
            "validation_file": job.validation_file,
        })
    });
    let model = ModelEntry {
        id: model_id.clone(),
        organization_id: Some(job.organization_id.clone()),
        name: job.output_name.clone(),
        kind: ModelKind::FineTuned,
        path: PathBuf::from("jobs").join(&job.id).join("run").join("adapter"),
        base_model: Some(job.model.clone()),
        job_id: Some(job.id.clone()),
        training_file: Some(job.training_file.clone()),
        parameters: Some(json!({"hyperparameters": job.hyperparameters, "evaluation": evaluation})),
        created_at: now(),
    };
    let t = now();
    let mut tx = db.pool().begin().await.map_err(ServerError::db("begin"))?;
    for (id, name, bytes) in &result_ids {
        sqlx::query(
            "INSERT INTO files (id, organization_id, bytes, created_at, filename, purpose, status) \
             VALUES ($1, $2, $3, $4, $5, 'fine-tune-results', 'processed')",
        )
        .bind(id)
        .bind(&job.organization_id)
        .bind(i64::try_from(*bytes).unwrap_or(i64::MAX))
        .bind(t)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(ServerError::db("insert result file"))?;
    }
    let ids: Vec<&String> = result_ids.iter().map(|(id, _, _)| id).collect();
    let n = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', fine_tuned_model = $1, result_files = $2, finished_at = $3, \
         requested = NULL, lease_owner = NULL, lease_expires_at = NULL, estimated_finish = NULL, updated_at = $3 \
         WHERE id = $4 AND lease_owner = $5",
    )
    .bind(&model_id)
    .bind(serde_json::to_string(&ids).map_err(|e| ServerError::Internal(e.to_string()))?)
    .bind(t)
    .bind(&job.id)
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(ServerError::db("finish job"))?
    .rows_affected();
    if n == 0 {
        // Another worker holds the job now: leave the result to it.
        let _ = tx.rollback().await;
        for (id, _, _) in &result_ids {
            let _ = tokio::fs::remove_file(files_dir.join(id)).await;
        }
        return Ok(());
    }
    tx.commit().await.map_err(ServerError::db("commit"))?;
    insert(db, &model).await?;
    if let Some(e) = &evaluation {
        let mut msg = format!(
            "Evaluation on the validation file: base model loss {:.4}, fine-tuned loss {}",
            trained.base_eval.map_or(f64::NAN, |b| b.0),
            trained.report.valid_loss.map_or("-".into(), |l| format!("{l:.4}"))
        );
        if let Some(qa) = e.get("open_book_qa").filter(|q| !q.is_null()) {
            let f1 = |side: &str| qa[side]["f1"].as_f64().map_or("-".into(), |f| format!("{f:.3}"));
            msg += &format!(
                "; open-book QA on {} RAFT records: token F1 {} (base) vs {} (fine-tuned)",
                qa["base"]["questions"],
                f1("base"),
                f1("adapter")
            );
        }
        add_event(db, &job.id, "s:evaluation", "info", "message", &msg, Some(e), None).await?;
    }
    let msg = format!("New fine-tuned model created: {model_id}");
    add_event(db, &job.id, "s:model", "info", "message", &msg, None, None).await?;
    add_event(db, &job.id, "s:succeeded", "info", "message", "The job has successfully completed", None, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_worker_is_named_by_its_machine_and_process() {
        let name = worker_name("w1-4242-abcdef");
        assert!(name == "w1-4242" || name.ends_with("/w1-4242"), "{name}");
    }

    #[test]
    fn server_paths_are_scrubbed_from_messages() {
        let dir = Path::new("/srv/data/orgs/org-1");
        let text = "/srv/data/orgs/org-1/files/file-abc: 10 examples; /srv/data/orgs/org-1/jobs/j/run/x";
        assert_eq!(scrub(text, dir), "file-abc: 10 examples; jobs/j/run/x");
    }

    #[test]
    fn cpu_time_of_a_stat_line_with_spaces_in_the_name() {
        let line = "4242 (tokio worker 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert!((cpu_of_stat(line).unwrap() - 3.0).abs() < 1e-9);
        assert!(cpu_of_stat("garbage").is_none());
    }

    #[test]
    fn this_thread_is_metered_on_linux() {
        let m = CpuMeter::default();
        m.register();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        if Path::new("/proc/thread-self").exists() {
            assert!(m.sample() > 0.0);
        }
    }
}
