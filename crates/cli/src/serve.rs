//! `docraft serve` and `docraft admin`: the HTTP service and its organizations and keys.
//! Each command runs on its own tokio runtime; the rest of the CLI stays synchronous.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use docraft_server::{AppState, ServerConfig, admin};

/// Where the state lives: a data directory (SQLite inside) or a database URL.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory: the SQLite database (docraft.db) and each organization's files.
    #[arg(long, value_name = "DIR", default_value = docraft_server::config::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Database URL instead of DATA/docraft.db: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

impl StoreArgs {
    fn config(&self) -> ServerConfig {
        ServerConfig { database_url: self.database.clone(), ..ServerConfig::with_data_dir(&self.data) }
    }
}

/// The models a server process loads (`docraft serve`, `docraft worker`).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Where the registry's base models are (DIR/NAME/FILE.gguf)
    /// [default: $DOCRAFT_MODELS or ~/.cache/docraft/models].
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// The embedding model new collections are indexed with: a USE-m3 directory, or a
    /// BERT-style ONNX model directory such as all-minilm-l6-v2. Existing collections keep the
    /// model they were built with [default: $DOCRAFT_MODELS/use-m3, multilingual].
    #[arg(long, value_name = "DIR")]
    pub embedder: Option<PathBuf>,
}

/// `docraft serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, default_value = docraft_server::config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Fine-tuning jobs trained at once by this process (0: none; with --document-workers 0
    /// and --dataset-workers 0, serve the API only, for `docraft worker` processes to do the rest).
    #[arg(long, default_value_t = docraft_server::config::DEFAULT_WORKERS)]
    pub workers: usize,
    /// Documents ingested at once by this process (0: none).
    #[arg(long, value_name = "N", default_value_t = docraft_server::config::DEFAULT_DOCUMENT_WORKERS)]
    pub document_workers: usize,
    /// Dataset jobs run at once by this process (0: none).
    #[arg(long, value_name = "N", default_value_t = docraft_server::config::DEFAULT_DATASET_WORKERS)]
    pub dataset_workers: usize,
    /// Threads each job trains on [default: the cores less one, shared among the workers].
    #[arg(long, value_name = "N")]
    pub train_threads: Option<usize>,
    /// Seconds a job's lease lasts without a heartbeat: after a crash, its job is taken up
    /// again (from its last checkpoint) once this runs out.
    #[arg(long, value_name = "SECONDS", default_value_t = docraft_server::config::DEFAULT_LEASE.as_secs())]
    pub lease_seconds: u64,
    #[command(flatten)]
    pub models: ModelArgs,
    /// The directory SQLite sources of collections may be read from (none by default: no
    /// SQLite sources).
    #[arg(long, value_name = "DIR")]
    pub sql_dir: Option<PathBuf>,
}

/// `docraft worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Fine-tuning jobs trained at once by this process.
    #[arg(long, value_name = "N", default_value_t = docraft_server::config::DEFAULT_WORKERS)]
    pub concurrency: usize,
    /// Documents ingested at once by this process (0: none).
    #[arg(long, value_name = "N", default_value_t = docraft_server::config::DEFAULT_DOCUMENT_WORKERS)]
    pub document_workers: usize,
    /// Dataset jobs run at once by this process (0: none).
    #[arg(long, value_name = "N", default_value_t = docraft_server::config::DEFAULT_DATASET_WORKERS)]
    pub dataset_workers: usize,
    /// Threads each job trains on [default: the cores less one, shared among the jobs].
    #[arg(long, value_name = "N")]
    pub train_threads: Option<usize>,
    /// Seconds a job's lease lasts without a heartbeat: after a crash, its job is taken up
    /// again (from its last checkpoint) by any worker once this runs out.
    #[arg(long, value_name = "SECONDS", default_value_t = docraft_server::config::DEFAULT_LEASE.as_secs())]
    pub lease_seconds: u64,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// `docraft admin`.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// API keys of an organization.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Base models every organization can fine-tune.
    #[command(subcommand)]
    Model(ModelCommand),
}

