//! `docraft hub`: the models and LoRA adapters of a `docraft serve` server (`/hub/models`,
//! `/hub/adapters`), and adapter downloads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{self, Client, Remote, print_fields, print_json, print_table, text, time};

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
    let c = Client::new(remote)?;
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
    let c = Client::new(remote)?;
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
    let c = Client::new(remote)?;
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
    let c = Client::new(remote)?;
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
    let c = Client::new(remote)?;
    let adapter = c.get(&["hub", "adapters", name], &[]).await?;
    let Some(dir) = download else {
        if remote.json {
            print_json(&adapter);
        } else {
            print_adapter(&adapter);
        }
        return Ok(());
    };
    let id = adapter.get("id").and_then(Value::as_str).unwrap_or(name);
    let stem = file_stem(adapter.get("name").and_then(Value::as_str).unwrap_or(name));
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
    let zip_path = dir.join(format!("{stem}.zip"));
    let bytes = c.download(&["hub", "adapters", id, "download"], &zip_path).await?;
    let out_dir = dir.join(&stem);
    let (zip2, out2) = (zip_path.clone(), out_dir.clone());
    let files =
        tokio::task::spawn_blocking(move || extract(&zip2, &out2)).await.context("extracting the adapter")??;
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

/// A name made safe as a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if s.is_empty() || s.chars().all(|c| c == '.') { "adapter".to_string() } else { s }
}

/// Extracts the zip archive `zip_path` into `dir` (entries whose path would leave `dir` are
/// refused); the files written.
fn extract(zip_path: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let file = std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{}: not a readable zip archive", zip_path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).with_context(|| format!("{}: entry {i}", zip_path.display()))?;
        let Some(rel) = entry.enclosed_name() else {
            bail!("{}: entry {i} has a path outside the archive's directory", zip_path.display());
        };
        let dest = dir.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut out = std::fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("extracting {} from {}", dest.display(), zip_path.display()))?;
        written.push(dest);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_become_safe_file_stems() {
        assert_eq!(file_stem("policy"), "policy");
        assert_eq!(file_stem("ft:base:acme:policy:ftjob-x"), "ft_base_acme_policy_ftjob-x");
        assert_eq!(file_stem("../x"), ".._x");
        assert_eq!(file_stem(".."), "adapter");
        assert_eq!(file_stem(""), "adapter");
    }

    fn archive(path: &Path, entries: &[(&str, &[u8])]) {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn extracts_stored_entries_and_refuses_paths_that_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("a.zip");
        archive(&zip, &[("adapter_config.json", b"{}"), ("adapter_model.safetensors", b"weights")]);
        let out = dir.path().join("a");
        let files = extract(&zip, &out).unwrap();
        assert_eq!(files, [out.join("adapter_config.json"), out.join("adapter_model.safetensors")]);
        assert_eq!(std::fs::read(out.join("adapter_model.safetensors")).unwrap(), b"weights");
        let evil = dir.path().join("evil.zip");
        archive(&evil, &[("../escaped", b"x")]);
        let e = extract(&evil, &dir.path().join("b")).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(!dir.path().join("escaped").exists());
    }
}
