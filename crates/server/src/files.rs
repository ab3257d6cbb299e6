//! `/v1/files`, as OpenAI defines it: upload (multipart, streamed to disk), list, retrieve,
//! content, delete. Files live at `DATA/orgs/<org-id>/files/<file-id>`; the name the user
//! gave is only metadata, checked (a name that is a path is refused). A `fine-tune` file is validated on upload (see
//! [`crate::dataset`]) and refused with nothing stored when it is not usable.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::dataset::{LineMeter, LineStats, prepare};
use crate::db::now;
use crate::ids::{is_id, new_id};
use crate::server::{AppState, MULTIPART_OVERHEAD_BYTES};
use crate::{Result, ServerError};

/// Purposes OpenAI accepts for a file.
pub const PURPOSES: [&str; 6] = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];
/// Most files a list returns (OpenAI's default and maximum).
pub const MAX_LIST_LIMIT: i64 = 10_000;
/// Longest stored file name, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;
/// Bytes of an oversize body read and dropped before the 413 is sent.
pub const DRAIN_MAX_BYTES: usize = 8 << 20;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const ID_PREFIX: &str = "file-";
const COLUMNS: &str = "id, organization_id, bytes, created_at, filename, purpose, status";

/// Reads (and drops) a bounded part of an oversize request's body ([`DRAIN_MAX_BYTES`], for at
/// most two seconds) before its 413 is sent, so that a client still sending sees the 413
/// rather than a reset connection (a socket closed with unread data is reset).
pub(crate) async fn drain(request: Request) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, axum::body::to_bytes(request.into_body(), DRAIN_MAX_BYTES)).await;
}

/// A file, as OpenAI describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    /// `file-…`
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Size in bytes (of the JSONL stored, for a converted JSON array or CSV).
    pub bytes: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Always `null`: files do not expire.
    pub expires_at: Option<i64>,
    /// The name given at upload.
    pub filename: String,
    /// One of [`PURPOSES`].
    pub purpose: String,
    /// Always `processed` (a file that fails validation is not stored).
    pub status: String,
}

impl FileObject {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode file");
        Ok(Self {
            id: row.try_get("id").map_err(d())?,
            object: "file".into(),
            bytes: row.try_get("bytes").map_err(d())?,
            created_at: row.try_get("created_at").map_err(d())?,
            expires_at: None,
            filename: row.try_get("filename").map_err(d())?,
            purpose: row.try_get("purpose").map_err(d())?,
            status: "processed".into(),
        })
    }
}

/// A page of files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// Always `list`.
    pub object: String,
    /// The files.
    pub data: Vec<FileObject>,
    /// The first file's id.
    pub first_id: Option<String>,
    /// The last file's id: pass it as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether more files follow.
    pub has_more: bool,
}

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedFile {
    /// The file's id.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Always `true`.
    pub deleted: bool,
}

/// The multipart form of an upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// One of `assistants`, `batch`, `fine-tune`, `vision`, `user_data`, `evals`.
    pub purpose: String,
}

/// Query of `GET /v1/files`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only files of this purpose.
    pub purpose: Option<String>,
    /// 1 to 10000 (default 10000).
    pub limit: Option<i64>,
    /// The id of the last file of the previous page.
    pub after: Option<String>,
    /// `asc` or `desc` (default) by creation time.
    pub order: Option<String>,
}

/// Checks a user's file name: one path component (no `/`, `\\`, `..`), no control
/// characters, at most [`MAX_FILENAME_CHARS`]. It is only metadata, never used to build a
/// path; a name that tries to be a path is refused rather than quietly changed.
///
/// # Errors
/// [`ServerError::BadRequest`] (`invalid_filename`) naming what is wrong.
pub fn check_filename(name: &str) -> Result<String> {
    let name = name.trim();
    let why = if name.is_empty() || name.chars().all(|c| c == '.') {
        Some("is empty")
    } else if name.contains(['/', '\\']) || name.contains("..") {
        Some("is a path; send the file's name alone")
    } else if name.chars().any(char::is_control) {
        Some("holds control characters")
    } else if name.chars().count() > MAX_FILENAME_CHARS {
        Some("is too long")
    } else {
        None
    };
    match why {
        Some(why) => Err(ServerError::bad_request(
            format!("file name {name:?} {why} (at most {MAX_FILENAME_CHARS} characters, no '/', '\\' or '..')"),
            Some("file"),
            Some("invalid_filename"),
        )),
        None => Ok(name.to_string()),
    }
}

