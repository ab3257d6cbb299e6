//! Dataset jobs: `/v1/datasets/jobs`. Documents in, fine-tuning files out: the pipeline's
//! question/answer generation (`kind: qa`) or RAFT builder (`kind: raft`) runs over a
//! collection's chunks with a local model of the registry or an OpenAI-compatible endpoint,
//! and writes its files into `/v1/files` (purpose `fine-tune`), ready for
//! `POST /v1/fine_tuning/jobs`. Rejected records are kept in a file of their own with the
//! reason of each.
//!
//! An endpoint off this machine is refused unless the organization's administrator allowed
//! it (`docraft admin org allow-remote`). The chunks sent to any OpenAI-compatible endpoint
//! are redacted first ([`docraft_core::redact`]: emails, phone numbers, IBANs, DNI/NIE, card
//! numbers); the job's events say what was replaced, by type and count, never the values.
//!
//! Jobs are durable rows leased by a worker like fine-tuning jobs; a killed server's job is
//! taken up again and generation continues after the last finished chunk.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use docraft_core::{CancelToken, Chunk};
use docraft_llm::{Backend, GeneratorSettings};
use docraft_pipeline::settings::{ExportSettings, QaSettings, RaftSettings};
use docraft_pipeline::stage::Ctx;
use docraft_pipeline::{Event, Level, Stage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::{mpsc, watch};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::db::{Db, now, now_ms};
use crate::ids::{is_id, new_id};
use crate::server::AppState;
use crate::{Result, ServerError};

/// The prefix of dataset job ids.
pub const PREFIX: &str = "dsjob-";
/// Most chunks one job may read.
pub const MAX_LIMIT: usize = 100_000;
/// Most questions asked per chunk.
pub const MAX_QUESTIONS_PER_CHUNK: usize = 10;
const COLUMNS: &str = "id, organization_id, collection_id, kind, request, status, error, counts, result_files, \
    rejected_file, created_at, started_at, finished_at, requested, lease_owner";

/// The body of `POST /v1/datasets/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatasetJob {
    /// The collection whose indexed documents are read.
    pub collection: String,
    /// `qa` (question/answer pairs) or `raft` (RAFT records: question, oracle and distractor
    /// documents, a reasoned answer quoting the oracle).
    pub kind: String,
    /// A local model of `GET /v1/models` (its name), or an OpenAI-compatible endpoint
    /// `{"base_url": "http://host:port/v1", "model": "name", "api_key_env": "VAR"}`.
    pub generator: Value,
    /// Questions asked per chunk (1-10; default 2).
    #[serde(default)]
    pub questions_per_chunk: Option<usize>,
    /// RAFT formats to write besides `chat` (any of `completion`, `hf`, `eval`).
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// RAFT splits, e.g. `train=0.8,valid=0.1,test=0.1` (default); qa: the validation share
    /// (e.g. `0.1`).
    #[serde(default)]
    pub split: Option<String>,
    /// Only the first N chunks.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Redact personal data before chunks go to an OpenAI-compatible endpoint (default true;
    /// `false` only for an endpoint on this machine).
    #[serde(default)]
    pub redact: Option<bool>,
}

/// A dataset job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetJob {
    /// `dsjob-…`
    pub id: String,
    /// Always `dataset.job`.
    pub object: String,
    /// The collection read.
    pub collection: String,
    /// `qa` or `raft`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// `accepted`, `rejected` (by reason), `chunks`, `redacted` (by type).
    pub counts: Value,
    /// The files written to `/v1/files` (purpose `fine-tune` for chat and completion formats).
    pub result_files: Vec<Value>,
    /// The rejected records with their reasons (`/v1/files`, purpose `user_data`).
    pub rejected_file: Option<String>,
    /// The request.
    pub request: Value,
    /// Unix seconds.
    pub created_at: i64,
    /// When it started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
}