/// `docraft admin model`.
#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Add a base model: a .gguf file or a Hugging Face model directory.
    Add {
        /// The name jobs give as `model`.
        name: String,
        /// The model's file or directory.
        path: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `docraft admin org`.
#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization and print its first API key, once.
    Create {
        /// Unique name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print `{"organization": ..., "api_key": ...}`.
        #[arg(long)]
        json: bool,
    },
    /// Let the organization's dataset jobs use endpoints off this machine (personal data is
    /// redacted before anything leaves); `--deny` forbids it again.
    AllowRemote {
        /// The organization's name.
        name: String,
        /// Forbid instead.
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `docraft admin key`.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create another API key and print it, once.
    Create {
        /// The organization's name.
        #[arg(long)]
        org: String,
        /// A name for the key (e.g. who uses it).
        #[arg(long, default_value = "default")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print `{"key": ..., "api_key": ...}`.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (prefixes only; keys are never stored).
    List {
        /// The organization's name.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it answers 401 from now on.
    Revoke {
        /// The organization's name.
        #[arg(long)]
        org: String,
        /// The key's id (`key-…`) or listed prefix (`dck_…`).
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Runs `docraft serve` until Ctrl-C or SIGTERM.
///
/// # Errors
/// When the database cannot be opened or the address cannot be used.
pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        listen: args.listen,
        workers: args.workers,
        document_workers: args.document_workers,
        dataset_workers: args.dataset_workers,
        train_threads: args.train_threads,
        lease: std::time::Duration::from_secs(args.lease_seconds.max(1)),
        models_dir: args.models.models_dir.clone(),
        embedder: args.models.embedder.clone(),
        sql_dir: args.sql_dir.clone(),
        ..args.store.config()
    };
    runtime()?.block_on(async move {
        let (listener, addr) = docraft_server::bind(config.listen).await?;
        let state = AppState::open(config.clone()).await?;
        eprintln!(
            "docraft serve: listening on http://{addr} (data: {}, database: {:?}, {} workers of {} threads)",
            config.data_dir.display(),
            state.db().backend(),
            config.workers,
            config.threads_per_job()
        );
        docraft_server::serve_with(listener, state, docraft_server::shutdown_signal()).await?;
        eprintln!("docraft serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `docraft worker` until Ctrl-C or SIGTERM.
///
/// # Errors
/// When the database cannot be opened.
pub fn worker(args: &WorkerArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        workers: args.concurrency,
        document_workers: args.document_workers,
        dataset_workers: args.dataset_workers,
        train_threads: args.train_threads,
        lease: std::time::Duration::from_secs(args.lease_seconds.max(1)),
        models_dir: args.models.models_dir.clone(),
        embedder: args.models.embedder.clone(),
        ..args.store.config()
    };
    runtime()?.block_on(async move {
        let state = AppState::open(config.clone()).await?;
        eprintln!(
            "docraft worker: pid {} (data: {}, database: {:?}, {} training workers of {} threads, {} document, {} \
             dataset)",
            std::process::id(),
            config.data_dir.display(),
            state.db().backend(),
            config.workers,
            config.threads_per_job(),
            config.document_workers,
            config.dataset_workers
        );
        docraft_server::run_workers(state, docraft_server::shutdown_signal()).await;
        eprintln!("docraft worker: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs a `docraft admin` command.
///
/// # Errors
/// When the database cannot be opened or the command is refused (a taken name, an unknown
/// organization or key).
pub fn admin(command: &AdminCommand) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            AdminCommand::Org(OrgCommand::Create { name, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let (org, key) = admin::create_org(state.db(), name).await?;
                if *json {
                    println!("{}", serde_json::json!({"organization": org, "api_key": key.expose()}));
                } else {
                    println!("organization {} ({})", org.name, org.id);
                    println!("API key (shown once, keep it): {}", key.expose());
                }
            }
            AdminCommand::Org(OrgCommand::AllowRemote { name, deny, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let org = admin::set_allow_remote(state.db(), name, !*deny).await?;
                if *json {
                    println!("{}", serde_json::to_string(&org)?);
                } else if org.allow_remote {
                    println!("organization {}: dataset jobs may use endpoints off this machine", org.name);
                } else {
                    println!("organization {}: documents stay on this machine", org.name);
                }
            }
            AdminCommand::Model(ModelCommand::Add { name, path, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let m = docraft_server::models::add_base_model(state.db(), name, path).await?;
                if *json {
                    println!("{}", serde_json::to_string(&m.to_hub())?);
                } else {
                    println!("base model {} ({})", m.id, m.path.display());
                }
            }
            AdminCommand::Key(KeyCommand::Create { org, name, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let (info, key) = admin::create_key(state.db(), org, name).await?;
                if *json {
                    println!("{}", serde_json::json!({"key": info, "api_key": key.expose()}));
                } else {
                    println!("key {} ({}) of {org}", info.name, info.id);
                    println!("API key (shown once, keep it): {}", key.expose());
                }
            }
            AdminCommand::Key(KeyCommand::List { org, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let keys = admin::list_keys(state.db(), org).await?;
                if *json {
                    println!("{}", serde_json::to_string(&keys)?);
                } else {
                    for k in keys {
                        let state = k.revoked_at.map_or_else(|| "active".to_string(), |t| format!("revoked at {t}"));
                        println!("{}  {}…  {}  created {}  {state}", k.id, k.prefix, k.name, k.created_at);
                    }
                }
            }
            AdminCommand::Key(KeyCommand::Revoke { org, key, store, json }) => {
                let state = AppState::open(store.config()).await?;
                let info = admin::revoke_key(state.db(), org, key).await?;
                if *json {
                    println!("{}", serde_json::to_string(&info)?);
                } else {
                    println!("revoked {} ({}…) of {org}", info.id, info.prefix);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
