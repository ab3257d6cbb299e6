//! Fine-tuning jobs: `/v1/fine_tuning/jobs` as OpenAI defines it (create, list, retrieve,
//! cancel, pause, resume, events, checkpoints) and the users' spec's aliases under
//! `/fine_tuning/jobs`. A job is a row of the durable `jobs` table; [`crate::worker`] leases
//! and trains it, writing its events and checkpoints as they happen.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use docraft_train::{BatchSize, Settings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::db::{Db, now};
use crate::ids::{is_id, new_id};
use crate::models::find_base;
use crate::server::AppState;
use crate::{Result, ServerError};

/// The prefix of job ids.
pub const JOB_PREFIX: &str = "ftjob-";
/// The prefix of event ids.
pub const EVENT_PREFIX: &str = "ftevent-";
/// The prefix of checkpoint ids.
pub const CHECKPOINT_PREFIX: &str = "ftckpt-";
/// Jobs a list returns by default.
pub const DEFAULT_JOB_LIMIT: i64 = 20;
/// Events a list returns by default.
pub const DEFAULT_EVENT_LIMIT: i64 = 20;
/// Checkpoints a list returns by default.
pub const DEFAULT_CHECKPOINT_LIMIT: i64 = 10;
/// Most items one page returns.
pub const MAX_PAGE: i64 = 1000;
/// Longest `suffix`.
pub const MAX_SUFFIX_CHARS: usize = 64;
/// Most `metadata` keys, longest key and value (OpenAI's limits).
pub const METADATA_LIMITS: (usize, usize, usize) = (16, 64, 512);
const SSE_POLL: Duration = Duration::from_millis(500);

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Created; the worker checks the files against the base model's tokenizer first.
    ValidatingFiles,
    /// Waiting for a worker (also after a resume, or when its worker went away).
    Queued,
    /// A worker trains it.
    Running,
    /// Stopped after a checkpoint; `resume` queues it again.
    Paused,
    /// Finished; `fine_tuned_model` names the result.
    Succeeded,
    /// Stopped by an error (see `error`).
    Failed,
    /// Stopped by a cancel.
    Cancelled,
}

impl JobStatus {
    /// The name stored and sent.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidatingFiles => "validating_files",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::ValidatingFiles,
            Self::Queued,
            Self::Running,
            Self::Paused,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the job is over.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job's error, as OpenAI describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// A stable code (`invalid_training_file`, `training_failed`, `model_unavailable`).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The parameter at fault.
    pub param: Option<String>,
}

/// A fine-tuning job, as OpenAI describes it, plus `docraft` (progress and resources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FineTuningJob {
    /// `ftjob-…`
    pub id: String,
    /// Always `fine_tuning.job`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Why the job failed.
    pub error: Option<JobError>,
    /// The model it made (set when it succeeded).
    pub fine_tuned_model: Option<String>,
    /// Unix seconds, when it ended.
    pub finished_at: Option<i64>,
    /// `n_epochs`, `batch_size`, `learning_rate_multiplier` and docraft's own keys.
    pub hyperparameters: Value,
    /// The base model.
    pub model: String,
    /// The organization.
    pub organization_id: String,
    /// The metrics CSV and the log, once it ended.
    pub result_files: Vec<String>,
    /// See [`JobStatus`].
    pub status: JobStatus,
    /// Tokens trained on (examples' tokens times epochs).
    pub trained_tokens: Option<i64>,
    /// The training file.
    pub training_file: String,
    /// The validation file.
    pub validation_file: Option<String>,
    /// Always `null`.
    pub integrations: Option<Value>,
    /// The seed of every random choice.
    pub seed: i64,
    /// Unix seconds, estimated from the steps so far.
    pub estimated_finish: Option<i64>,
    /// `{"type": "supervised", "supervised": {"hyperparameters": …}}`.
    pub method: Value,
    /// The caller's key-value pairs.
    pub metadata: Option<Value>,
    /// The suffix given at creation.
    pub user_provided_suffix: Option<String>,
    /// docraft's extension: steps, latest metrics, per-epoch times and resources.
    pub docraft: Value,
}

/// A page of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Always `list`.
    pub object: String,
    /// The jobs, newest first.
    pub data: Vec<FineTuningJob>,
    /// Whether more follow (pass the last id as `after`).
    pub has_more: bool,
}

/// An event of a job, as OpenAI describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// `ftevent-…`
    pub id: String,
    /// Always `fine_tuning.job.event`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// For people.
    pub message: String,
    /// `message` or `metrics`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The metrics of a step, or details.
    pub data: Option<Value>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Always `list`.
    pub object: String,
    /// The events, newest first.
    pub data: Vec<JobEvent>,
    /// Whether older ones follow.
    pub has_more: bool,
}

/// A checkpoint's metrics: all seven, always numbers (a metric the run did not measure, such
/// as a validation loss without a validation file, is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointMetrics {
    /// The step (a whole number).
    pub step: i64,
    /// Training loss of the step.
    pub train_loss: f64,
    /// Token accuracy on the step's training examples.
    pub train_mean_token_accuracy: f64,
    /// Validation loss (latest evaluation).
    pub valid_loss: f64,
    /// Validation token accuracy (latest evaluation).
    pub valid_mean_token_accuracy: f64,
    /// Validation loss on the whole set at this step.
    pub full_valid_loss: f64,
    /// Validation token accuracy on the whole set at this step.
    pub full_valid_mean_token_accuracy: f64,
}

impl From<&docraft_core::train::CheckpointMetrics> for CheckpointMetrics {
    fn from(m: &docraft_core::train::CheckpointMetrics) -> Self {
        let n = |v: Option<f64>| v.filter(|x| x.is_finite()).unwrap_or(0.0);
        Self {
            #[allow(clippy::cast_possible_truncation)]
            step: n(m.step) as i64,
            train_loss: n(m.train_loss),
            train_mean_token_accuracy: n(m.train_mean_token_accuracy),
            valid_loss: n(m.valid_loss),
            valid_mean_token_accuracy: n(m.valid_mean_token_accuracy),
            full_valid_loss: n(m.full_valid_loss),
            full_valid_mean_token_accuracy: n(m.full_valid_mean_token_accuracy),
        }
    }
}

