//! Models: `/v1/models` as OpenAI defines it, and the hub (`/hub/models`, `/hub/adapters`).
//!
//! Base models every organization can train on come from two places: the registry's GGUFs that
//! `scripts/setup.sh` fetched (`MODELS/<name>/<file>.gguf`, listed as `<name>`) and those an
//! administrator added with `docraft admin model add NAME PATH` (rows with no organization).
//! Fine-tuned models are rows of one organization, written when a job succeeds; their adapter
//! lives under `DATA/orgs/<org-id>/jobs/<job-id>/run/adapter`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::db::{Db, now};
use crate::server::AppState;
use crate::{Result, ServerError};

/// Longest model name.
pub const MAX_MODEL_NAME_CHARS: usize = 128;
const COLUMNS: &str =
    "id, organization_id, name, kind, origin, path, base_model, job_id, training_file, parameters, created_at";

/// Whether a model is a base or a fine-tuned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ModelKind {
    /// A model to train on.
    #[serde(rename = "base")]
    Base,
    /// The result of a job: a base model plus a LoRA adapter.
    #[serde(rename = "fine-tuned")]
    FineTuned,
}

impl ModelKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::FineTuned => "fine-tuned",
        }
    }
}

/// A model this server knows: one row of the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The id `/v1/models` lists (`ft:…` for fine-tuned models).
    pub id: String,
    /// The owning organization (`None`: a base model every organization sees).
    pub organization_id: Option<String>,
    /// The short name (`--output-model` of a job, the name given to `admin model add`).
    pub name: String,
    /// Base or fine-tuned.
    pub kind: ModelKind,
    /// Where the weights are: a base model's file or directory (absolute); a fine-tuned
    /// model's adapter directory, relative to the organization's directory.
    pub path: PathBuf,
    /// The base model of a fine-tuned one.
    pub base_model: Option<String>,
    /// The job that made it.
    pub job_id: Option<String>,
    /// The training file of that job.
    pub training_file: Option<String>,
    /// The job's hyperparameters and, with a validation file, its evaluation.
    pub parameters: Option<Value>,
    /// Unix seconds.
    pub created_at: i64,
}

impl ModelEntry {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode model");
        let kind: String = row.try_get("kind").map_err(d())?;
        let parameters: Option<String> = row.try_get("parameters").map_err(d())?;
        Ok(Self {
            id: row.try_get("id").map_err(d())?,
            organization_id: row.try_get("organization_id").map_err(d())?,
            name: row.try_get("name").map_err(d())?,
            kind: if kind == "base" { ModelKind::Base } else { ModelKind::FineTuned },
            path: PathBuf::from(row.try_get::<String, _>("path").map_err(d())?),
            base_model: row.try_get("base_model").map_err(d())?,
            job_id: row.try_get("job_id").map_err(d())?,
            training_file: row.try_get("training_file").map_err(d())?,
            parameters: parameters.and_then(|p| serde_json::from_str(&p).ok()),
            created_at: row.try_get("created_at").map_err(d())?,
        })
    }

    /// OpenAI's model object.
    #[must_use]
    pub fn to_openai(&self, org_name: &str) -> ModelObject {
        ModelObject {
            id: self.id.clone(),
            object: "model".into(),
            created: self.created_at,
            owned_by: if self.kind == ModelKind::Base { "docraft".into() } else { org_name.to_string() },
        }
    }

    /// The hub's model object.
    #[must_use]
    pub fn to_hub(&self) -> HubModel {
        HubModel {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind,
            origin: "local".into(),
            base_model: self.base_model.clone(),
            created_at: self.created_at,
            evaluation: self.parameters.as_ref().and_then(|p| p.get("evaluation")).cloned(),
        }
    }

    /// The hub's adapter object (fine-tuned models only).
    #[must_use]
    pub fn to_adapter(&self) -> HubAdapter {
        HubAdapter {
            id: self.id.clone(),
            name: self.name.clone(),
            model_id: self.base_model.clone().unwrap_or_default(),
            dataset: self.training_file.clone().unwrap_or_default(),
            created_at: self.created_at,
            parameters: self.parameters.clone().unwrap_or(Value::Null),
        }
    }
}

/// A model, as OpenAI describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    /// The id to pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// `docraft` for base models, the organization's name for its fine-tuned ones.
    pub owned_by: String,
}