fn files_dir(state: &AppState, org_id: &str) -> PathBuf {
    state.org_dir(org_id).join("files")
}

fn not_found(id: &str) -> ServerError {
    ServerError::NotFound { kind: "file", id: id.to_string() }
}

pub(crate) fn multipart_error(e: &MultipartError, limit: u64) -> ServerError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ServerError::PayloadTooLarge { limit }
    } else {
        ServerError::bad_request(
            format!("malformed multipart body: {}", e.body_text()),
            None,
            Some("invalid_multipart"),
        )
    }
}

/// A file received into a temporary file next to its final place.
struct Received {
    temp: tempfile::TempPath,
    bytes: u64,
    filename: String,
    lines: LineStats,
}

/// Streams a multipart file field into a temporary file in `dir` (next to its final place),
/// refusing it past `limit` bytes (413) and a name that is a path (400); `inspect` sees every
/// chunk on the way (line lengths, a hash, the first bytes). Returns the temporary file, its
/// size and the checked name; the file is deleted if it is not persisted.
pub(crate) async fn stream_to_temp(
    mut field: Field<'_>,
    dir: &Path,
    limit: u64,
    default_name: &str,
    mut inspect: impl FnMut(&[u8]),
) -> Result<(tempfile::TempPath, u64, String)> {
    let filename = check_filename(field.file_name().unwrap_or(default_name))?;
    let dir_owned = dir.to_path_buf();
    let (file, temp) = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new().prefix(".upload-").tempfile_in(&dir_owned).map_err(|e| ServerError::io(&dir_owned, e))
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))??
    .into_parts();
    let mut out = tokio::fs::File::from_std(file);
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e, limit))? {
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(ServerError::PayloadTooLarge { limit });
        }
        inspect(&chunk);
        out.write_all(&chunk).await.map_err(|e| ServerError::io(&*temp, e))?;
    }
    out.flush().await.map_err(|e| ServerError::io(&*temp, e))?;
    out.sync_all().await.map_err(|e| ServerError::io(&*temp, e))?;
    Ok((temp, bytes, filename))
}

async fn receive(field: Field<'_>, dir: &Path, limit: u64, max_line_bytes: u64) -> Result<Received> {
    let mut meter = LineMeter::new(max_line_bytes);
    let (temp, bytes, filename) = stream_to_temp(field, dir, limit, "upload", |c| meter.feed(c)).await?;
    Ok(Received { temp, bytes, filename, lines: meter.stats() })
}

async fn small_text(mut field: Field<'_>, name: &str, limit: u64) -> Result<String> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e, limit))? {
        text.extend_from_slice(&chunk);
        if text.len() > 256 {
            return Err(ServerError::bad_request(format!("{name} is too long"), Some(name), None));
        }
    }
    String::from_utf8(text).map_err(|_| ServerError::bad_request(format!("{name} is not UTF-8"), Some(name), None))
}

/// Upload a file (multipart `file` and `purpose`). A `fine-tune` file must be OpenAI chat,
/// prompt/completion or text/label records, as JSONL, a JSON array or CSV (the last two are
/// stored as JSONL); a file that fails validation is refused with the lines at fault.
#[utoipa::path(post, path = "/v1/files", tag = "files", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The stored file", body = FileObject),
              (status = 400, description = "Bad form or file", body = crate::ErrorBody),
              (status = 401, description = "No or bad key", body = crate::ErrorBody),
              (status = 413, description = "Over the upload limit", body = crate::ErrorBody)))]