/// A checkpoint of a job, as OpenAI describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobCheckpoint {
    /// `ftckpt-…`
    pub id: String,
    /// Always `fine_tuning.job.checkpoint`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The checkpoint's model name (`<fine_tuned_model>:ckpt-step-N`).
    pub fine_tuned_model_checkpoint: String,
    /// The step.
    pub step_number: i64,
    /// The job.
    pub fine_tuning_job_id: String,
    /// The metrics at the step.
    pub metrics: CheckpointMetrics,
}

/// A page of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointList {
    /// Always `list`.
    pub object: String,
    /// The checkpoints, newest first.
    pub data: Vec<JobCheckpoint>,
    /// The first checkpoint's id.
    pub first_id: Option<String>,
    /// The last checkpoint's id.
    pub last_id: Option<String>,
    /// Whether more follow.
    pub has_more: bool,
}

/// The body of `POST /v1/fine_tuning/jobs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// A base model of `GET /v1/models`.
    pub model: String,
    /// A `fine-tune` file of the organization.
    pub training_file: String,
    /// A `fine-tune` file to evaluate on.
    #[serde(default)]
    pub validation_file: Option<String>,
    /// `n_epochs`, `batch_size`, `learning_rate_multiplier` ("auto" or a number) and docraft's
    /// keys: `learning_rate`, `lora_rank`, `lora_alpha`, `lora_dropout`, `quantization_bits`,
    /// `max_steps`, `max_seq_len`, `warmup_steps`, `checkpoint_every`, `eval_every`,
    /// `micro_batch_size`, `target_modules`.
    #[serde(default)]
    pub hyperparameters: Option<Map<String, Value>>,
    /// `{"type": "supervised", "supervised": {"hyperparameters": …}}`.
    #[serde(default)]
    pub method: Option<Value>,
    /// Up to 64 letters, digits, `-`, `_`, `.`: part of the model's name and its hub name.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Seed of every random choice (default 42).
    #[serde(default)]
    pub seed: Option<i64>,
    /// Up to 16 string pairs.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Accepted and ignored (no third-party integrations).
    #[serde(default)]
    pub integrations: Option<Value>,
}

/// Query of the lists.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The id of the last item of the previous page.
    pub after: Option<String>,
    /// Items per page.
    pub limit: Option<i64>,
}

/// Query of the events list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The id of the last event of the previous page (with `stream`: the last event seen).
    pub after: Option<String>,
    /// Events per page (default 20).
    pub limit: Option<i64>,
    /// `true`: server-sent events, oldest first, until the job ends (docraft's extension).
    pub stream: Option<bool>,
}

/// The columns every job query selects (what [`JobRow::from_row`] decodes).
pub const JOB_COLUMNS: &str = "id, organization_id, model, training_file, validation_file, settings, hyperparameters, \
    suffix, output_name, seed, metadata, status, error, fine_tuned_model, result_files, trained_tokens, total_steps, \
    created_at, created_ms, started_at, finished_at, estimated_finish, requested, lease_owner, cpu_seconds";

/// A row of the jobs table.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// `ftjob-…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// The base model's id.
    pub model: String,
    /// The training file.
    pub training_file: String,
    /// The validation file.
    pub validation_file: Option<String>,
    /// The trainer's settings, resolved at creation.
    pub settings: Settings,
    /// The hyperparameters as reported.
    pub hyperparameters: Value,
    /// The suffix given.
    pub suffix: Option<String>,
    /// The name of the result in the hub.
    pub output_name: String,
    /// The seed.
    pub seed: i64,
    /// The caller's metadata.
    pub metadata: Option<Value>,
    /// The status.
    pub status: JobStatus,
    /// The error of a failed job.
    pub error: Option<JobError>,
    /// The model it made.
    pub fine_tuned_model: Option<String>,
    /// Result file ids.
    pub result_files: Vec<String>,
    /// Tokens trained on.
    pub trained_tokens: Option<i64>,
    /// Steps planned.
    pub total_steps: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix milliseconds (orders jobs made within one second).
    pub created_ms: i64,
    /// When training first started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Estimated end.
    pub estimated_finish: Option<i64>,
    /// `cancel` or `pause`, asked of the worker.
    pub requested: Option<String>,
    /// The worker's lease token.
    pub lease_owner: Option<String>,
    /// CPU seconds of the job's threads, over every attempt.
    pub cpu_seconds: i64,
}

