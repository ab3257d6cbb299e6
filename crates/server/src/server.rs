//! The router, its layers and the serving loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::worker::Workers;
use crate::{Result, ServerError, chat, collections, files, health, jobs};

/// Multipart framing allowed on top of the largest file (boundaries, headers, `purpose`).
pub const MULTIPART_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Largest body of a request that is not an upload (JSON parameters).
pub const MAX_JSON_BODY_BYTES: usize = 1 << 20;

/// The PostgreSQL channel on which processes tell each other's workers that there is work.
pub const WAKE_CHANNEL: &str = "docraft_wake";

/// Turns `NOTIFY docraft_wake` from any process into a wake-up of this process's workers, until
/// `stop` says so; reconnects (after a pause) when the connection is lost. PostgreSQL only.
pub(crate) async fn listen_for_work(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let url = state.config().database_url();
    loop {
        if *stop.borrow() {
            return;
        }
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(WAKE_CHANNEL).await {
                Ok(()) => loop {
                    tokio::select! {
                        got = listener.recv() => match got {
                            Ok(_) => state.wake_local_workers(),
                            Err(e) => {
                                tracing::warn!("LISTEN {WAKE_CHANNEL}: {e}");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::warn!("LISTEN {WAKE_CHANNEL}: {e}"),
            },
            Err(e) => tracing::warn!("LISTEN {WAKE_CHANNEL}: connecting: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What every handler shares: the database, the settings, and the signals to the workers.
#[derive(Debug, Clone)]
pub struct AppState {
    db: Db,
    config: Arc<ServerConfig>,
    wake: Arc<Notify>,
    closing: Arc<AtomicBool>,
    collections: Arc<crate::collections::CollectionCache>,
    chat: Arc<crate::chat::ChatModels>,
}

impl AppState {
    /// State over an open database.
    #[must_use]
    pub fn new(db: Db, config: ServerConfig) -> Self {
        Self {
            db,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            closing: Arc::new(AtomicBool::new(false)),
            collections: Arc::default(),
            chat: Arc::default(),
        }
    }

    /// The embedder and open indexes of the collections.
    #[must_use]
    pub fn collections(&self) -> &crate::collections::CollectionCache {
        &self.collections
    }

    /// The chat models loaded in this process.
    #[must_use]
    pub fn chat_models(&self) -> &crate::chat::ChatModels {
        &self.chat
    }

    /// Wakes the idle workers: those of this process at once, and on PostgreSQL those of every
    /// other process too (`NOTIFY docraft_wake`, which their listeners turn into
    /// [`AppState::wake_local_workers`]), so a job created on one API server starts on a worker
    /// elsewhere without waiting for its next poll.
    pub fn wake_workers(&self) {
        self.wake_local_workers();
        if self.db.backend() == crate::db::Backend::Postgres
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let pool = self.db.pool().clone();
            rt.spawn(async move {
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(WAKE_CHANNEL).execute(&pool).await {
                    tracing::warn!("NOTIFY {WAKE_CHANNEL}: {e}");
                }
            });
        }
    }

    /// Wakes an idle worker of this process (a job was created or resumed here, or another
    /// process said so).
    pub fn wake_local_workers(&self) {
        // Every idle worker looks (training, document and dataset workers share the signal;
        // only the kind with work claims it), and one busy worker finds a permit when it is
        // done, so a wake-up is never spent on the wrong kind.
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Completes when [`AppState::wake_workers`] is called.
    pub async fn workers_notified(&self) {
        self.wake.notified().await;
    }

    /// Whether the server is shutting down (event streams end).
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Creates the data directory, connects to the database and migrates it.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the data directory cannot be made, the errors of
    /// [`Db::connect`] otherwise.
    pub async fn open(config: ServerConfig) -> Result<Self> {
        tokio::fs::create_dir_all(&config.data_dir).await.map_err(|e| ServerError::io(&config.data_dir, e))?;
        let db = Db::connect(&config.database_url(), config.max_connections).await?;
        Ok(Self::new(db, config))
    }

    /// The database.
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// `DATA/orgs/<org-id>`: everything an organization stores. `org_id` comes from the
    /// database, never from a request.
    #[must_use]
    pub fn org_dir(&self, org_id: &str) -> PathBuf {
        self.config.data_dir.join("orgs").join(org_id)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "docraft", description = "OpenAI-compatible fine-tuning service of docraft."),
    modifiers(&BearerAuth),
    tags((name = "files", description = "Uploaded datasets"),
         (name = "fine-tuning", description = "Fine-tuning jobs, their events and checkpoints"),
         (name = "models", description = "Base and fine-tuned models"),
         (name = "collections", description = "Document collections: upload, ingest, index, search"),
         (name = "datasets", description = "Dataset jobs: documents in, fine-tuning files out"),
         (name = "chat", description = "Chat completions answered from collections, and conversations"),
         (name = "hub", description = "The users' spec's routes: hub models, adapters, jobs by name"),
         (name = "health", description = "Liveness and this document"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

fn api(config: &ServerConfig) -> OpenApiRouter<AppState> {
    // The upload handler answers a declared oversize body itself (after draining a part of
    // it); the multipart reader stops a body that grows past the limit while streaming.
    let body_limit = config.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD_BYTES);
    let body_limit_usize = usize::try_from(body_limit).unwrap_or(usize::MAX);
    // Uploads run as long as bytes keep coming; everything else has a time limit.
    let doc_limit = usize::try_from(
        config
            .max_document_bytes
            .saturating_mul(crate::collections::MAX_FILES_PER_UPLOAD as u64)
            .saturating_add(MULTIPART_OVERHEAD_BYTES),
    )
    .unwrap_or(usize::MAX);
    let documents = OpenApiRouter::new()
        .routes(routes!(collections::upload_documents, collections::list_documents))
        .layer(RequestBodyTimeoutLayer::new(config.upload_idle_timeout))
        .layer(DefaultBodyLimit::max(doc_limit));
    let uploads = OpenApiRouter::new()
        .routes(routes!(files::upload_file))
        .layer(RequestBodyTimeoutLayer::new(config.upload_idle_timeout))
        .layer(DefaultBodyLimit::max(body_limit_usize));
    let rest = OpenApiRouter::new()
        .routes(routes!(files::list_files))
        .routes(routes!(files::retrieve_file, files::delete_file))
        .routes(routes!(files::file_content))
        .routes(routes!(health::health))
        .routes(routes!(health::openapi_json))
        .merge(jobs::router())
        .routes(routes!(collections::create_collection, collections::list_collections))
        .routes(routes!(collections::retrieve_collection, collections::delete_collection))
        .routes(routes!(collections::retrieve_document, collections::delete_document))
        .routes(routes!(collections::document_content))
        .routes(routes!(collections::document_page))
        .routes(routes!(collections::search))
        .routes(routes!(collections::add_sql))
        .routes(routes!(collections::collection_events))
        .routes(routes!(crate::datasets::create, crate::datasets::list))
        .routes(routes!(crate::datasets::retrieve))
        .routes(routes!(crate::datasets::cancel))
        .routes(routes!(crate::datasets::resume))
        .routes(routes!(crate::datasets::events))
        .routes(routes!(chat::create_conversation, chat::list_conversations))
        .routes(routes!(chat::retrieve_conversation, chat::delete_conversation))
        .layer(RequestBodyLimitLayer::new(MAX_JSON_BODY_BYTES))
        .layer(middleware::from_fn(declared_json_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout));
    // Generation is slow on a CPU: completions have their own time limit.
    let completions = OpenApiRouter::new()
        .routes(routes!(chat::chat_completions))
        .layer(RequestBodyLimitLayer::new(MAX_JSON_BODY_BYTES))
        .layer(middleware::from_fn(declared_json_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.chat_timeout));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(uploads).merge(documents).merge(rest).merge(completions)
}

/// A body declared (`Content-Length`) over [`MAX_JSON_BODY_BYTES`] gets its 413 after a
/// bounded part of it was read ([`files::drain`]), so a client still sending sees the answer;
/// a body that grows past the limit while streaming is cut by the limit layer inside.
async fn declared_json_limit(request: Request, next: Next) -> Response {
    let limit = u64::try_from(MAX_JSON_BODY_BYTES).unwrap_or(u64::MAX);
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        files::drain(request).await;
        return ServerError::PayloadTooLarge { limit }.into_response();
    }
    next.run(request).await
}

/// The OpenAPI 3.1 document of every route (generated from the handlers' annotations).
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    api(&ServerConfig::default()).into_openapi()
}

pub(crate) fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| openapi().to_pretty_json().unwrap_or_default())
}

/// The whole application: every route with its layers, errors in OpenAI's shape.
pub fn router(state: AppState) -> Router {
    let (router, _) = api(state.config()).split_for_parts();
    router
        .merge(crate::web::router())
        .fallback(unknown_route)
        .layer(middleware::from_fn(openai_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn unknown_route(request: Request) -> ServerError {
    ServerError::Http {
        status: StatusCode::NOT_FOUND.as_u16(),
        message: format!("no route {} {}", request.method(), request.uri().path()),
        code: Some("unknown_url"),
    }
}

/// Rewrites the errors that layers and extractors answer in plain text (a body over the
/// limit, a timeout, a malformed query, a method the route lacks) into OpenAI's shape.
async fn openai_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let (message, code) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("the request body is over the upload limit".to_string(), Some("payload_too_large"))
        }
        StatusCode::REQUEST_TIMEOUT => ("the request took too long".to_string(), Some("timeout")),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("this route does not take that method".to_string(), Some("method_not_allowed"))
        }
        _ if text.is_empty() => (status.canonical_reason().unwrap_or("error").to_string(), None),
        _ => (text, None),
    };
    let mut out = ServerError::Http { status: status.as_u16(), message, code }.into_response();
    *out.status_mut() = status;
    out
}

/// Serves on `listener`, with `config.workers` workers training jobs, until `shutdown`
/// completes; then stops accepting, checkpoints the running jobs and hands them back to the
/// queue, finishes the requests in flight and closes the database.
///
/// # Errors
/// [`ServerError::Io`] when accepting connections fails.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = state.db().clone();
    let addr = listener.local_addr().map_or_else(|_| "listener".into(), |a| a.to_string());
    let workers = Workers::spawn(&state, state.config().workers);
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let closing = state.closing.clone();
    let signal = async move {
        shutdown.await;
        closing.store(true, Ordering::Relaxed);
        let _ = stopping.send(());
    };
    let served = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let stop_workers = async move {
        let _ = stopped.await;
        workers.shutdown().await;
    };
    let (served, ()) = tokio::join!(served, stop_workers);
    served.map_err(|e| ServerError::io(addr, e))?;
    db.close().await;
    Ok(())
}

/// Runs `config.workers` training workers, and the configured document and dataset workers,
/// over `state` without serving HTTP, until `shutdown` completes; then checkpoints the running
/// jobs, hands them back to the queue and closes the database. `docraft worker` runs this
/// beside `docraft serve --workers 0` processes on the same database and data directory: jobs
/// are leased through the database, so any number of processes share the queue.
pub async fn run_workers(state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) {
    let workers = Workers::spawn(&state, state.config().workers);
    shutdown.await;
    state.closing.store(true, Ordering::Relaxed);
    workers.shutdown().await;
    state.db().close().await;
}

/// Opens the data directory and database of `config`, listens on `config.listen` and
/// serves until `shutdown` completes (graceful: requests in flight finish).
///
/// # Errors
/// The errors of [`AppState::open`], [`ServerError::Bind`] when the address is taken.
pub async fn serve(config: ServerConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let (listener, _) = bind(config.listen).await?;
    let state = AppState::open(config).await?;
    serve_with(listener, state, shutdown).await
}

/// Listens on `addr` (port 0: any free port) and says which address it got.
///
/// # Errors
/// [`ServerError::Bind`] when the address cannot be used.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr: addr.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind { addr: addr.to_string(), source })?;
    Ok((listener, local))
}

/// A future that completes on Ctrl-C or (on Unix) SIGTERM, for [`serve`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