/// A list of models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList<T> {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<T>,
}

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedModel {
    /// The model's id.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Always `true`.
    pub deleted: bool,
}

/// A model of the hub (the users' spec: `{id, name, type, origin, created_at}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HubModel {
    /// The id `/v1/models` lists.
    pub id: String,
    /// The short name.
    pub name: String,
    /// `base` or `fine-tuned`.
    #[serde(rename = "type")]
    pub kind: ModelKind,
    /// `local` (every model this server trains or serves is on this machine).
    pub origin: String,
    /// The base model of a fine-tuned one.
    pub base_model: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// With a validation file: loss and token accuracy of the base model and of the adapter.
    pub evaluation: Option<Value>,
}

/// An adapter of the hub (the users' spec: `{id, model_id, dataset, created_at, parameters}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HubAdapter {
    /// The fine-tuned model's id.
    pub id: String,
    /// Its short name.
    pub name: String,
    /// The base model it adapts.
    pub model_id: String,
    /// The training file (`file-…`).
    pub dataset: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The job's hyperparameters (and evaluation).
    pub parameters: Value,
}

/// The registry's base models: each `DIR/<name>/` holding exactly one `.gguf` file.
#[must_use]
pub fn registry_models(dir: &Path) -> Vec<ModelEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let Ok(files) = std::fs::read_dir(&path) else { continue };
        let ggufs: Vec<PathBuf> = files
            .flatten()
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
            .collect();
        if let [gguf] = ggufs.as_slice() {
            let created_at = std::fs::metadata(gguf)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            out.push(ModelEntry {
                id: name.clone(),
                organization_id: None,
                name,
                kind: ModelKind::Base,
                path: gguf.clone(),
                base_model: None,
                job_id: None,
                training_file: None,
                parameters: None,
                created_at,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Every base model: the registry's and the added ones (an added one shadows a registry one
/// of the same id).
///
/// # Errors
/// [`ServerError::Database`].
pub async fn base_models(state: &AppState) -> Result<Vec<ModelEntry>> {
    let dir = state.config().models_dir();
    let mut out = tokio::task::spawn_blocking(move || registry_models(&dir))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM models WHERE organization_id IS NULL ORDER BY created_at, id"
    )))
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list base models"))?;
    for row in &rows {
        let added = ModelEntry::from_row(row)?;
        out.retain(|m| m.id != added.id);
        out.push(added);
    }
    Ok(out)
}

/// The base model `id` (or name), if this server has it.
///
/// # Errors
/// [`ServerError::Database`].
pub async fn find_base(state: &AppState, id: &str) -> Result<Option<ModelEntry>> {
    Ok(base_models(state).await?.into_iter().find(|m| m.id == id || m.name == id))
}

/// The fine-tuned models of an organization, newest first.
///
/// # Errors
/// [`ServerError::Database`].
pub async fn org_models(db: &Db, org_id: &str) -> Result<Vec<ModelEntry>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM models WHERE organization_id = $1 ORDER BY created_at DESC, id DESC"
    )))
    .bind(org_id)
    .fetch_all(db.pool())
    .await
    .map_err(ServerError::db("list models"))?;
    rows.iter().map(ModelEntry::from_row).collect()
}

/// Every model an organization sees: the base models, then its own.
async fn visible(state: &AppState, org_id: &str) -> Result<Vec<ModelEntry>> {
    let mut out = base_models(state).await?;
    out.extend(org_models(state.db(), org_id).await?);
    Ok(out)
}

/// The model an organization sees under `id_or_name`: an exact id first, then the newest of
/// that name (its own before a base model's).
async fn find_visible(state: &AppState, org_id: &str, id_or_name: &str) -> Result<ModelEntry> {
    let all = visible(state, org_id).await?;
    let own_first = all.iter().rev();
    all.iter()
        .find(|m| m.id == id_or_name)
        .or_else(|| own_first.clone().find(|m| m.name == id_or_name))
        .cloned()
        .ok_or_else(|| ServerError::NotFound { kind: "model", id: id_or_name.to_string() })
}