pub async fn upload_file(
    State(state): State<AppState>,
    Caller(org): Caller,
    request: Request,
) -> Result<Json<FileObject>> {
    let limit = state.config().max_upload_bytes;
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(MULTIPART_OVERHEAD_BYTES)) {
        drain(request).await;
        return Err(ServerError::PayloadTooLarge { limit });
    }
    let multipart: std::result::Result<Multipart, MultipartRejection> = Multipart::from_request(request, &state).await;
    let mut multipart = multipart.map_err(|e| {
        ServerError::bad_request(
            format!("expected a multipart/form-data body: {}", e.body_text()),
            None,
            Some("invalid_multipart"),
        )
    })?;
    let dir = files_dir(&state, &org.id);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ServerError::io(&dir, e))?;
    let (mut received, mut purpose) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(|e| multipart_error(&e, limit))? {
        match field.name() {
            Some("file") if received.is_none() => {
                received = Some(receive(field, &dir, limit, state.config().max_line_bytes).await?);
            }
            Some("file") => return Err(ServerError::bad_request("more than one file", Some("file"), None)),
            Some("purpose") => purpose = Some(small_text(field, "purpose", limit).await?),
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| ServerError::bad_request("missing purpose", Some("purpose"), None))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ServerError::bad_request(
            format!("unknown purpose {purpose:?}; one of: {}", PURPOSES.join(", ")),
            Some("purpose"),
            None,
        ));
    }
    let received = received.ok_or_else(|| ServerError::bad_request("missing file", Some("file"), None))?;
    if received.bytes == 0 {
        return Err(ServerError::bad_request("the file is empty", Some("file"), Some("empty_file")));
    }
    let (stored, bytes) = if purpose == "fine-tune" {
        let (lines, max_line, dir2) = (received.lines, state.config().max_line_bytes, dir.clone());
        let temp = received.temp;
        let prepared = tokio::task::spawn_blocking(move || prepare(temp, &dir2, lines, max_line))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))??;
        (prepared.path, prepared.bytes)
    } else {
        (received.temp, received.bytes)
    };
    let file = FileObject {
        id: new_id(ID_PREFIX)?,
        object: "file".into(),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        created_at: now(),
        expires_at: None,
        filename: received.filename,
        purpose,
        status: "processed".into(),
    };
    let path = dir.join(&file.id);
    stored.persist(&path).map_err(|e| ServerError::io(&path, e.error))?;
    let inserted = sqlx::query(
        "INSERT INTO files (id, organization_id, bytes, created_at, filename, purpose, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&file.id)
    .bind(&org.id)
    .bind(file.bytes)
    .bind(file.created_at)
    .bind(&file.filename)
    .bind(&file.purpose)
    .bind(&file.status)
    .execute(state.db().pool())
    .await;
    if let Err(e) = inserted {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ServerError::Database { context: "insert file", source: e });
    }
    Ok(Json(file))
}

/// List the organization's files.
#[utoipa::path(get, path = "/v1/files", tag = "files", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "A page of files", body = FileList),
              (status = 401, description = "No or bad key", body = crate::ErrorBody),
              (status = 422, description = "A parameter out of range", body = crate::ErrorBody)))]
pub async fn list_files(
    State(state): State<AppState>,
    Caller(org): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<FileList>> {
    let limit = q.limit.unwrap_or(MAX_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ServerError::unprocessable(format!("limit {limit} is not within 1..={MAX_LIST_LIMIT}"), "limit"));
    }
    let desc = match q.order.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => return Err(ServerError::unprocessable(format!("order {other:?} is neither asc nor desc"), "order")),
    };
    let mut sql = format!("SELECT {COLUMNS} FROM files WHERE organization_id = $1");
    let mut n = 1;
    if q.purpose.is_some() {
        n += 1;
        sql += &format!(" AND purpose = ${n}");
    }
    let cursor = match &q.after {
        Some(after) => Some(cursor_of(&state, &org.id, after).await?),
        None => None,
    };
    if cursor.is_some() {
        let cmp = if desc { "<" } else { ">" };
        sql += &format!(" AND (created_at {cmp} ${} OR (created_at = ${} AND id {cmp} ${}))", n + 1, n + 2, n + 3);
    }
    let dir = if desc { "DESC" } else { "ASC" };
    sql += &format!(" ORDER BY created_at {dir}, id {dir} LIMIT {}", limit + 1);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&org.id);
    if let Some(p) = &q.purpose {
        query = query.bind(p);
    }
    if let Some((created_at, id)) = &cursor {
        query = query.bind(*created_at).bind(*created_at).bind(id);
    }
    let rows = query.fetch_all(state.db().pool()).await.map_err(ServerError::db("list files"))?;
    let mut data = rows.iter().map(FileObject::from_row).collect::<Result<Vec<_>>>()?;
    let has_more = data.len() as u64 > limit.unsigned_abs();
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(FileList {
        object: "list".into(),
        first_id: data.first().map(|f| f.id.clone()),
        last_id: data.last().map(|f| f.id.clone()),
        data,
        has_more,
    }))
}