fn from_row(row: &AnyRow) -> Result<(DatasetJob, String, Option<String>)> {
    let d = || ServerError::db("decode dataset job");
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
    let result_files: String = row.try_get("result_files").map_err(d())?;
    Ok((
        DatasetJob {
            id: row.try_get("id").map_err(d())?,
            object: "dataset.job".into(),
            collection: row.try_get("collection_id").map_err(d())?,
            kind: row.try_get("kind").map_err(d())?,
            status: row.try_get("status").map_err(d())?,
            error: row.try_get("error").map_err(d())?,
            counts: json(row.try_get("counts").map_err(d())?).unwrap_or_else(|| json!({})),
            result_files: serde_json::from_str(&result_files).unwrap_or_default(),
            rejected_file: row.try_get("rejected_file").map_err(d())?,
            request: json(row.try_get("request").map_err(d())?).unwrap_or(Value::Null),
            created_at: row.try_get("created_at").map_err(d())?,
            started_at: row.try_get("started_at").map_err(d())?,
            finished_at: row.try_get("finished_at").map_err(d())?,
        },
        row.try_get("organization_id").map_err(d())?,
        row.try_get("requested").map_err(d())?,
    ))
}

fn bad(message: impl Into<String>, param: &str) -> ServerError {
    ServerError::bad_request(message, Some(param), Some("invalid_value"))
}

async fn load(db: &Db, org_id: &str, id: &str) -> Result<DatasetJob> {
    let nf = || ServerError::NotFound { kind: "dataset job", id: id.to_string() };
    if !is_id(id, PREFIX) {
        return Err(nf());
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dataset_jobs WHERE id = $1 AND organization_id = $2"
    )))
    .bind(id)
    .bind(org_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find dataset job"))?
    .ok_or_else(nf)?;
    Ok(from_row(&row)?.0)
}

/// Whether `url`'s host is this machine.
fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The generator settings of a request, checked against what the organization may use.
async fn generator_of(state: &AppState, allow_remote: bool, g: &Value) -> Result<(GeneratorSettings, bool)> {
    let mut s = GeneratorSettings::default();
    match g {
        Value::String(name) => {
            let base = crate::models::find_base(state, name).await?.ok_or_else(|| {
                ServerError::bad_request(
                    format!("generator {name:?}: no such local model (GET /v1/models lists them)"),
                    Some("generator"),
                    Some("model_not_found"),
                )
            })?;
            s.backend = Backend::Llama;
            s.model = Some(base.path.display().to_string());
            Ok((s, false))
        }
        Value::Object(o) => {
            let url = o
                .get("base_url")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("generator.base_url: required", "generator.base_url"))?;
            let model = o
                .get("model")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("generator.model: required", "generator.model"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("generator.base_url: an http(s) URL", "generator.base_url"));
            }
            let local = is_loopback(url);
            if !local && !allow_remote {
                return Err(ServerError::Forbidden(format!(
                    "{url} is not on this machine; this organization may not send documents off it \
                     (an administrator can allow it with `docraft admin org allow-remote`)"
                )));
            }
            s.backend = Backend::Openai;
            s.base_url = Some(url.to_string());
            s.model = Some(model.to_string());
            s.allow_remote = !local;
            if let Some(env) = o.get("api_key_env").and_then(Value::as_str) {
                s.api_key_env = env.to_string();
            }
            Ok((s, local))
        }
        _ => Err(bad("generator: a local model name or {\"base_url\", \"model\"}", "generator")),
    }
}

