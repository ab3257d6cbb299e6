//! `docraft jobs`: fine-tuning jobs of a `docraft serve` server, over its OpenAI-compatible
//! API (`/v1/files`, `/v1/fine_tuning/jobs`, and `/fine_tuning/jobs/{name}` for names).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::{self, Client, Remote, is_id, number, print_fields, print_json, print_table, text, time};

/// The prefix of job ids.
const JOB_PREFIX: &str = "ftjob-";
/// The prefix of file ids.
const FILE_PREFIX: &str = "file-";

/// `docraft jobs`.
#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Create a fine-tuning job; dataset paths are uploaded first (`POST /v1/files`).
    ///
    /// Prints the job's id and status. Only the settings given are sent; the server fills in
    /// the others.
    Create(Box<CreateArgs>),
    /// The organization's jobs, newest first.
    List {
        /// Jobs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// List the jobs after this one (the last id of the previous page).
        #[arg(long, value_name = "JOB_ID")]
        after: Option<String>,
        /// Only the jobs created with this KEY=VALUE metadata pair; repeatable (all must hold).
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        remote: Remote,
    },
    /// One job, by id or output name: its status, result, error and latest metrics.
    Get {
        /// The job's id (`ftjob-…`) or its output name (`--output-model`; the newest of that name).
        job: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a job: at once when it waits, at its next step when it trains.
    Cancel {
        /// The job's id or output name.
        job: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Pause a job: it stops after a checkpoint (at once when it has not started).
    Pause {
        /// The job's id or output name.
        job: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a paused job: queued again, it continues from its last checkpoint.
    Resume {
        /// The job's id or output name.
        job: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// A job's events (messages and per-step metrics), oldest first.
    Events {
        /// The job's id or output name.
        job: String,
        /// The newest N events [default: 20].
        #[arg(long, conflicts_with = "follow")]
        limit: Option<u32>,
        /// Print every event from the first, then each as it happens, until the job ends
        /// (server-sent events). With --json: one event object per line.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `docraft jobs create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The base model to fine-tune (a name of `docraft hub models list`).
    #[arg(long, value_name = "NAME")]
    pub base_model: String,
    /// The training data: a JSONL file (OpenAI chat, prompt/completion or text/label lines),
    /// uploaded first, or the id of a file already uploaded (`file-…`).
    #[arg(long, value_name = "FILE|FILE_ID")]
    pub dataset: String,
    /// Validation data, likewise: the job reports its loss on it.
    #[arg(long, value_name = "FILE|FILE_ID")]
    pub validation: Option<String>,
    /// The name of the fine-tuned model and its adapter in the hub (OpenAI's `suffix`).
    #[arg(long, value_name = "NAME")]
    pub output_model: String,
    /// Passes over the training data [server's default: 3].
    #[arg(long, value_name = "N")]
    pub epochs: Option<u32>,
    /// Examples per optimizer step, or `auto` [server's default: 32].
    #[arg(long, value_name = "N|auto", value_parser = parse_batch_size)]
    pub batch_size: Option<Value>,
    /// Peak learning rate [server's default: 5e-5].
    #[arg(long, value_name = "F")]
    pub learning_rate: Option<f64>,
    /// LoRA rank [server's default: 16].
    #[arg(long, value_name = "N")]
    pub lora_rank: Option<u32>,
    /// LoRA alpha (scale alpha/rank) [server's default: 32].
    #[arg(long, value_name = "F")]
    pub lora_alpha: Option<f64>,
    /// LoRA dropout [server's default: 0.1].
    #[arg(long, value_name = "F")]
    pub lora_dropout: Option<f64>,
    /// Stop after this many optimizer steps.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Longest example in tokens; longer ones are truncated [server's default: 1024].
    #[arg(long, value_name = "N")]
    pub max_seq_len: Option<u64>,
    /// Write a checkpoint every N steps [server's default: 500].
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Seed of every random choice [server's default: 42].
    #[arg(long, value_name = "N")]
    pub seed: Option<i64>,
    /// A KEY=VALUE pair to keep with the job (`docraft jobs list --metadata KEY=VALUE` finds
    /// it); repeatable.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    #[command(flatten)]
    pub remote: Remote,
}

fn parse_batch_size(s: &str) -> Result<Value, String> {
    if s == "auto" {
        return Ok(json!("auto"));
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(json!(n)),
        _ => Err(format!("{s:?}: a whole number above 0, or auto")),
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Runs a `docraft jobs` command.
///
/// # Errors
/// The server's errors ([`client::ClientError::Api`]), an unreachable server, a missing
/// key, a dataset that cannot be read.
pub fn jobs(command: &JobsCommand) -> Result<ExitCode> {
    client::block_on(async move {
        match command {
            JobsCommand::Create(a) => create(a).await,
            JobsCommand::List { limit, after, metadata, remote } => {
                list(*limit, after.as_deref(), metadata, remote).await
            }
            JobsCommand::Get { job, remote } => get(job, remote).await,
            JobsCommand::Cancel { job, remote } => control(job, Control::Cancel, remote).await,
            JobsCommand::Pause { job, remote } => control(job, Control::Pause, remote).await,
            JobsCommand::Resume { job, remote } => control(job, Control::Resume, remote).await,
            JobsCommand::Events { job, limit, follow, remote } => events(job, *limit, *follow, remote).await,
        }?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The file id for `--dataset`/`--validation`: an id as given, a path uploaded first.
/// The second value says whether it was uploaded now.
async fn file_id(c: &Client, given: &str, flag: &str, quiet: bool) -> Result<(String, bool)> {
    if is_id(given, FILE_PREFIX) {
        return Ok((given.to_string(), false));
    }
    let path = Path::new(given);
    if !path.is_file() {
        bail!("{flag} {given}: no such file (give a dataset file or the id of an uploaded one, `file-…`)");
    }
    let file = c.upload(path, "fine-tune").await.with_context(|| format!("uploading {given}"))?;
    let id = file.get("id").and_then(Value::as_str).map(str::to_string);
    let Some(id) = id else { bail!("uploading {given}: the server's answer has no id: {file}") };
    if !quiet {
        eprintln!("uploaded {given} as {id} ({} bytes)", text(file.get("bytes")));
    }
    Ok((id, true))
}

async fn create(a: &CreateArgs) -> Result<()> {
    let c = a.remote.client()?;
    let mut uploaded = Vec::new();
    let result = create_with(&c, a, &mut uploaded).await;
    if result.is_err() {
        // The job was not made: the files uploaded for it would only take space.
        for id in &uploaded {
            let _ = c.delete(&["v1", "files", id]).await;
        }
    }
    let job = result?;
    if a.remote.json {
        print_json(&job);
    } else {
        let id = text(job.get("id"));
        println!("created job {id} ({}): {}", text(job.get("user_provided_suffix")), text(job.get("status")));
        println!("follow it with: docraft jobs events {id} --follow");
    }
    Ok(())
}

async fn create_with(c: &Client, a: &CreateArgs, uploaded: &mut Vec<String>) -> Result<Value> {
    let quiet = a.remote.json;
    let (training, new) = file_id(c, &a.dataset, "--dataset", quiet).await?;
    if new {
        uploaded.push(training.clone());
    }
    let validation = match &a.validation {
        Some(v) => {
            let (id, new) = file_id(c, v, "--validation", quiet).await?;
            if new {
                uploaded.push(id.clone());
            }
            Some(id)
        }
        None => None,
    };
    let mut h = Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            h.insert(k.to_string(), v);
        }
    };
    set("n_epochs", a.epochs.map(Value::from));
    set("batch_size", a.batch_size.clone());
    set("learning_rate", a.learning_rate.map(Value::from));
    set("lora_rank", a.lora_rank.map(Value::from));
    set("lora_alpha", a.lora_alpha.map(Value::from));
    set("lora_dropout", a.lora_dropout.map(Value::from));
    set("max_steps", a.max_steps.map(Value::from));
    set("max_seq_len", a.max_seq_len.map(Value::from));
    set("checkpoint_every", a.checkpoint_every.map(Value::from));
    let mut body = Map::new();
    body.insert("model".into(), json!(a.base_model));
    body.insert("training_file".into(), json!(training));
    if let Some(v) = validation {
        body.insert("validation_file".into(), json!(v));
    }
    body.insert("suffix".into(), json!(a.output_model));
    if let Some(seed) = a.seed {
        body.insert("seed".into(), json!(seed));
    }
    if !a.metadata.is_empty() {
        let m: Map<String, Value> = a.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        body.insert("metadata".into(), Value::Object(m));
    }
    if !h.is_empty() {
        body.insert("hyperparameters".into(), Value::Object(h));
    }
    Ok(c.post(&["v1", "fine_tuning", "jobs"], Some(&Value::Object(body))).await?)
}

/// The output name of a job: `docraft.output_name` (in a job read alone), else the suffix
/// given at creation (lists leave out `docraft`).
fn output_name(job: &Value) -> String {
    let name = job.pointer("/docraft/output_name").filter(|v| !v.is_null()).or_else(|| job.get("user_provided_suffix"));
    text(name)
}

async fn list(limit: u32, after: Option<&str>, metadata: &[(String, String)], remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let keys: Vec<String> = metadata.iter().map(|(k, _)| format!("metadata[{k}]")).collect();
    let mut query = vec![("limit", limit.to_string())];
    if let Some(a) = after {
        query.push(("after", a.to_string()));
    }
    for (key, (_, value)) in keys.iter().zip(metadata) {
        query.push((key.as_str(), value.clone()));
    }
    let page = c.get(&["v1", "fine_tuning", "jobs"], &query).await?;
    if remote.json {
        print_json(&page);
        return Ok(());
    }
    let jobs = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                text(j.get("id")),
                text(j.get("status")),
                text(j.get("model")),
                output_name(j),
                time(j.get("created_at")),
            ]
        })
        .collect();
    print_table(&["ID", "STATUS", "MODEL", "OUTPUT", "CREATED (UTC)"], &rows);
    if page.get("has_more").and_then(Value::as_bool) == Some(true)
        && let Some(last) = jobs.last().and_then(|j| j.get("id")).and_then(Value::as_str)
    {
        eprintln!("more: docraft jobs list --after {last}");
    }
    Ok(())
}

async fn get(job: &str, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let j = c.get(&["fine_tuning", "jobs", job], &[]).await?;
    if remote.json {
        print_json(&j);
        return Ok(());
    }
    print_job(&j);
    Ok(())
}

fn print_job(j: &Value) {
    let d = |k: &str| j.get("docraft").and_then(|d| d.get(k));
    let error = j
        .get("error")
        .filter(|e| !e.is_null())
        .map_or_else(|| "-".to_string(), |e| format!("{}: {}", text(e.get("code")), text(e.get("message"))));
    let step = match (d("step").filter(|v| !v.is_null()), d("total_steps").filter(|v| !v.is_null())) {
        (None, None) => "-".to_string(),
        (s, t) => format!("{} / {}", text(s), text(t)),
    };
    let epochs = d("epoch_seconds")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .map_or_else(|| "-".to_string(), |a| a.iter().map(|v| number(Some(v), 1)).collect::<Vec<_>>().join(", "));
    print_fields(&[
        ("id", text(j.get("id"))),
        ("status", text(j.get("status"))),
        ("base model", text(j.get("model"))),
        ("output name", output_name(j)),
        ("fine_tuned_model", text(j.get("fine_tuned_model"))),
        ("error", error),
        ("training file", text(j.get("training_file"))),
        ("validation file", text(j.get("validation_file"))),
        ("created", time(j.get("created_at"))),
        ("finished", time(j.get("finished_at"))),
        ("estimated finish", time(j.get("estimated_finish"))),
        ("step", step),
        ("train_loss", number(d("train_loss"), 4)),
        ("valid_loss", number(d("valid_loss"), 4)),
        ("epoch_seconds", epochs),
        ("cpu_seconds", text(d("cpu_seconds"))),
        ("peak_rss_mib", number(d("peak_rss_mib"), 1)),
    ]);
}

/// What `cancel`, `pause` and `resume` ask.
#[derive(Debug, Clone, Copy)]
enum Control {
    Cancel,
    Pause,
    Resume,
}

async fn control(job: &str, what: Control, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    let verb = match what {
        Control::Cancel => "cancel",
        Control::Pause => "pause",
        Control::Resume => "resume",
    };
    // Ids go to OpenAI's routes; names to the hub's, which take either.
    let j = match (is_id(job, JOB_PREFIX), what) {
        (true, _) => c.post(&["v1", "fine_tuning", "jobs", job, verb], None).await?,
        (false, Control::Cancel) => c.delete(&["fine_tuning", "jobs", job]).await?,
        (false, _) => c.post(&["fine_tuning", "jobs", job, verb], None).await?,
    };
    if remote.json {
        print_json(&j);
        return Ok(());
    }
    let status = text(j.get("status"));
    let reached = match what {
        Control::Cancel => status == "cancelled",
        Control::Pause => status == "paused",
        Control::Resume => true,
    };
    if reached {
        println!("{}: {status}", text(j.get("id")));
    } else {
        println!("{}: {status} ({verb} requested: its worker stops it at the next step)", text(j.get("id")));
    }
    Ok(())
}

fn print_event(e: &Value, json: bool) {
    if json {
        print_json(e);
    } else {
        println!("{}  {:<5}  {}", time(e.get("created_at")), text(e.get("level")), text(e.get("message")));
    }
}

async fn events(job: &str, limit: Option<u32>, follow: bool, remote: &Remote) -> Result<()> {
    let c = remote.client()?;
    // The events routes take ids only: a name is looked up first.
    let id = if is_id(job, JOB_PREFIX) {
        job.to_string()
    } else {
        let j = c.get(&["fine_tuning", "jobs", job], &[]).await?;
        j.get("id").and_then(Value::as_str).map(str::to_string).with_context(|| format!("job {job}: no id"))?
    };
    let path = ["v1", "fine_tuning", "jobs", id.as_str(), "events"];
    if follow {
        let json = remote.json;
        return c
            .stream(&path, &[("stream", "true".to_string())], |e| {
                print_event(&e, json);
                Ok(())
            })
            .await;
    }
    let page = c.get(&path, &[("limit", limit.unwrap_or(20).to_string())]).await?;
    if remote.json {
        print_json(&page);
        return Ok(());
    }
    let mut events = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
    events.reverse(); // the server sends the newest first
    if page.get("has_more").and_then(Value::as_bool) == Some(true) {
        eprintln!("(older events left out: --limit N, up to 1000)");
    }
    for e in &events {
        print_event(e, false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batch_sizes_and_pairs() {
        assert_eq!(parse_batch_size("auto").unwrap(), json!("auto"));
        assert_eq!(parse_batch_size("8").unwrap(), json!(8));
        assert!(parse_batch_size("0").is_err() && parse_batch_size("big").is_err());
        assert_eq!(parse_pair("team=legal=x").unwrap(), ("team".into(), "legal=x".into()));
        assert!(parse_pair("=x").is_err() && parse_pair("x").is_err());
    }

    #[test]
    fn output_names_from_jobs_and_lists() {
        assert_eq!(output_name(&json!({"docraft": {"output_name": "a"}, "user_provided_suffix": "b"})), "a");
        assert_eq!(output_name(&json!({"docraft": null, "user_provided_suffix": "b"})), "b");
        assert_eq!(output_name(&json!({"docraft": null, "user_provided_suffix": null})), "-");
    }
}