/// Adds a base model every organization can train on (`docraft admin model add`).
///
/// # Errors
/// [`ServerError::BadRequest`] for an unusable name or a path that is neither a `.gguf` file
/// nor a directory with `config.json`; [`ServerError::Conflict`] when the name is taken.
pub async fn add_base_model(db: &Db, name: &str, path: &Path) -> Result<ModelEntry> {
    let ok_name = !name.is_empty()
        && name.chars().count() <= MAX_MODEL_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with("ft:");
    if !ok_name {
        return Err(ServerError::bad_request(
            format!("model name {name:?}: 1 to {MAX_MODEL_NAME_CHARS} ASCII letters, digits, '-', '_' or '.'"),
            Some("name"),
            Some("invalid_name"),
        ));
    }
    let path = std::path::absolute(path).map_err(|e| ServerError::io(path, e))?;
    let usable = (path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
        || (path.is_dir() && path.join("config.json").is_file());
    if !usable {
        return Err(ServerError::bad_request(
            format!("{}: not a .gguf file nor a model directory with config.json", path.display()),
            Some("path"),
            Some("invalid_model"),
        ));
    }
    let entry = ModelEntry {
        id: name.to_string(),
        organization_id: None,
        name: name.to_string(),
        kind: ModelKind::Base,
        path: path.clone(),
        base_model: None,
        job_id: None,
        training_file: None,
        parameters: None,
        created_at: now(),
    };
    let taken = sqlx::query("SELECT id FROM models WHERE id = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("find model"))?;
    if taken.is_some() {
        return Err(ServerError::Conflict(format!("a model named {name:?} exists")));
    }
    insert(db, &entry).await?;
    Ok(entry)
}

/// Stores a model row (idempotent: a row of the same id is kept).
///
/// # Errors
/// [`ServerError::Database`].
pub async fn insert(db: &Db, m: &ModelEntry) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO models ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO NOTHING"
    )))
    .bind(&m.id)
    .bind(m.organization_id.as_deref())
    .bind(&m.name)
    .bind(m.kind.as_str())
    .bind("local")
    .bind(m.path.to_string_lossy().into_owned())
    .bind(m.base_model.as_deref())
    .bind(m.job_id.as_deref())
    .bind(m.training_file.as_deref())
    .bind(m.parameters.as_ref().map(Value::to_string))
    .bind(m.created_at)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("insert model"))?;
    Ok(())
}

/// Deletes one of the caller's fine-tuned models and its adapter files.
async fn delete_own(state: &AppState, org_id: &str, id_or_name: &str) -> Result<ModelEntry> {
    let m = find_visible(state, org_id, id_or_name).await?;
    if m.organization_id.as_deref() != Some(org_id) {
        return Err(ServerError::Forbidden(format!("{} is a base model of this server; it cannot be deleted", m.id)));
    }
    sqlx::query("DELETE FROM models WHERE id = $1 AND organization_id = $2")
        .bind(&m.id)
        .bind(org_id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete model"))?;
    let dir = state.org_dir(org_id).join(&m.path);
    if plain_relative(&m.path) {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    Ok(m)
}

/// The models the caller can use: the base models and its organization's fine-tuned ones.
#[utoipa::path(get, path = "/v1/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, description = "The models", body = ModelList<ModelObject>)))]
pub async fn list_models(State(state): State<AppState>, Caller(org): Caller) -> Result<Json<ModelList<ModelObject>>> {
    let data = visible(&state, &org.id).await?.iter().map(|m| m.to_openai(&org.name)).collect();
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// One model.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "models", security(("bearer" = [])),
    params(("model" = String, Path, description = "The model's id")),
    responses((status = 200, description = "The model", body = ModelObject),
              (status = 404, description = "No such model", body = crate::ErrorBody)))]
pub async fn retrieve_model(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(model): UrlPath<String>,
) -> Result<Json<ModelObject>> {
    Ok(Json(find_visible(&state, &org.id, &model).await?.to_openai(&org.name)))
}

/// Deletes one of the organization's fine-tuned models (base models answer 403).
#[utoipa::path(delete, path = "/v1/models/{model}", tag = "models", security(("bearer" = [])),
    params(("model" = String, Path, description = "The model's id")),
    responses((status = 200, description = "Deleted", body = DeletedModel),
              (status = 403, description = "A base model", body = crate::ErrorBody),
              (status = 404, description = "No such model", body = crate::ErrorBody)))]
pub async fn delete_model(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(model): UrlPath<String>,
) -> Result<Json<DeletedModel>> {
    let m = delete_own(&state, &org.id, &model).await?;
    Ok(Json(DeletedModel { id: m.id, object: "model".into(), deleted: true }))
}