/// Starts a dataset job.
#[utoipa::path(post, path = "/v1/datasets/jobs", tag = "datasets", security(("bearer" = [])),
    request_body = CreateDatasetJob,
    responses((status = 200, description = "The job", body = DatasetJob),
              (status = 400, description = "Unusable request", body = crate::ErrorBody),
              (status = 403, description = "A remote endpoint the organization may not use", body = crate::ErrorBody),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn create(State(state): State<AppState>, Caller(org): Caller, body: Bytes) -> Result<Json<DatasetJob>> {
    let req: CreateDatasetJob = serde_json::from_slice(&body).map_err(|e| {
        ServerError::bad_request(format!("invalid request: {e}"), e.to_string().split('`').nth(1), Some("invalid_json"))
    })?;
    crate::collections::collection_exists(state.db(), &org.id, &req.collection).await?;
    if req.kind != "qa" && req.kind != "raft" {
        return Err(bad(format!("kind {:?}: \"qa\" or \"raft\"", req.kind), "kind"));
    }
    let (_, local) = generator_of(&state, org.allow_remote, &req.generator).await?;
    if req.redact == Some(false) && req.generator.is_object() && !local {
        return Err(bad("redact: personal data is always redacted before it leaves this machine", "redact"));
    }
    if let Some(q) = req.questions_per_chunk
        && !(1..=MAX_QUESTIONS_PER_CHUNK).contains(&q)
    {
        return Err(ServerError::unprocessable(
            format!("questions_per_chunk: 1 to {MAX_QUESTIONS_PER_CHUNK}"),
            "questions_per_chunk",
        ));
    }
    if let Some(l) = req.limit
        && !(1..=MAX_LIMIT).contains(&l)
    {
        return Err(ServerError::unprocessable(format!("limit: 1 to {MAX_LIMIT}"), "limit"));
    }
    for f in req.formats.iter().flatten() {
        if !["chat", "completion", "hf", "eval"].contains(&f.as_str()) {
            return Err(bad(format!("formats: {f:?} is not one of chat, completion, hf, eval"), "formats"));
        }
    }
    // The settings must build now, not fail later in the worker.
    settings_of(&req, GeneratorSettings::default())?;
    let id = new_id(PREFIX)?;
    let t = now();
    sqlx::query(
        "INSERT INTO dataset_jobs (id, organization_id, collection_id, kind, request, status, created_at, created_ms, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $6)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(&req.collection)
    .bind(&req.kind)
    .bind(serde_json::to_string(&req).map_err(|e| ServerError::Internal(e.to_string()))?)
    .bind(t)
    .bind(now_ms())
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("insert dataset job"))?;
    add_event(state.db(), &id, "info", &format!("Created dataset job {id}"), None).await?;
    state.wake_workers();
    Ok(Json(load(state.db(), &org.id, &id).await?))
}

enum Settings {
    Qa(Box<QaSettings>, ExportSettings),
    Raft(Box<RaftSettings>),
}

fn settings_of(req: &CreateDatasetJob, generator: GeneratorSettings) -> Result<Settings> {
    let q = req.questions_per_chunk.unwrap_or(2);
    if req.kind == "qa" {
        let mut s = QaSettings { generator, questions_per_chunk: q, limit: req.limit, ..QaSettings::default() };
        s.enabled = true;
        let valid_fraction = match &req.split {
            Some(v) => v.parse::<f64>().ok().filter(|f| (0.0..0.9).contains(f)).ok_or_else(|| {
                bad(format!("split {v:?}: for qa, the validation share (0 to 0.9, e.g. 0.1)"), "split")
            })?,
            None => 0.0,
        };
        Ok(Settings::Qa(Box::new(s), ExportSettings { valid_fraction, ..ExportSettings::default() }))
    } else {
        let mut s = RaftSettings { generator, questions_per_chunk: q, limit: req.limit, ..RaftSettings::default() };
        if let Some(split) = &req.split {
            s.split.clone_from(split);
        }
        let mut formats = vec!["chat".to_string()];
        formats.extend(req.formats.iter().flatten().filter(|f| *f != "chat").cloned());
        s.format =
            docraft_raft::Format::ALL.iter().copied().filter(|f| formats.iter().any(|n| n == f.name())).collect();
        docraft_pipeline::stage::raft::options(&s).map_err(|e| bad(e.to_string(), "split"))?;
        Ok(Settings::Raft(Box::new(s)))
    }
}

/// The stable name a reason serializes to.
fn name_of<T: Serialize + std::fmt::Debug>(k: &T) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{k:?}"))
}

async fn add_event(db: &Db, job_id: &str, level: &str, message: &str, data: Option<&Value>) -> Result<()> {
    sqlx::query(
        "INSERT INTO dataset_events (id, job_id, created_at, level, message, data) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("dsevent-")?)
    .bind(job_id)
    .bind(now())
    .bind(level)
    .bind(message)
    .bind(data.map(Value::to_string))
    .execute(db.pool())
    .await
    .map_err(ServerError::db("insert dataset event"))?;
    Ok(())
}

/// Query of the lists.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items (default 20, at most 1000).
    pub limit: Option<i64>,
    /// `true` (events only): server-sent events until the job ends.
    pub stream: Option<bool>,
}

/// The organization's dataset jobs, newest first.
#[utoipa::path(get, path = "/v1/datasets/jobs", tag = "datasets", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "The jobs")))]
pub async fn list(
    State(state): State<AppState>,
    Caller(org): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dataset_jobs WHERE organization_id = $1 ORDER BY created_ms DESC, id DESC LIMIT $2"
    )))
    .bind(&org.id)
    .bind(limit)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list dataset jobs"))?;
    let data: Vec<DatasetJob> = rows.iter().map(|r| from_row(r).map(|x| x.0)).collect::<Result<_>>()?;
    Ok(Json(json!({"object": "list", "data": data})))
}