impl JobRow {
    /// Decodes a row selected with the job columns.
    ///
    /// # Errors
    /// [`ServerError::Database`] for a row that does not decode.
    pub fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode job");
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
        let status: String = row.try_get("status").map_err(d())?;
        let settings: String = row.try_get("settings").map_err(d())?;
        let error: Option<String> = row.try_get("error").map_err(d())?;
        let result_files: String = row.try_get("result_files").map_err(d())?;
        Ok(Self {
            id: row.try_get("id").map_err(d())?,
            organization_id: row.try_get("organization_id").map_err(d())?,
            model: row.try_get("model").map_err(d())?,
            training_file: row.try_get("training_file").map_err(d())?,
            validation_file: row.try_get("validation_file").map_err(d())?,
            settings: serde_json::from_str(&settings)
                .map_err(|e| ServerError::Internal(format!("job settings: {e}")))?,
            hyperparameters: json(row.try_get("hyperparameters").map_err(d())?).unwrap_or(Value::Null),
            suffix: row.try_get("suffix").map_err(d())?,
            output_name: row.try_get("output_name").map_err(d())?,
            seed: row.try_get("seed").map_err(d())?,
            metadata: json(row.try_get("metadata").map_err(d())?),
            status: JobStatus::parse(&status).ok_or_else(|| ServerError::Internal(format!("job status {status:?}")))?,
            error: error.and_then(|e| serde_json::from_str(&e).ok()),
            fine_tuned_model: row.try_get("fine_tuned_model").map_err(d())?,
            result_files: serde_json::from_str(&result_files).unwrap_or_default(),
            trained_tokens: row.try_get("trained_tokens").map_err(d())?,
            total_steps: row.try_get("total_steps").map_err(d())?,
            created_at: row.try_get("created_at").map_err(d())?,
            created_ms: row.try_get("created_ms").map_err(d())?,
            started_at: row.try_get("started_at").map_err(d())?,
            finished_at: row.try_get("finished_at").map_err(d())?,
            estimated_finish: row.try_get("estimated_finish").map_err(d())?,
            requested: row.try_get("requested").map_err(d())?,
            lease_owner: row.try_get("lease_owner").map_err(d())?,
            cpu_seconds: row.try_get("cpu_seconds").map_err(d())?,
        })
    }

    /// The name the result gets: `ft:<base>:<org>:<output name>:<job id>`.
    #[must_use]
    pub fn model_name(&self, org_name: &str) -> String {
        let org: String =
            org_name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
        format!("ft:{}:{}:{}:{}", self.model, org, self.output_name, self.id)
    }

    /// OpenAI's job object, with `docraft` as given.
    #[must_use]
    pub fn to_openai(&self, docraft: Value) -> FineTuningJob {
        FineTuningJob {
            id: self.id.clone(),
            object: "fine_tuning.job".into(),
            created_at: self.created_at,
            error: self.error.clone(),
            fine_tuned_model: self.fine_tuned_model.clone(),
            finished_at: self.finished_at,
            hyperparameters: self.hyperparameters.clone(),
            model: self.model.clone(),
            organization_id: self.organization_id.clone(),
            result_files: self.result_files.clone(),
            status: self.status,
            trained_tokens: self.trained_tokens,
            training_file: self.training_file.clone(),
            validation_file: self.validation_file.clone(),
            integrations: None,
            seed: self.seed,
            estimated_finish: self.estimated_finish,
            method: json!({"type": "supervised", "supervised": {"hyperparameters": self.hyperparameters}}),
            metadata: self.metadata.clone(),
            user_provided_suffix: self.suffix.clone(),
            docraft,
        }
    }
}

fn not_found(id: &str) -> ServerError {
    ServerError::NotFound { kind: "fine-tuning job", id: id.to_string() }
}

/// The job `id` of organization `org_id` (another organization's answers 404).
///
/// # Errors
/// [`ServerError::NotFound`], [`ServerError::Database`].
pub async fn load(db: &Db, org_id: &str, id: &str) -> Result<JobRow> {
    if !is_id(id, JOB_PREFIX) {
        return Err(not_found(id));
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND organization_id = $2"
    )))
    .bind(id)
    .bind(org_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find job"))?
    .ok_or_else(|| not_found(id))?;
    JobRow::from_row(&row)
}

/// A job by id or, for the spec's routes, by its output name (the newest of that name).
async fn load_by_name(db: &Db, org_id: &str, name: &str) -> Result<JobRow> {
    if is_id(name, JOB_PREFIX) {
        return load(db, org_id, name).await;
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE output_name = $1 AND organization_id = $2 \
         ORDER BY created_ms DESC, id DESC LIMIT 1"
    )))
    .bind(name)
    .bind(org_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find job"))?
    .ok_or_else(|| not_found(name))?;
    JobRow::from_row(&row)
}

/// Writes an event once: a second write with the same `dedup` key is a no-op.
///
/// # Errors
/// [`ServerError::Database`], [`ServerError::Random`].
#[allow(clippy::too_many_arguments)]
pub async fn add_event(
    db: &Db,
    job_id: &str,
    dedup: &str,
    level: &str,
    kind: &str,
    message: &str,
    data: Option<&Value>,
    step: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_events (id, job_id, dedup, created_at, level, kind, message, data, step) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (job_id, dedup) DO NOTHING",
    )
    .bind(new_id(EVENT_PREFIX)?)
    .bind(job_id)
    .bind(dedup)
    .bind(now())
    .bind(level)
    .bind(kind)
    .bind(message)
    .bind(data.map(Value::to_string))
    .bind(step)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("insert event"))?;
    Ok(())
}

/// An event that happens once per job (`dedup`) or, with a fresh key, each time.
async fn add_message(db: &Db, job_id: &str, level: &str, message: &str) -> Result<()> {
    let key = format!("s:{}", new_id("")?);
    add_event(db, job_id, &key, level, "message", message, None, None).await
}

fn bad(message: impl Into<String>, param: &str) -> ServerError {
    ServerError::bad_request(message, Some(param), Some("invalid_value"))
}

/// "auto" or a number of `param`.
fn auto_or_number(v: &Value, param: &str) -> Result<Option<f64>> {
    match v {
        Value::String(s) if s == "auto" => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| bad(format!("{param}: not a number"), param)),
        _ => Err(bad(format!("{param}: \"auto\" or a number"), param)),
    }
}