/// The hub's models: base and fine-tuned.
#[utoipa::path(get, path = "/hub/models", tag = "hub", security(("bearer" = [])),
    responses((status = 200, description = "The models", body = ModelList<HubModel>)))]
pub async fn hub_list_models(State(state): State<AppState>, Caller(org): Caller) -> Result<Json<ModelList<HubModel>>> {
    let data = visible(&state, &org.id).await?.iter().map(ModelEntry::to_hub).collect();
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// One model of the hub, by id or name.
#[utoipa::path(get, path = "/hub/models/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The model's id or name")),
    responses((status = 200, description = "The model", body = HubModel),
              (status = 404, description = "No such model", body = crate::ErrorBody)))]
pub async fn hub_get_model(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<HubModel>> {
    Ok(Json(find_visible(&state, &org.id, &name).await?.to_hub()))
}

/// Deletes one of the organization's fine-tuned models, by id or name.
#[utoipa::path(delete, path = "/hub/models/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The model's id or name")),
    responses((status = 200, description = "Deleted", body = DeletedModel),
              (status = 403, description = "A base model", body = crate::ErrorBody),
              (status = 404, description = "No such model", body = crate::ErrorBody)))]
pub async fn hub_delete_model(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<DeletedModel>> {
    let m = delete_own(&state, &org.id, &name).await?;
    Ok(Json(DeletedModel { id: m.id, object: "model".into(), deleted: true }))
}

async fn find_adapter(state: &AppState, org_id: &str, name: &str) -> Result<ModelEntry> {
    let all = org_models(state.db(), org_id).await?;
    all.iter()
        .find(|m| m.id == name)
        .or_else(|| all.iter().find(|m| m.name == name))
        .cloned()
        .ok_or_else(|| ServerError::NotFound { kind: "adapter", id: name.to_string() })
}

/// The organization's adapters (one per fine-tuned model).
#[utoipa::path(get, path = "/hub/adapters", tag = "hub", security(("bearer" = [])),
    responses((status = 200, description = "The adapters", body = ModelList<HubAdapter>)))]
pub async fn hub_list_adapters(
    State(state): State<AppState>,
    Caller(org): Caller,
) -> Result<Json<ModelList<HubAdapter>>> {
    let data = org_models(state.db(), &org.id).await?.iter().map(ModelEntry::to_adapter).collect();
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// One adapter, by its model's id or name.
#[utoipa::path(get, path = "/hub/adapters/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The fine-tuned model's id or name")),
    responses((status = 200, description = "The adapter", body = HubAdapter),
              (status = 404, description = "No such adapter", body = crate::ErrorBody)))]
pub async fn hub_get_adapter(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<HubAdapter>> {
    Ok(Json(find_adapter(&state, &org.id, &name).await?.to_adapter()))
}

/// Deletes an adapter (and its fine-tuned model).
#[utoipa::path(delete, path = "/hub/adapters/{name}", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The fine-tuned model's id or name")),
    responses((status = 200, description = "Deleted", body = DeletedModel),
              (status = 404, description = "No such adapter", body = crate::ErrorBody)))]
pub async fn hub_delete_adapter(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<DeletedModel>> {
    let m = find_adapter(&state, &org.id, &name).await?;
    let m = delete_own(&state, &org.id, &m.id).await?;
    Ok(Json(DeletedModel { id: m.id, object: "model".into(), deleted: true }))
}

/// A file of the hub (the users' spec: `{id, path, type}`, paths relative to the
/// organization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HubFile {
    /// `file-…` or, for a model, its id.
    pub id: String,
    /// Where it is, relative to the organization's directory.
    pub path: String,
    /// `dataset`, `model` or `log`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The name given (a file's upload name, a model's name).
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// The organization's files as the users' spec lists them: datasets (uploads and generated
/// training files), models (fine-tuned adapters) and logs (the results of jobs).
#[utoipa::path(get, path = "/hub/files", tag = "hub", security(("bearer" = [])),
    responses((status = 200, description = "The files", body = ModelList<HubFile>)))]