/// One dataset job.
#[utoipa::path(get, path = "/v1/datasets/jobs/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = DatasetJob),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetJob>> {
    Ok(Json(load(state.db(), &org.id, &id).await?))
}

/// Cancels a dataset job (a running one stops after its current chunk; what it wrote is
/// kept, and `resume` continues from there).
#[utoipa::path(post, path = "/v1/datasets/jobs/{id}/cancel", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = DatasetJob),
              (status = 404, description = "No such job", body = crate::ErrorBody),
              (status = 409, description = "The job has ended", body = crate::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    if ["succeeded", "failed", "cancelled"].contains(&job.status.as_str()) {
        return Err(ServerError::Conflict(format!("dataset job {id} is {}", job.status)));
    }
    let t = now();
    let n = sqlx::query(
        "UPDATE dataset_jobs SET status = 'cancelled', finished_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = 'queued' AND lease_owner IS NULL",
    )
    .bind(t)
    .bind(&id)
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("cancel dataset job"))?
    .rows_affected();
    if n == 0 {
        sqlx::query("UPDATE dataset_jobs SET requested = 'cancel', updated_at = $1 WHERE id = $2")
            .bind(t)
            .bind(&id)
            .execute(state.db().pool())
            .await
            .map_err(ServerError::db("cancel dataset job"))?;
    } else {
        add_event(state.db(), &id, "info", "Dataset job cancelled", None).await?;
    }
    Ok(Json(load(state.db(), &org.id, &id).await?))
}