fn whole(v: f64, param: &str) -> Result<usize> {
    if v.fract() != 0.0 || !(0.0..=1e9).contains(&v) {
        return Err(ServerError::unprocessable(format!("{param}: {v} is not a whole number"), param));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(v as usize)
}

fn uint(v: &Value, param: &str) -> Result<usize> {
    let n = v.as_f64().ok_or_else(|| bad(format!("{param}: a whole number"), param))?;
    whole(n, param)
}

fn float(v: &Value, param: &str) -> Result<f64> {
    v.as_f64().ok_or_else(|| bad(format!("{param}: a number"), param))
}

/// The hyperparameters a job may set, with their place in the trainer's settings.
pub const HYPERPARAMETERS: [&str; 15] = [
    "n_epochs",
    "batch_size",
    "learning_rate_multiplier",
    "learning_rate",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "quantization_bits",
    "max_steps",
    "max_seq_len",
    "warmup_steps",
    "checkpoint_every",
    "eval_every",
    "micro_batch_size",
    "target_modules",
];

/// The trainer's settings from a job's hyperparameters (OpenAI's three, each "auto" or a
/// number, and docraft's keys), validated with the ranges `docraft train` uses; and the
/// hyperparameters to report.
///
/// # Errors
/// [`ServerError::BadRequest`] for an unknown key or a value of the wrong type,
/// [`ServerError::Unprocessable`] naming `hyperparameters.<key>` for one out of range.
pub fn resolve_hyperparameters(h: &Map<String, Value>, seed: u64) -> Result<(Settings, Value)> {
    let defaults = Settings::default();
    let mut s = Settings { seed, ..defaults.clone() };
    let p = |k: &str| format!("hyperparameters.{k}");
    let mut multiplier = None;
    for (key, v) in h {
        let param = p(key);
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "n_epochs" => {
                if let Some(n) = auto_or_number(v, &param)? {
                    s.epochs = whole(n, &param)?;
                }
            }
            "batch_size" => {
                s.batch_size = match auto_or_number(v, &param)? {
                    Some(n) => BatchSize::Fixed(whole(n, &param)?),
                    None => BatchSize::Auto,
                };
            }
            "learning_rate_multiplier" => multiplier = auto_or_number(v, &param)?,
            "learning_rate" => s.learning_rate = float(v, &param)?,
            "lora_rank" => s.lora_rank = uint(v, &param)?,
            "lora_alpha" => s.lora_alpha = float(v, &param)?,
            "lora_dropout" => s.lora_dropout = float(v, &param)?,
            "quantization_bits" => {
                return Err(ServerError::unprocessable(
                    "quantization_bits: this server trains LoRA on full-precision weights; QLoRA is not available yet",
                    &param,
                ));
            }
            "max_steps" => s.max_steps = Some(uint(v, &param)?),
            "max_seq_len" => s.max_seq_len = uint(v, &param)?,
            "warmup_steps" => s.warmup_steps = Some(uint(v, &param)?),
            "checkpoint_every" => s.checkpoint_every = uint(v, &param)?,
            "eval_every" => s.eval_every = uint(v, &param)?,
            "micro_batch_size" => s.micro_batch_size = uint(v, &param)?,
            "target_modules" => {
                let list = v.as_array().ok_or_else(|| bad(format!("{param}: a list of module names"), &param))?;
                s.target_modules = list
                    .iter()
                    .map(|m| m.as_str().map(str::to_string).ok_or_else(|| bad(format!("{param}: names"), &param)))
                    .collect::<Result<_>>()?;
            }
            other => {
                return Err(bad(
                    format!("unknown hyperparameter {other:?}; known: {}", HYPERPARAMETERS.join(", ")),
                    &param,
                ));
            }
        }
    }
    if let Some(m) = multiplier {
        if h.get("learning_rate").is_some_and(|v| !v.is_null()) {
            return Err(bad(
                "give learning_rate or learning_rate_multiplier, not both",
                "hyperparameters.learning_rate_multiplier",
            ));
        }
        s.learning_rate = defaults.learning_rate * m;
    }
    s.validate().map_err(|e| match e {
        docraft_train::TrainError::Setting { name, message } => {
            let name = match name.as_str() {
                "epochs" => "n_epochs".to_string(),
                "learning_rate" if multiplier.is_some() => "learning_rate_multiplier".to_string(),
                _ => name,
            };
            ServerError::unprocessable(format!("hyperparameters.{name}: {message}"), &p(&name))
        }
        other => ServerError::unprocessable(other.to_string(), "hyperparameters"),
    })?;
    let batch = match s.batch_size {
        BatchSize::Auto => json!("auto"),
        BatchSize::Fixed(n) => json!(n),
    };
    let reported = json!({
        "n_epochs": s.epochs,
        "batch_size": batch,
        "learning_rate_multiplier": s.learning_rate / defaults.learning_rate,
        "learning_rate": s.learning_rate,
        "lora_rank": s.lora_rank,
        "lora_alpha": s.lora_alpha,
        "lora_dropout": s.lora_dropout,
        "max_steps": s.max_steps,
        "max_seq_len": s.max_seq_len,
        "warmup_steps": s.warmup_steps,
        "checkpoint_every": s.checkpoint_every,
        "eval_every": s.eval_every,
        "micro_batch_size": s.micro_batch_size,
        "target_modules": s.target_modules,
    });
    Ok((s, reported))
}

/// The hyperparameters of a request: the top-level ones, or those of `method.supervised`.
fn request_hyperparameters(req: &CreateJob) -> Result<Map<String, Value>> {
    let mut h = req.hyperparameters.clone().unwrap_or_default();
    if let Some(method) = &req.method {
        let kind = method.get("type").and_then(Value::as_str).unwrap_or("supervised");
        if kind != "supervised" {
            return Err(bad(format!("method {kind:?}: only \"supervised\" fine-tuning is available"), "method.type"));
        }
        if let Some(m) = method.pointer("/supervised/hyperparameters").and_then(Value::as_object) {
            for (k, v) in m {
                h.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Ok(h)
}

async fn check_file(db: &Db, org_id: &str, id: &str, param: &str) -> Result<()> {
    let invalid = || {
        ServerError::bad_request(
            format!("{param} {id:?}: no fine-tune file of that id in this organization"),
            Some(param),
            Some("invalid_file_id"),
        )
    };
    if !is_id(id, "file-") {
        return Err(invalid());
    }
    let row = sqlx::query("SELECT purpose FROM files WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("find file"))?
        .ok_or_else(invalid)?;
    let purpose: String = row.try_get("purpose").map_err(ServerError::db("decode file"))?;
    if purpose != "fine-tune" {
        return Err(ServerError::bad_request(
            format!("{param} {id:?} has purpose {purpose:?}; upload it with purpose \"fine-tune\""),
            Some(param),
            Some("invalid_file_purpose"),
        ));
    }
    Ok(())
}

fn check_metadata(m: &Map<String, Value>) -> Result<()> {
    let (keys, key_len, value_len) = METADATA_LIMITS;
    if m.len() > keys {
        return Err(bad(format!("metadata: at most {keys} keys"), "metadata"));
    }
    for (k, v) in m {
        if k.chars().count() > key_len {
            return Err(bad(format!("metadata key {k:?}: at most {key_len} characters"), "metadata"));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= value_len => {}
            _ => return Err(bad(format!("metadata.{k}: a string of at most {value_len} characters"), "metadata")),
        }
    }
    Ok(())
}

fn parse_create(body: &[u8]) -> Result<CreateJob> {
    if body.is_empty() {
        return Err(ServerError::bad_request("the body is empty; send a JSON object", None, Some("invalid_json")));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ServerError::bad_request(format!("the body is not JSON: {e}"), None, Some("invalid_json")))?;
    if !value.is_object() {
        return Err(ServerError::bad_request("the body must be a JSON object", None, Some("invalid_json")));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let param = text.split('`').nth(1).map(str::to_string);
        ServerError::BadRequest { message: format!("invalid request: {text}"), param, code: Some("invalid_request") }
    })
}

/// Creates a job; it starts as `validating_files` and a worker takes it up.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs", tag = "fine-tuning", security(("bearer" = [])),
    request_body = CreateJob,
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 400, description = "Unusable request", body = crate::ErrorBody),
              (status = 422, description = "A hyperparameter out of range", body = crate::ErrorBody),
              (status = 429, description = "Too many active jobs", body = crate::ErrorBody)))]
