//! `docraft hub`: the models and LoRA adapters of a `docraft serve` server (`/hub/models`,
//! `/hub/adapters`), and adapter downloads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{self, Remote, print_fields, print_json, print_table, text, time};

/// `docraft hub`.
#[derive(Subcommand, Debug)]
pub enum HubCommand {
    /// Models: the server's base models and the organization's fine-tuned ones.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The organization's LoRA adapters (one per fine-tuned model), in Hugging Face peft's
    /// layout.
    #[command(subcommand)]
    Adapters(AdaptersCommand),
}

/// `docraft hub models`.
#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every model the organization can use: base models, then its fine-tuned ones.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One model, by id or name (with its evaluation when its job had a validation file).
    Get {
        /// The model's id or name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete one of the organization's fine-tuned models and its adapter (base models are
    /// the server's and cannot be deleted).
    Delete {
        /// The model's id or name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `docraft hub adapters`.
#[derive(Subcommand, Debug)]
pub enum AdaptersCommand {
    /// The organization's adapters, newest first.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One adapter, by its model's id or name; --download fetches its files.
    Get {
        /// The fine-tuned model's id or name.
        name: String,
        /// Write the adapter as DIR/NAME.zip and extract its files (adapter_config.json,
        /// adapter_model.safetensors, …) into DIR/NAME/. With --json, prints
        /// `{"adapter": …, "zip": PATH, "dir": PATH, "files": [PATH, …]}`.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete an adapter and its fine-tuned model.
    Delete {
        /// The fine-tuned model's id or name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs a `docraft hub` command.
///
/// # Errors
/// The server's errors ([`client::ClientError::Api`]), an unreachable server, a missing
/// key, a download that cannot be written or extracted.
pub fn hub(command: &HubCommand) -> Result<ExitCode> {
    client::block_on(async move {
        match command {
            HubCommand::Models(ModelsCommand::List { remote }) => list_models(remote).await,
            HubCommand::Models(ModelsCommand::Get { name, remote }) => get_model(name, remote).await,
            HubCommand::Models(ModelsCommand::Delete { name, remote }) => {
                delete(&["hub", "models"], name, remote).await
            }
            HubCommand::Adapters(AdaptersCommand::List { remote }) => list_adapters(remote).await,
            HubCommand::Adapters(AdaptersCommand::Get { name, download, remote }) => {
                get_adapter(name, download.as_deref(), remote).await
            }
            HubCommand::Adapters(AdaptersCommand::Delete { name, remote }) => {
                delete(&["hub", "adapters"], name, remote).await
            }
        }?;
        Ok(ExitCode::SUCCESS)
    })
}

fn data(list: &Value) -> Vec<Value> {
    list.get("data").and_then(Value::as_array).cloned().unwrap_or_default()
}

async fn list_models(remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let list = c.get(&["hub", "models"], &[]).await?;
    if remote.json {
        print_json(&list);
        return Ok(());
    }
    let models = data(&list);
    if models.is_empty() {
        println!("no models");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                text(m.get("name")),
                text(m.get("type")),
                text(m.get("base_model")),
                time(m.get("created_at")),
                text(m.get("id")),
            ]
        })
        .collect();
    print_table(&["NAME", "TYPE", "BASE MODEL", "CREATED (UTC)", "ID"], &rows);
    Ok(())
}

async fn get_model(name: &str, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let m = c.get(&["hub", "models", name], &[]).await?;
    if remote.json {
        print_json(&m);
        return Ok(());
    }
    print_fields(&[
        ("id", text(m.get("id"))),
        ("name", text(m.get("name"))),
        ("type", text(m.get("type"))),
        ("origin", text(m.get("origin"))),
        ("base model", text(m.get("base_model"))),
        ("created", time(m.get("created_at"))),
        ("evaluation", text(m.get("evaluation"))),
    ]);
    Ok(())
}

async fn delete(route: &[&str], name: &str, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let mut path = route.to_vec();
    path.push(name);
    let deleted = c.delete(&path).await?;
    if remote.json {
        print_json(&deleted);
    } else {
        println!("deleted {}", text(deleted.get("id")));
    }
    Ok(())
}

async fn list_adapters(remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let list = c.get(&["hub", "adapters"], &[]).await?;
    if remote.json {
        print_json(&list);
        return Ok(());
    }
    let adapters = data(&list);
    if adapters.is_empty() {
        println!("no adapters");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = adapters
        .iter()
        .map(|a| {
            vec![
                text(a.get("name")),
                text(a.get("model_id")),
                text(a.get("dataset")),
                time(a.get("created_at")),
                text(a.get("id")),
            ]
        })
        .collect();
    print_table(&["NAME", "BASE MODEL", "DATASET", "CREATED (UTC)", "ID"], &rows);
    Ok(())
}

async fn get_adapter(name: &str, download: Option<&Path>, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let adapter = c.get(&["hub", "adapters", name], &[]).await?;
    let Some(dir) = download else {
        if remote.json {
            print_json(&adapter);
        } else {
            print_adapter(&adapter);
        }
        return Ok(());
    };
    let docraft_server::client::AdapterDownload { zip: zip_path, dir: out_dir, files, bytes } =
        c.download_adapter(&adapter, name, dir).await?;
    if remote.json {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        print_json(&json!({
            "adapter": adapter,
            "zip": zip_path.display().to_string(),
            "dir": out_dir.display().to_string(),
            "files": files,
        }));
    } else {
        print_adapter(&adapter);
        println!("downloaded {} ({bytes} bytes)", zip_path.display());
        println!("extracted into {}:", out_dir.display());
        for f in &files {
            println!("  {}", f.display());
        }
    }
    Ok(())
}

fn print_adapter(a: &Value) {
    print_fields(&[
        ("id", text(a.get("id"))),
        ("name", text(a.get("name"))),
        ("base model", text(a.get("model_id"))),
        ("dataset", text(a.get("dataset"))),
        ("created", time(a.get("created_at"))),
        ("parameters", text(a.get("parameters"))),
    ]);
}
