//! `docraft serve`: an OpenAI-compatible HTTP service over the docraft pipeline.
//!
//! This first slice holds the foundation every later route stands on:
//!
//! - [`serve`] / [`router`]: axum with tower-http layers (body limits, time limits,
//!   tracing), graceful shutdown, errors in OpenAI's shape ([`ServerError`] implements
//!   `IntoResponse`), `GET /health` and a generated `GET /openapi.json` ([`openapi`]).
//! - [`db`]: SQLite under `DATA/docraft.db` by default, PostgreSQL from a `postgres://` URL,
//!   one set of portable queries, migrations per backend.
//! - [`admin`]: organizations and API keys (`dck_…`, stored as sha256 only, compared in
//!   constant time); [`auth::Caller`] turns `Authorization: Bearer KEY` into the caller's
//!   organization, and every query is scoped by it: another organization's object answers 404.
//! - [`files`]: `/v1/files` as OpenAI defines it; a `fine-tune` upload is validated with
//!   `docraft validate`'s checks ([`dataset`]) and refused, with nothing stored, when bad.
//! - [`jobs`]: `/v1/fine_tuning/jobs` (create, list, retrieve, cancel, pause, resume, events
//!   with an SSE stream, checkpoints) and the spec's `/fine_tuning/jobs` aliases.
//! - [`worker`]: leases jobs from the database and trains them; survives restarts and kill -9.
//! - [`client`]: a client of this API for Rust programs (what `docraft jobs`/`hub` use).
//! - [`collections`]: document collections: uploads ingested and indexed in the background,
//!   search with metadata filters, page previews for citations.
//! - [`chat`]: `/v1/chat/completions` as OpenAI defines it, answering from a collection with
//!   citations (`docraft: {collection}`), and stored conversations (`/v1/conversations`).
//! - [`datasets`]: dataset jobs: a collection's chunks to question/answer or RAFT files in
//!   `/v1/files`, with a local model or an endpoint (personal data redacted before it leaves).
//! - [`models`]: `/v1/models` and the hub (`/hub/models`, `/hub/adapters` with a zip download).
//! - [`web`]: the web app at `/` (its files embedded in the binary, served at `/app/{file}`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), docraft_server::ServerError> {
//! use docraft_server::{AppState, ServerConfig, admin, serve_with, bind};
//!
//! let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
//! let config = ServerConfig { listen, ..ServerConfig::with_data_dir("data") };
//! let state = AppState::open(config.clone()).await?;
//! let (_org, key) = admin::create_org(state.db(), "acme").await?;
//! println!("key, shown once: {}", key.expose());
//! let (listener, addr) = bind(config.listen).await?;
//! println!("listening on http://{addr}");
//! serve_with(listener, state, docraft_server::shutdown_signal()).await
//! # }
//! ```

pub mod admin;
pub mod auth;
pub mod chat;
pub mod client;
pub mod collections;
pub mod config;
pub mod dataset;
pub mod datasets;
pub mod db;
mod error;
pub mod files;
pub mod health;
pub mod ids;
pub mod jobs;
pub mod models;
mod server;
pub mod web;
pub mod worker;

pub use config::ServerConfig;
pub use db::{Backend, Db};
pub use error::{ErrorBody, ErrorDetail, Result, ServerError};
pub use server::{
    AppState, MULTIPART_OVERHEAD_BYTES, bind, openapi, router, run_workers, serve, serve_with, shutdown_signal,
};