pub async fn create_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    body: Bytes,
) -> Result<Json<FineTuningJob>> {
    let req = parse_create(&body)?;
    let base = find_base(&state, &req.model).await?.ok_or_else(|| {
        ServerError::bad_request(
            format!("model {:?} does not exist on this server; GET /v1/models lists the base models", req.model),
            Some("model"),
            Some("model_not_found"),
        )
    })?;
    check_file(state.db(), &org.id, &req.training_file, "training_file").await?;
    if let Some(v) = &req.validation_file {
        check_file(state.db(), &org.id, v, "validation_file").await?;
    }
    let seed = req.seed.unwrap_or(i64::try_from(Settings::default().seed).unwrap_or(42));
    if !(0..=i64::from(i32::MAX)).contains(&seed) {
        return Err(ServerError::unprocessable(format!("seed: {seed} is outside 0..=2147483647"), "seed"));
    }
    let (settings, reported) = resolve_hyperparameters(&request_hyperparameters(&req)?, seed.unsigned_abs())?;
    if let Some(s) = &req.suffix {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_SUFFIX_CHARS
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(bad(
                format!("suffix {s:?}: 1 to {MAX_SUFFIX_CHARS} ASCII letters, digits, '-', '_' or '.'"),
                "suffix",
            ));
        }
    }
    if let Some(m) = &req.metadata {
        check_metadata(m)?;
    }
    let active: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM jobs WHERE organization_id = $1 \
         AND status IN ('validating_files', 'queued', 'running', 'paused')",
    )
    .bind(&org.id)
    .fetch_one(state.db().pool())
    .await
    .map_err(ServerError::db("count jobs"))?
    .try_get("n")
    .map_err(ServerError::db("count jobs"))?;
    if active >= state.config().max_active_jobs_per_org {
        return Err(ServerError::RateLimited(format!(
            "this organization has {active} jobs waiting, running or paused (the limit is {}); \
             wait for one to end or cancel one",
            state.config().max_active_jobs_per_org
        )));
    }
    let id = new_id(JOB_PREFIX)?;
    let output_name = req.suffix.clone().unwrap_or_else(|| id.clone());
    let t = now();
    sqlx::query(
        "INSERT INTO jobs (id, organization_id, model, training_file, validation_file, settings, hyperparameters, \
         suffix, output_name, seed, metadata, status, created_at, updated_at, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(&base.id)
    .bind(&req.training_file)
    .bind(req.validation_file.as_deref())
    .bind(serde_json::to_string(&settings).map_err(|e| ServerError::Internal(e.to_string()))?)
    .bind(reported.to_string())
    .bind(req.suffix.as_deref())
    .bind(&output_name)
    .bind(seed)
    .bind(req.metadata.as_ref().map(|m| Value::Object(m.clone()).to_string()))
    .bind(JobStatus::ValidatingFiles.as_str())
    .bind(t)
    .bind(crate::db::now_ms())
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("insert job"))?;
    add_event(state.db(), &id, "s:created", "info", "message", &format!("Created fine-tuning job: {id}"), None, None)
        .await?;
    state.wake_workers();
    let job = load(state.db(), &org.id, &id).await?;
    let extra = progress(state.db(), &job).await?;
    Ok(Json(job.to_openai(extra)))
}

/// docraft's extension of a job: steps done, latest metrics, per-epoch seconds, resources.
async fn progress(db: &Db, job: &JobRow) -> Result<Value> {
    let last =
        sqlx::query("SELECT data FROM job_events WHERE job_id = $1 AND kind = 'metrics' ORDER BY step DESC LIMIT 1")
            .bind(&job.id)
            .fetch_optional(db.pool())
            .await
            .map_err(ServerError::db("latest metrics"))?;
    let latest: Option<Value> = match last {
        Some(row) => row
            .try_get::<Option<String>, _>("data")
            .map_err(ServerError::db("decode metrics"))?
            .and_then(|d| serde_json::from_str(&d).ok()),
        None => None,
    };
    let epoch_rows = sqlx::query(
        "SELECT e.step AS step, m.data AS data FROM job_events e JOIN job_events m \
         ON m.job_id = e.job_id AND m.kind = 'metrics' AND m.step = e.step \
         WHERE e.job_id = $1 AND e.dedup LIKE 't:epoch_finished:%' ORDER BY e.step",
    )
    .bind(&job.id)
    .fetch_all(db.pool())
    .await
    .map_err(ServerError::db("epoch times"))?;
    let mut epoch_seconds = Vec::new();
    let mut before = 0.0;
    for row in &epoch_rows {
        let data: Option<String> = row.try_get("data").map_err(ServerError::db("decode metrics"))?;
        let elapsed = data
            .and_then(|d| serde_json::from_str::<Value>(&d).ok())
            .and_then(|d| d.get("elapsed_s").and_then(Value::as_f64));
        if let Some(e) = elapsed {
            epoch_seconds.push(((e - before) * 10.0).round() / 10.0);
            before = e;
        }
    }
    let get = |k: &str| latest.as_ref().and_then(|l| l.get(k)).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "step": get("step"),
        "total_steps": job.total_steps,
        "train_loss": get("train_loss"),
        "train_mean_token_accuracy": get("train_mean_token_accuracy"),
        "valid_loss": get("valid_loss"),
        "valid_mean_token_accuracy": get("valid_mean_token_accuracy"),
        "elapsed_s": get("elapsed_s"),
        "epoch_seconds": epoch_seconds,
        "peak_rss_mib": get("peak_rss_mib"),
        "cpu_seconds": job.cpu_seconds,
        "output_name": job.output_name,
        "requested": job.requested,
    }))
}