/// Queues a cancelled or failed dataset job again: generation continues after the last
/// finished chunk.
#[utoipa::path(post, path = "/v1/datasets/jobs/{id}/resume", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = DatasetJob),
              (status = 404, description = "No such job", body = crate::ErrorBody),
              (status = 409, description = "The job is not cancelled or failed", body = crate::ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DatasetJob>> {
    let job = load(state.db(), &org.id, &id).await?;
    if job.status != "cancelled" && job.status != "failed" {
        return Err(ServerError::Conflict(format!(
            "dataset job {id} is {}; only a cancelled or failed job resumes",
            job.status
        )));
    }
    sqlx::query(
        "UPDATE dataset_jobs SET status = 'queued', error = NULL, finished_at = NULL, requested = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(now())
    .bind(&id)
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("resume dataset job"))?;
    add_event(state.db(), &id, "info", "Dataset job resumed", None).await?;
    state.wake_workers();
    Ok(Json(load(state.db(), &org.id, &id).await?))
}

fn event_json(row: &AnyRow) -> Result<(i64, Value)> {
    let d = || ServerError::db("decode dataset event");
    let data: Option<String> = row.try_get("data").map_err(d())?;
    Ok((
        row.try_get("seq").map_err(d())?,
        json!({
            "id": row.try_get::<String, _>("id").map_err(d())?,
            "object": "dataset.job.event",
            "created_at": row.try_get::<i64, _>("created_at").map_err(d())?,
            "level": row.try_get::<String, _>("level").map_err(d())?,
            "message": row.try_get::<String, _>("message").map_err(d())?,
            "data": data.and_then(|d| serde_json::from_str::<Value>(&d).ok()),
        }),
    ))
}

/// A dataset job's events, newest first; `stream=true`: server-sent events, oldest first,
/// until the job ends (then `data: [DONE]`).
#[utoipa::path(get, path = "/v1/datasets/jobs/{id}/events", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id"), ListQuery),
    responses((status = 200, description = "The events"),
              (status = 404, description = "No such job", body = crate::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    load(state.db(), &org.id, &id).await?;
    if q.stream == Some(true) {
        return Ok(stream(state, org.id, id).into_response());
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let rows = sqlx::query(
        "SELECT seq, id, created_at, level, message, data FROM dataset_events WHERE job_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(&id)
    .bind(limit)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list dataset events"))?;
    let data: Vec<Value> = rows.iter().map(|r| event_json(r).map(|x| x.1)).collect::<Result<_>>()?;
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

fn stream(state: AppState, org_id: String, id: String) -> impl IntoResponse {
    let start = (state, org_id, id, 0i64, std::collections::VecDeque::<SseEvent>::new(), false);
    let s = futures::stream::unfold(start, |(state, org_id, id, mut seq, mut queue, mut done)| async move {
        loop {
            if let Some(e) = queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), (state, org_id, id, seq, queue, done)));
            }
            if done {
                return None;
            }
            let ended = state.is_closing()
                || load(state.db(), &org_id, &id)
                    .await
                    .map_or(true, |j| ["succeeded", "failed", "cancelled"].contains(&j.status.as_str()));
            let rows = sqlx::query(
                "SELECT seq, id, created_at, level, message, data FROM dataset_events WHERE job_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT 500",
            )
            .bind(&id)
            .bind(seq)
            .fetch_all(state.db().pool())
            .await;
            match rows {
                Ok(rows) if !rows.is_empty() => {
                    for r in &rows {
                        if let Ok((s, v)) = event_json(r) {
                            seq = s;
                            queue.push_back(SseEvent::default().data(v.to_string()));
                        }
                    }
                }
                Ok(_) if ended => {
                    done = true;
                    queue.push_back(SseEvent::default().data("[DONE]"));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(_) => {
                    done = true;
                    queue.push_back(SseEvent::default().event("error").data("the event store failed"));
                }
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

// The worker.

async fn claim(db: &Db, owner: &str, lease: i64) -> Result<Option<(DatasetJob, String, Option<String>)>> {
    let t = now();
    let claimable = "status IN ('queued', 'running') AND (lease_expires_at IS NULL OR lease_expires_at < $3)";
    let set = "lease_owner = $1, lease_expires_at = $2, updated_at = $3";
    let n = sqlx::query(sqlx::AssertSqlSafe(db.claim_sql("dataset_jobs", set, claimable, "created_ms, id")))
        .bind(owner)
        .bind(t + lease)
        .bind(t)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("claim dataset job"))?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dataset_jobs WHERE lease_owner = $1")))
        .bind(owner)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("claimed dataset job"))?;
    row.as_ref().map(from_row).transpose()
}

async fn settle(db: &Db, id: &str, owner: &str, status: &str, error: Option<&str>) -> Result<()> {
    let t = now();
    let finished = (status != "queued").then_some(t);
    sqlx::query(
        "UPDATE dataset_jobs SET status = $1, error = $2, finished_at = $3, requested = NULL, lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = $4 WHERE id = $5 AND lease_owner = $6",
    )
    .bind(status)
    .bind(error)
    .bind(finished)
    .bind(t)
    .bind(id)
    .bind(owner)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("settle dataset job"))?;
    Ok(())
}

/// One dataset worker: claims queued dataset jobs and runs them until `stop` says so.
pub(crate) async fn worker(state: AppState, index: usize, mut stop: watch::Receiver<bool>) {
    let lease = i64::try_from(state.config().lease.as_secs().max(1)).unwrap_or(30);
    loop {
        if *stop.borrow() {
            return;
        }
        let owner = match new_id("") {
            Ok(r) => format!("ds{index}-{}-{r}", std::process::id()),
            Err(_) => return,
        };
        match claim(state.db(), &owner, lease).await {
            Ok(Some((job, org_id, requested))) => {
                let id = job.id.clone();
                if requested.as_deref() == Some("cancel") {
                    let _ = add_event(state.db(), &id, "info", "Dataset job cancelled", None).await;
                    let _ = settle(state.db(), &id, &owner, "cancelled", None).await;
                    continue;
                }
                if let Err(e) = run(&state, &job, &org_id, &owner, &stop).await {
                    tracing::error!(job = %id, error = %e, "dataset job failed");
                    let msg = e.to_string();
                    let _ = add_event(state.db(), &id, "error", &format!("Dataset job failed: {msg}"), None).await;
                    let _ = settle(state.db(), &id, &owner, "failed", Some(&msg)).await;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "claiming a dataset job failed"),
        }
        tokio::select! {
            () = state.workers_notified() => {}
            () = tokio::time::sleep(state.config().poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The chunks of the collection's indexed documents, redacted when asked; with the
/// replacement counts by type.
async fn collect_chunks(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    redact: bool,
) -> Result<(Vec<Chunk>, BTreeMap<String, usize>)> {
    let rows = sqlx::query(
        "SELECT id FROM documents WHERE collection_id = $1 AND organization_id = $2 AND status = 'indexed' ORDER BY created_at, id",
    )
    .bind(collection_id)
    .bind(org_id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("documents"))?;
    let dir = state.org_dir(org_id).join("collections").join(collection_id).join("docs");
    let mut chunks = Vec::new();
    for r in &rows {
        let id: String = r.try_get("id").map_err(ServerError::db("documents"))?;
        let path = dir.join(format!("{id}.chunks.json"));
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| ServerError::io(&path, e))?;
        let mut c: Vec<Chunk> =
            serde_json::from_str(&text).map_err(|e| ServerError::Internal(format!("{id} chunks: {e}")))?;
        chunks.append(&mut c);
    }
    let mut counts = BTreeMap::new();
    if redact {
        let redactor = docraft_core::redact::Redactor::new();
        for c in &mut chunks {
            let r = redactor.redact(&c.text);
            for (kind, n) in &r.counts {
                *counts.entry(kind.as_str().to_string()).or_insert(0) += n;
            }
            c.text = r.text;
        }
    }
    Ok((chunks, counts))
}

enum Msg {
    Event(Level, String),
    /// done, total, unit, message
    Progress(u64, u64, String, String),
}

#[allow(clippy::too_many_lines)]
async fn run(
    state: &AppState,
    job: &DatasetJob,
    org_id: &str,
    owner: &str,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    let db = state.db().clone();
    let req: CreateDatasetJob =
        serde_json::from_value(job.request.clone()).map_err(|e| ServerError::Internal(format!("job request: {e}")))?;
    let allow_remote = sqlx::query("SELECT allow_remote FROM organizations WHERE id = $1")
        .bind(org_id)
        .fetch_one(db.pool())
        .await
        .map_err(ServerError::db("organization"))?
        .try_get::<i64, _>("allow_remote")
        .map_err(ServerError::db("organization"))?
        != 0;
    let (generator, _) = generator_of(state, allow_remote, &req.generator).await?;
    let endpoint = generator.backend == Backend::Openai;
    let redact = endpoint && req.redact.unwrap_or(true);
    let t = now();
    sqlx::query("UPDATE dataset_jobs SET status = 'running', started_at = COALESCE(started_at, $1), updated_at = $1 WHERE id = $2")
        .bind(t)
        .bind(&job.id)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("start dataset job"))?;
    let (chunks, redacted) = collect_chunks(state, org_id, &job.collection, redact).await?;
    if chunks.is_empty() {
        return Err(ServerError::bad_request("the collection has no indexed document", Some("collection"), None));
    }
    add_event(&db, &job.id, "info", &format!("Reading {} chunks of collection {}", chunks.len(), job.collection), None)
        .await?;
    if redact {
        let summary = if redacted.is_empty() {
            "nothing".to_string()
        } else {
            redacted.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
        };
        add_event(
            &db,
            &job.id,
            "info",
            &format!("Personal data redacted before sending to the endpoint: {summary}"),
            Some(&json!({"redacted": redacted})),
        )
        .await?;
    }
    let run_dir = state.org_dir(org_id).join("datasets").join(&job.id);
    tokio::fs::create_dir_all(&run_dir).await.map_err(|e| ServerError::io(&run_dir, e))?;
    let chunks_path = run_dir.join("chunks.jsonl");
    let mut text = String::new();
    for c in &chunks {
        text += &serde_json::to_string(c).map_err(|e| ServerError::Internal(e.to_string()))?;
        text.push('\n');
    }
    tokio::fs::write(&chunks_path, text).await.map_err(|e| ServerError::io(&chunks_path, e))?;
    let settings = settings_of(&req, generator)?;
    let index = crate::collections::index_location(state, org_id, &job.collection).await?;

    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let cancel = CancelToken::new();
    let handle = {
        let (cancel, run_dir) = (cancel.clone(), run_dir.clone());
        tokio::task::spawn_blocking(move || -> std::result::Result<Outcome, String> {
            let sink = |e: &Event| match e {
                Event::Message { level, text, .. } => {
                    let _ = tx.send(Msg::Event(*level, text.clone()));
                }
                Event::Progress { done, total, unit, message, .. } => {
                    let _ = tx.send(Msg::Progress(*done, *total, unit.clone(), message.clone()));
                }
                _ => {}
            };
            generate(&settings, &chunks_path, index.as_deref(), &run_dir, &Ctx::new(Stage::Qa, &sink, cancel))
        })
    };
    tokio::pin!(handle);
    let mut stop = stop.clone();
    let mut tick = tokio::time::interval(state.config().heartbeat);
    let mut last_progress = std::time::Instant::now() - Duration::from_secs(10);
    let mut why: Option<&str> = None;
    let outcome = loop {
        tokio::select! {
            r = &mut handle => break r,
            Some(msg) = rx.recv() => {
                store_msg(&db, &job.id, msg, &mut last_progress).await?;
            }
            _ = stop.changed() => {
                if *stop.borrow() && why.is_none() {
                    why = Some("shutdown");
                    cancel.cancel();
                }
            }
            _ = tick.tick() => {
                let t = now();
                let held = sqlx::query("UPDATE dataset_jobs SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4")
                    .bind(t + i64::try_from(state.config().lease.as_secs().max(1)).unwrap_or(30))
                    .bind(t)
                    .bind(&job.id)
                    .bind(owner)
                    .execute(db.pool())
                    .await
                    .map(|r| r.rows_affected())
                    .unwrap_or(0);
                let requested: Option<String> = sqlx::query("SELECT requested FROM dataset_jobs WHERE id = $1")
                    .bind(&job.id)
                    .fetch_one(db.pool())
                    .await
                    .ok()
                    .and_then(|r| r.try_get("requested").ok());
                if why.is_none() && (held == 0 || requested.as_deref() == Some("cancel")) {
                    why = Some(if held == 0 { "lost" } else { "cancel" });
                    cancel.cancel();
                }
            }
        }
    };
    while let Ok(msg) = rx.try_recv() {
        store_msg(&db, &job.id, msg, &mut last_progress).await?;
    }
    match outcome.map_err(|e| ServerError::Internal(e.to_string()))? {
        Err(e) if why.is_some() || e.contains("cancelled") => match why {
            Some("lost") => Ok(()),
            Some("shutdown") => {
                add_event(
                    &db,
                    &job.id,
                    "info",
                    "The server stopped; the job continues after the last finished chunk",
                    None,
                )
                .await?;
                settle(&db, &job.id, owner, "queued", None).await
            }
            _ => {
                add_event(
                    &db,
                    &job.id,
                    "info",
                    "Dataset job cancelled; resume continues after the last finished chunk",
                    None,
                )
                .await?;
                settle(&db, &job.id, owner, "cancelled", None).await
            }
        },
        Err(e) => Err(ServerError::Internal(scrub(&e, &state.org_dir(org_id)))),
        Ok(out) => finish(state, job, org_id, owner, out, &redacted).await,
    }
}

/// Stores a message of the generation as an event; progress at most once a second (and the
/// last one of a phase).
async fn store_msg(db: &Db, job_id: &str, msg: Msg, last_progress: &mut std::time::Instant) -> Result<()> {
    match msg {
        Msg::Event(level, text) => {
            let level = if level == Level::Warn { "warn" } else { "info" };
            add_event(db, job_id, level, &text, None).await
        }
        Msg::Progress(done, total, unit, message) => {
            if last_progress.elapsed() >= Duration::from_secs(1) || done == total {
                *last_progress = std::time::Instant::now();
                let text = if message.is_empty() {
                    format!("{done}/{total} {unit}")
                } else {
                    format!("{done}/{total} {unit}: {message}")
                };
                add_event(db, job_id, "info", &text, Some(&json!({"done": done, "total": total, "unit": unit})))
                    .await?;
            }
            Ok(())
        }
    }
}

fn scrub(text: &str, org_dir: &Path) -> String {
    text.replace(&format!("{}/", org_dir.display()), "")
}

/// What a finished generation left.
struct Outcome {
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    /// (path, split, format, records)
    files: Vec<(PathBuf, String, String, usize)>,
    rejected_path: PathBuf,
}

fn generate(
    settings: &Settings,
    chunks: &Path,
    index: Option<&Path>,
    run_dir: &Path,
    ctx: &Ctx,
) -> std::result::Result<Outcome, String> {
    match settings {
        Settings::Qa(s, export) => {
            let output = run_dir.join("qa.jsonl");
            let paths = docraft_pipeline::stage::qa::QaPaths {
                chunks: chunks.to_path_buf(),
                output: output.clone(),
                local_model: None,
                embedder: None,
            };
            let o = docraft_pipeline::stage::qa::generate(s, &paths, false, ctx).map_err(|e| e.to_string())?;
            let summary = o.summary.ok_or("no summary")?;
            if summary.stopped.as_deref() == Some("cancelled") {
                return Err("cancelled".into());
            }
            let train = run_dir.join("train.jsonl");
            let r = docraft_pipeline::stage::qa::export_pairs(export, &output, &train).map_err(|e| e.to_string())?;
            let mut files = vec![(r.train_path.clone(), "train".to_string(), "chat".to_string(), r.train)];
            if let Some(v) = r.valid_path {
                files.push((v, "valid".into(), "chat".into(), r.valid));
            }
            Ok(Outcome {
                accepted: summary.accepted,
                rejected: summary.rejected.iter().map(|(k, v)| (name_of(k), *v)).collect(),
                files,
                rejected_path: docraft_qa_gen::RunFiles::new(&output).rejected,
            })
        }
        Settings::Raft(s) => {
            let output = run_dir.join("raft.jsonl");
            let paths = docraft_pipeline::stage::raft::RaftPaths {
                chunks: chunks.to_path_buf(),
                index: index.map(Path::to_path_buf),
                search: docraft_pipeline::settings::RetrievalSettings::default(),
                output: output.clone(),
                local_model: None,
            };
            let o = docraft_pipeline::stage::raft::run(s, &paths, ctx).map_err(|e| e.to_string())?;
            Ok(Outcome {
                accepted: o.records.accepted as u64,
                rejected: o.records.rejected.iter().map(|(k, v)| (name_of(k), *v as u64)).collect(),
                files: o
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.split.clone(), f.format.name().to_string(), f.records))
                    .collect(),
                rejected_path: docraft_raft::RaftFiles::new(&output).rejected,
            })
        }
    }
}

/// Registers the outputs as files of the organization and ends the job.
async fn finish(
    state: &AppState,
    job: &DatasetJob,
    org_id: &str,
    owner: &str,
    out: Outcome,
    redacted: &BTreeMap<String, usize>,
) -> Result<()> {
    let db = state.db();
    let files_dir = state.org_dir(org_id).join("files");
    tokio::fs::create_dir_all(&files_dir).await.map_err(|e| ServerError::io(&files_dir, e))?;
    let mut result = Vec::new();
    let register = |src: PathBuf, name: String, purpose: &'static str| {
        let files_dir = files_dir.clone();
        async move {
            let id = new_id("file-")?;
            let dest = files_dir.join(&id);
            tokio::fs::copy(&src, &dest).await.map_err(|e| ServerError::io(&src, e))?;
            let bytes = tokio::fs::metadata(&dest).await.map_err(|e| ServerError::io(&dest, e))?.len();
            sqlx::query(
                "INSERT INTO files (id, organization_id, bytes, created_at, filename, purpose, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'processed')",
            )
            .bind(&id)
            .bind(org_id)
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .bind(now())
            .bind(&name)
            .bind(purpose)
            .execute(db.pool())
            .await
            .map_err(ServerError::db("insert file"))?;
            Ok::<String, ServerError>(id)
        }
    };
    for (path, split, format, records) in out.files {
        if records == 0 {
            continue;
        }
        let purpose = if format == "chat" || format == "completion" { "fine-tune" } else { "user_data" };
        let name = format!("{}.{split}.{format}.jsonl", job.id);
        let id = register(path, name.clone(), purpose).await?;
        result.push(json!({"id": id, "filename": name, "split": split, "format": format, "records": records, "purpose": purpose}));
    }
    let rejected_file = if out.rejected_path.exists() {
        Some(register(out.rejected_path, format!("{}.rejected.jsonl", job.id), "user_data").await?)
    } else {
        None
    };
    let counts = json!({"accepted": out.accepted, "rejected": out.rejected, "redacted": redacted});
    sqlx::query(
        "UPDATE dataset_jobs SET counts = $1, result_files = $2, rejected_file = $3 WHERE id = $4 AND lease_owner = $5",
    )
    .bind(counts.to_string())
    .bind(Value::Array(result.clone()).to_string())
    .bind(rejected_file)
    .bind(&job.id)
    .bind(owner)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("dataset results"))?;
    let rejected: u64 = out.rejected.values().sum();
    let msg = format!(
        "Dataset job succeeded: {} records kept, {rejected} rejected, {} files written",
        out.accepted,
        result.len()
    );
    add_event(db, &job.id, "info", &msg, Some(&counts)).await?;
    settle(db, &job.id, owner, "succeeded", None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:8080/v1"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(is_loopback("http://[::1]:9000/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
        assert!(!is_loopback("http://10.0.0.5:8000/v1"));
        assert!(!is_loopback("http://127.0.0.1.evil.com/v1"));
    }
}