pub async fn hub_list_files(State(state): State<AppState>, Caller(org): Caller) -> Result<Json<ModelList<HubFile>>> {
    let rows = sqlx::query(
        "SELECT id, filename, purpose, created_at FROM files WHERE organization_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(&org.id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list files"))?;
    let mut data = Vec::with_capacity(rows.len());
    for r in &rows {
        let d = || ServerError::db("decode file");
        let id: String = r.try_get("id").map_err(d())?;
        let purpose: String = r.try_get("purpose").map_err(d())?;
        data.push(HubFile {
            path: format!("files/{id}"),
            id,
            kind: if purpose == "fine-tune-results" { "log" } else { "dataset" }.into(),
            name: r.try_get("filename").map_err(d())?,
            created_at: r.try_get("created_at").map_err(d())?,
        });
    }
    for m in org_models(state.db(), &org.id).await? {
        data.push(HubFile {
            id: m.id,
            path: m.path.to_string_lossy().into_owned(),
            kind: "model".into(),
            name: m.name,
            created_at: m.created_at,
        });
    }
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// The adapter's PEFT files (`adapter_config.json`, `adapter_model.safetensors`, …) as one
/// zip archive (stored, not compressed: safetensors do not shrink).
#[utoipa::path(get, path = "/hub/adapters/{name}/download", tag = "hub", security(("bearer" = [])),
    params(("name" = String, Path, description = "The fine-tuned model's id or name")),
    responses((status = 200, description = "A zip archive of the adapter", content_type = "application/zip"),
              (status = 404, description = "No such adapter", body = crate::ErrorBody)))]
pub async fn hub_download_adapter(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Response> {
    let m = find_adapter(&state, &org.id, &name).await?;
    let org_dir = state.org_dir(&org.id);
    let dir = org_dir.join(&m.path);
    if !plain_relative(&m.path) || !dir.is_dir() {
        return Err(ServerError::NotFound { kind: "adapter", id: name });
    }
    let tmp_dir = org_dir.join("tmp");
    let (file, len) = tokio::task::spawn_blocking(move || zip_dir(&dir, &tmp_dir))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))??;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let download = format!("{}.zip", file_stem(&m.name));
    Ok((
        [
            (CONTENT_TYPE, "application/zip".to_string()),
            (CONTENT_LENGTH, len.to_string()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"{download}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A name made safe as a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`
/// (`adapter` for a name with nothing left, or only dots).
#[must_use]
pub fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if s.is_empty() || s.chars().all(|c| c == '.') { "adapter".to_string() } else { s }
}

/// Whether `path` is relative and made of plain names only (no `..`, no root): a path that
/// stays inside the directory it is joined to.
fn plain_relative(path: &Path) -> bool {
    path.components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Writes the files of `dir` (not its subdirectories) into an unnamed temporary zip file and
/// returns it rewound, with its length.
fn zip_dir(dir: &Path, tmp_dir: &Path) -> Result<(std::fs::File, u64)> {
    std::fs::create_dir_all(tmp_dir).map_err(|e| ServerError::io(tmp_dir, e))?;
    let file = tempfile::tempfile_in(tmp_dir).map_err(|e| ServerError::io(tmp_dir, e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ServerError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let zerr = |e: zip::result::ZipError| ServerError::Internal(format!("zip: {e}"));
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        zip.start_file(name, options).map_err(zerr)?;
        let mut src = std::fs::File::open(&path).map_err(|e| ServerError::io(&path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut buf).map_err(|e| ServerError::io(&path, e))?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n]).map_err(|e| ServerError::io(&path, e))?;
        }
    }
    let mut file = zip.finish().map_err(zerr)?;
    let len = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| ServerError::io(dir, e))?;
    std::io::Seek::rewind(&mut file).map_err(|e| ServerError::io(dir, e))?;
    Ok((file, len))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_become_safe_file_stems() {
        use super::file_stem;
        assert_eq!(file_stem("policy"), "policy");
        assert_eq!(file_stem("ft:base:acme:policy:ftjob-x"), "ft_base_acme_policy_ftjob-x");
        assert_eq!(file_stem("../x"), ".._x");
        assert_eq!(file_stem(".."), "adapter");
        assert_eq!(file_stem(""), "adapter");
    }

    #[test]
    fn only_plain_relative_paths_are_joined() {
        use std::path::Path;
        assert!(super::plain_relative(Path::new("jobs/ftjob-1/run/adapter")));
        assert!(!super::plain_relative(Path::new("jobs/../../etc")));
        assert!(!super::plain_relative(Path::new("/etc")));
    }
}