/// One job.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn retrieve_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    let extra = progress(state.db(), &job).await?;
    Ok(Json(job.to_openai(extra)))
}

/// The organization's jobs, newest first; `metadata[k]=v` keeps those with that pair.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs", tag = "fine-tuning", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of jobs", body = JobList)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Caller(org): Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<JobList>> {
    let mut after = None;
    let mut limit = DEFAULT_JOB_LIMIT;
    let mut meta = HashMap::new();
    for (k, v) in query {
        match k.as_str() {
            "after" => after = Some(v),
            "limit" => {
                limit = v.parse().map_err(|_| bad(format!("limit {v:?}: a whole number"), "limit"))?;
            }
            _ => {
                if let Some(key) = k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')) {
                    meta.insert(key.to_string(), v);
                }
            }
        }
    }
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServerError::unprocessable(format!("limit {limit}: 1 to {MAX_PAGE}"), "limit"));
    }
    let cursor = match &after {
        Some(a) => {
            let j =
                load(state.db(), &org.id, a).await.map_err(|_| bad(format!("after {a:?}: no such job"), "after"))?;
            Some((j.created_ms, j.id))
        }
        None => None,
    };
    // Metadata filters are applied in code: the rows are the organization's, the pairs few.
    let mut data = Vec::new();
    let mut cursor = cursor;
    let batch = if meta.is_empty() { limit + 1 } else { MAX_PAGE };
    loop {
        let rows = match &cursor {
            Some((c, id)) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE organization_id = $1 AND (created_ms < $2 OR (created_ms = $2 AND id < $3)) \
                 ORDER BY created_ms DESC, id DESC LIMIT $4"
            )))
            .bind(&org.id)
            .bind(*c)
            .bind(id)
            .bind(batch),
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE organization_id = $1 ORDER BY created_ms DESC, id DESC LIMIT $2"
            )))
            .bind(&org.id)
            .bind(batch),
        }
        .fetch_all(state.db().pool())
        .await
        .map_err(ServerError::db("list jobs"))?;
        let n = rows.len();
        for row in &rows {
            let job = JobRow::from_row(row)?;
            cursor = Some((job.created_ms, job.id.clone()));
            let keep = meta
                .iter()
                .all(|(k, v)| job.metadata.as_ref().and_then(|m| m.get(k)).and_then(Value::as_str) == Some(v));
            if keep {
                data.push(job);
            }
            if data.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
                break;
            }
        }
        if data.len() > usize::try_from(limit).unwrap_or(usize::MAX) || i64::try_from(n).unwrap_or(0) < batch {
            break;
        }
    }
    let has_more = data.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(JobList {
        object: "list".into(),
        data: data.into_iter().map(|j| j.to_openai(Value::Null)).collect(),
        has_more,
    }))
}

/// What a control route asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Cancel,
    Pause,
    Resume,
}

async fn control(state: &AppState, org_id: &str, job: JobRow, what: Control) -> Result<FineTuningJob> {
    let db = state.db();
    let t = now();
    let conflict =
        |verb: &str| ServerError::Conflict(format!("job {} is {}; it cannot be {verb}", job.id, job.status.as_str()));
    match what {
        Control::Cancel => {
            if job.status.is_final() {
                return Err(conflict("cancelled"));
            }
            // Not on a worker: cancelled now. On a worker: it stops at the next step.
            let done = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = $1, updated_at = $1, requested = NULL \
                 WHERE id = $2 AND status IN ('validating_files', 'queued', 'paused') AND lease_owner IS NULL",
            )
            .bind(t)
            .bind(&job.id)
            .execute(db.pool())
            .await
            .map_err(ServerError::db("cancel job"))?
            .rows_affected();
            if done == 0 {
                request(db, &job.id, "cancel").await?;
            } else {
                add_event(db, &job.id, "s:cancelled", "info", "message", "Fine-tuning job cancelled", None, None)
                    .await?;
            }
        }
        Control::Pause => {
            if !matches!(job.status, JobStatus::ValidatingFiles | JobStatus::Queued | JobStatus::Running) {
                return Err(conflict("paused"));
            }
            let done = sqlx::query(
                "UPDATE jobs SET status = 'paused', updated_at = $1 \
                 WHERE id = $2 AND status IN ('validating_files', 'queued') AND lease_owner IS NULL",
            )
            .bind(t)
            .bind(&job.id)
            .execute(db.pool())
            .await
            .map_err(ServerError::db("pause job"))?
            .rows_affected();
            if done == 0 {
                request(db, &job.id, "pause").await?;
            } else {
                add_message(db, &job.id, "info", "Fine-tuning job paused before it started").await?;
            }
        }
        Control::Resume => {
            if job.status != JobStatus::Paused {
                return Err(conflict("resumed"));
            }
            sqlx::query(
                "UPDATE jobs SET status = 'queued', requested = NULL, updated_at = $1 WHERE id = $2 AND status = 'paused'",
            )
            .bind(t)
            .bind(&job.id)
            .execute(db.pool())
            .await
            .map_err(ServerError::db("resume job"))?;
            add_message(db, &job.id, "info", "Fine-tuning job resumed: queued to continue from its last checkpoint")
                .await?;
            state.wake_workers();
        }
    }
    let job = load(db, org_id, &job.id).await?;
    let extra = progress(db, &job).await?;
    Ok(job.to_openai(extra))
}

/// Asks the worker that holds a job to stop it (`cancel` or `pause`) at its next step.
async fn request(db: &Db, id: &str, what: &str) -> Result<()> {
    sqlx::query("UPDATE jobs SET requested = $1, updated_at = $2 WHERE id = $3")
        .bind(what)
        .bind(now())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("request"))?;
    Ok(())
}

/// Cancels a job: at once when no worker holds it, else within one training step.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{id}/cancel", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody),
              (status = 409, description = "The job has ended", body = crate::ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    Ok(Json(control(&state, &org.id, job, Control::Cancel).await?))
}