async fn cursor_of(state: &AppState, org_id: &str, after: &str) -> Result<(i64, String)> {
    let file = find(state, org_id, after).await.map_err(|e| match e {
        ServerError::NotFound { .. } => {
            ServerError::bad_request(format!("after: no file {after:?}"), Some("after"), Some("invalid_cursor"))
        }
        other => other,
    })?;
    Ok((file.created_at, file.id))
}

async fn find(state: &AppState, org_id: &str, id: &str) -> Result<FileObject> {
    if !is_id(id, ID_PREFIX) {
        return Err(not_found(id));
    }
    let sql = format!("SELECT {COLUMNS} FROM files WHERE id = $1 AND organization_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(org_id)
        .fetch_optional(state.db().pool())
        .await
        .map_err(ServerError::db("find file"))?;
    row.as_ref().map(FileObject::from_row).transpose()?.ok_or_else(|| not_found(id))
}

/// A file's metadata.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-…`")),
    responses((status = 200, description = "The file", body = FileObject),
              (status = 404, description = "No such file in this organization", body = crate::ErrorBody)))]
pub async fn retrieve_file(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(file_id): UrlPath<String>,
) -> Result<Json<FileObject>> {
    find(&state, &org.id, &file_id).await.map(Json)
}

/// A file's content, streamed.
#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "files", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-…`")),
    responses((status = 200, description = "The bytes stored", content_type = "application/octet-stream"),
              (status = 404, description = "No such file in this organization", body = crate::ErrorBody)))]
pub async fn file_content(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(file_id): UrlPath<String>,
) -> Result<Response> {
    let file = find(&state, &org.id, &file_id).await?;
    let path = files_dir(&state, &org.id).join(&file.id);
    let f = tokio::fs::File::open(&path).await.map_err(|e| ServerError::io(&path, e))?;
    let len = f.metadata().await.map_err(|e| ServerError::io(&path, e))?.len();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(f)).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

/// Delete a file (its metadata and bytes).
#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "files", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-…`")),
    responses((status = 200, description = "Deleted", body = DeletedFile),
              (status = 404, description = "No such file in this organization", body = crate::ErrorBody)))]
pub async fn delete_file(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(file_id): UrlPath<String>,
) -> Result<Json<DeletedFile>> {
    let file = find(&state, &org.id, &file_id).await?;
    let done = sqlx::query("DELETE FROM files WHERE id = $1 AND organization_id = $2")
        .bind(&file.id)
        .bind(&org.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete file"))?;
    if done.rows_affected() == 0 {
        return Err(not_found(&file_id));
    }
    let path = files_dir(&state, &org.id).join(&file.id);
    if let Err(e) = tokio::fs::remove_file(&path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "deleted file's bytes could not be removed");
    }
    Ok(Json(DeletedFile { id: file.id, object: "file".into(), deleted: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_their_paths() {
        for bad in ["../../etc/passwd", "..\\..\\x.jsonl", "..", "a/b.jsonl", "a\u{0}b.jsonl", "", "x..", "..x"] {
            let e = check_filename(bad).unwrap_err();
            assert_eq!(e.body().error.code.as_deref(), Some("invalid_filename"), "{bad:?}");
        }
        assert_eq!(check_filename(" train.v2.jsonl ").unwrap(), "train.v2.jsonl");
        assert!(check_filename(&"x".repeat(MAX_FILENAME_CHARS + 1)).is_err());
    }
}