/// Pauses a job: its worker writes a checkpoint and stops (`paused`).
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{id}/pause", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody),
              (status = 409, description = "The job cannot be paused", body = crate::ErrorBody)))]
pub async fn pause_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    Ok(Json(control(&state, &org.id, job, Control::Pause).await?))
}

/// Resumes a paused job: `queued`, then on from its last checkpoint.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{id}/resume", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody),
              (status = 409, description = "The job is not paused", body = crate::ErrorBody)))]
pub async fn resume_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    Ok(Json(control(&state, &org.id, job, Control::Resume).await?))
}

fn event_from_row(row: &AnyRow) -> Result<(i64, JobEvent)> {
    let d = || ServerError::db("decode event");
    let data: Option<String> = row.try_get("data").map_err(d())?;
    Ok((
        row.try_get("seq").map_err(d())?,
        JobEvent {
            id: row.try_get("id").map_err(d())?,
            object: "fine_tuning.job.event".into(),
            created_at: row.try_get("created_at").map_err(d())?,
            level: row.try_get("level").map_err(d())?,
            message: row.try_get("message").map_err(d())?,
            kind: row.try_get("kind").map_err(d())?,
            data: data.and_then(|d| serde_json::from_str(&d).ok()),
        },
    ))
}

async fn event_seq(db: &Db, job_id: &str, event_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT seq FROM job_events WHERE id = $1 AND job_id = $2")
        .bind(event_id)
        .bind(job_id)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("find event"))?
        .ok_or_else(|| bad(format!("after {event_id:?}: no such event of this job"), "after"))?;
    row.try_get("seq").map_err(ServerError::db("decode event"))
}

const EVENT_COLUMNS: &str = "seq, id, created_at, level, message, kind, data";

/// Events after `seq`, oldest first (for streams).
async fn events_since(db: &Db, job_id: &str, seq: i64) -> Result<Vec<(i64, JobEvent)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT 500"
    )))
    .bind(job_id)
    .bind(seq)
    .fetch_all(db.pool())
    .await
    .map_err(ServerError::db("list events"))?;
    rows.iter().map(event_from_row).collect()
}

/// A job's events, newest first; with `stream=true`, server-sent events oldest first until
/// the job ends (each `data:` an event object; the stream ends with `data: [DONE]`).
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}/events", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id"), EventsQuery),
    responses((status = 200, description = "A page of events (or an event stream)", body = EventList),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response> {
    let job = load(state.db(), &org.id, &id).await?;
    let after = match &q.after {
        Some(a) => Some(event_seq(state.db(), &job.id, a).await?),
        None => None,
    };
    if q.stream == Some(true) {
        return Ok(stream_events(state, org.id, job.id, after.unwrap_or(0)).into_response());
    }
    let limit = q.limit.unwrap_or(DEFAULT_EVENT_LIMIT);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServerError::unprocessable(format!("limit {limit}: 1 to {MAX_PAGE}"), "limit"));
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
    )))
    .bind(&job.id)
    .bind(after.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list events"))?;
    let mut data: Vec<JobEvent> = rows.iter().map(|r| event_from_row(r).map(|(_, e)| e)).collect::<Result<_>>()?;
    let has_more = data.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(EventList { object: "list".into(), data, has_more }).into_response())
}

fn stream_events(state: AppState, org_id: String, job_id: String, from: i64) -> impl IntoResponse {
    struct S {
        state: AppState,
        org_id: String,
        job_id: String,
        seq: i64,
        queue: std::collections::VecDeque<SseEvent>,
        done: bool,
    }
    let start = S { state, org_id, job_id, seq: from, queue: std::collections::VecDeque::new(), done: false };
    let stream = futures::stream::unfold(start, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), s));
            }
            if s.done {
                return None;
            }
            // The status first: events written before a final status are all read below.
            let ended = s.state.is_closing()
                || match load(s.state.db(), &s.org_id, &s.job_id).await {
                    Ok(j) => j.status.is_final(),
                    Err(_) => true,
                };
            match events_since(s.state.db(), &s.job_id, s.seq).await {
                Ok(events) if !events.is_empty() => {
                    for (seq, e) in events {
                        s.seq = seq;
                        if let Ok(text) = serde_json::to_string(&e) {
                            s.queue.push_back(SseEvent::default().id(e.id.clone()).data(text));
                        }
                    }
                    continue;
                }
                Ok(_) if ended => {
                    s.done = true;
                    return Some((Ok(SseEvent::default().data("[DONE]")), s));
                }
                Ok(_) => tokio::time::sleep(SSE_POLL).await,
                Err(_) => {
                    s.done = true;
                    return Some((Ok(SseEvent::default().event("error").data("the event store failed")), s));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A job's checkpoints, newest first.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}/checkpoints", tag = "fine-tuning", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id"), PageQuery),
    responses((status = 200, description = "A page of checkpoints", body = CheckpointList),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<CheckpointList>> {
    let job = load(state.db(), &org.id, &id).await?;
    let limit = q.limit.unwrap_or(DEFAULT_CHECKPOINT_LIMIT);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServerError::unprocessable(format!("limit {limit}: 1 to {MAX_PAGE}"), "limit"));
    }
    let before = match &q.after {
        Some(a) => sqlx::query("SELECT step FROM job_checkpoints WHERE id = $1 AND job_id = $2")
            .bind(a)
            .bind(&job.id)
            .fetch_optional(state.db().pool())
            .await
            .map_err(ServerError::db("find checkpoint"))?
            .ok_or_else(|| bad(format!("after {a:?}: no such checkpoint of this job"), "after"))?
            .try_get::<i64, _>("step")
            .map_err(ServerError::db("decode checkpoint"))?,
        None => i64::MAX,
    };
    let rows = sqlx::query(
        "SELECT id, step, metrics, created_at FROM job_checkpoints WHERE job_id = $1 AND step < $2 \
         ORDER BY step DESC LIMIT $3",
    )
    .bind(&job.id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list checkpoints"))?;
    let org_name = org.name.clone();
    let model = job.fine_tuned_model.clone().unwrap_or_else(|| job.model_name(&org_name));
    let mut data = Vec::new();
    for row in &rows {
        let d = || ServerError::db("decode checkpoint");
        let step: i64 = row.try_get("step").map_err(d())?;
        let metrics: String = row.try_get("metrics").map_err(d())?;
        let metrics: docraft_core::train::CheckpointMetrics = serde_json::from_str(&metrics).unwrap_or_default();
        data.push(JobCheckpoint {
            id: row.try_get("id").map_err(d())?,
            object: "fine_tuning.job.checkpoint".into(),
            created_at: row.try_get("created_at").map_err(d())?,
            fine_tuned_model_checkpoint: format!("{model}:ckpt-step-{step}"),
            step_number: step,
            fine_tuning_job_id: job.id.clone(),
            metrics: CheckpointMetrics::from(&metrics),
        });
    }
    let has_more = data.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(CheckpointList {
        object: "list".into(),
        first_id: data.first().map(|c| c.id.clone()),
        last_id: data.last().map(|c| c.id.clone()),
        data,
        has_more,
    }))
}

// The users' spec's routes: the same handlers under `/fine_tuning/jobs`, a job named by its
// id or its output name.

/// Creates a job (the spec's route; same body as `POST /v1/fine_tuning/jobs`).
#[utoipa::path(post, path = "/fine_tuning/jobs", tag = "hub", security(("bearer" = [])),
    request_body = CreateJob,
    responses((status = 200, description = "The job", body = FineTuningJob)))]
pub async fn spec_create_job(state: State<AppState>, caller: Caller, body: Bytes) -> Result<Json<FineTuningJob>> {
    create_job(state, caller, body).await
}

/// The organization's jobs (the spec's route).
#[utoipa::path(get, path = "/fine_tuning/jobs", tag = "hub", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of jobs", body = JobList)))]
pub async fn spec_list_jobs(
    state: State<AppState>,
    caller: Caller,
    query: Query<Vec<(String, String)>>,
) -> Result<Json<JobList>> {
    list_jobs(state, caller, query).await
}

/// One job by id or output name (the spec's route).
#[utoipa::path(get, path = "/fine_tuning/jobs/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The job's id or output name")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn spec_get_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load_by_name(state.db(), &org.id, &name).await?;
    let extra = progress(state.db(), &job).await?;
    Ok(Json(job.to_openai(extra)))
}

/// Cancels a job by id or output name (the spec's `DELETE`).
#[utoipa::path(delete, path = "/fine_tuning/jobs/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The job's id or output name")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn spec_cancel_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load_by_name(state.db(), &org.id, &name).await?;
    Ok(Json(control(&state, &org.id, job, Control::Cancel).await?))
}

/// Pauses a job by id or output name (the spec's route).
#[utoipa::path(post, path = "/fine_tuning/jobs/{name}/pause", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The job's id or output name")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn spec_pause_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load_by_name(state.db(), &org.id, &name).await?;
    Ok(Json(control(&state, &org.id, job, Control::Pause).await?))
}

/// Resumes a job by id or output name (the spec's route).
#[utoipa::path(post, path = "/fine_tuning/jobs/{name}/resume", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The job's id or output name")),
    responses((status = 200, description = "The job", body = FineTuningJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn spec_resume_job(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<FineTuningJob>> {
    let job = load_by_name(state.db(), &org.id, &name).await?;
    Ok(Json(control(&state, &org.id, job, Control::Resume).await?))
}

/// The jobs' routes, the models' and the hub's.
#[must_use]
pub fn router() -> OpenApiRouter<AppState> {
    use crate::models;
    OpenApiRouter::new()
        .routes(routes!(create_job, list_jobs))
        .routes(routes!(retrieve_job))
        .routes(routes!(cancel_job))
        .routes(routes!(pause_job))
        .routes(routes!(resume_job))
        .routes(routes!(list_events))
        .routes(routes!(list_checkpoints))
        .routes(routes!(spec_create_job, spec_list_jobs))
        .routes(routes!(spec_get_job, spec_cancel_job))
        .routes(routes!(spec_pause_job))
        .routes(routes!(spec_resume_job))
        .routes(routes!(models::list_models))
        .routes(routes!(models::retrieve_model, models::delete_model))
        .routes(routes!(models::hub_list_models))
        .routes(routes!(models::hub_get_model, models::hub_delete_model))
        .routes(routes!(models::hub_list_adapters))
        .routes(routes!(models::hub_get_adapter, models::hub_delete_adapter))
        .routes(routes!(models::hub_download_adapter))
        .routes(routes!(models::hub_list_files))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn h(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openai_hyperparameters_map_onto_the_trainer() {
        let (s, r) = resolve_hyperparameters(
            &h(json!({"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 2, "lora_rank": 8})),
            7,
        )
        .unwrap();
        assert_eq!((s.epochs, s.batch_size, s.lora_rank, s.seed), (2, BatchSize::Auto, 8, 7));
        assert!((s.learning_rate - 2.0 * Settings::default().learning_rate).abs() < 1e-12);
        assert_eq!(r["batch_size"], json!("auto"));
        assert!((r["learning_rate_multiplier"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        let (d, _) = resolve_hyperparameters(&h(json!({"n_epochs": "auto"})), 42).unwrap();
        assert_eq!(d, Settings::default());
    }

    #[test]
    fn out_of_range_and_unknown_hyperparameters_name_the_field() {
        let e = resolve_hyperparameters(&h(json!({"lora_rank": 1000})), 1).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body().error.param.as_deref(), Some("hyperparameters.lora_rank"));
        let e = resolve_hyperparameters(&h(json!({"n_epochs": 50})), 1).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("hyperparameters.n_epochs"));
        let e = resolve_hyperparameters(&h(json!({"learning_rate_multiplier": 1000})), 1).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("hyperparameters.learning_rate_multiplier"));
        let e = resolve_hyperparameters(&h(json!({"lora_rnak": 8})), 1).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("lora_rnak"), "{e}");
        let e = resolve_hyperparameters(&h(json!({"lora_rank": "big"})), 1).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("hyperparameters.lora_rank"));
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"] {
            assert_eq!(JobStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(JobStatus::parse("pausing").is_none());
    }
}
