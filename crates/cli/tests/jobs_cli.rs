//! `docraft jobs` and `docraft hub` as a user runs them, against a real `docraft serve`:
//! uploads, job control, events (listed and followed), the hub, errors; and, with the model
//! that scripts/setup.sh fetches, a job that trains and an adapter downloaded and extracted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)] // the helpers this file does not use
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::s;
use serde_json::Value;

/// Variables the commands read; every call starts without them, so the developer's own
/// environment does not leak in.
const REMOTE_VARS: [&str; 2] = ["DOCRAFT_SERVER", "DOCRAFT_API_KEY"];

/// A running `docraft serve`, killed when dropped (also when a test fails).
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_docraft"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data", s(data)])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Drains the server's stderr (a full pipe would stall it) and finds its address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Self { child, url: String::new(), log };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.url = format!("http://{addr}"),
            Err(_) => panic!("docraft serve did not say where it listens:\n{}", server.log()),
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A raw `GET` with the key (for what the CLI has no command for); the JSON body.
    fn get(&self, path: &str, key: &str) -> Value {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_docraft"));
    c.args(args);
    for v in REMOTE_VARS {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c
}

/// Runs `docraft ARGS` with only the variables of `env` among [`REMOTE_VARS`].
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

/// Asserts success and parses stdout as one JSON document.
fn json(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out}"))
}

/// Asserts exit status 1 and returns stderr.
fn fails(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    stderr(o)
}

/// An organization made with `docraft admin org create`; its key.
fn org(data: &Path, name: &str) -> String {
    let created = json(&run(&["admin", "org", "create", name, "--data", s(data), "--json"], &[]));
    created["api_key"].as_str().unwrap().to_string()
}

/// `n` valid OpenAI chat lines.
fn write_chat(path: &Path, n: usize) {
    let lines: String = (0..n)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "system", "content": "You answer from the policy."},
                {"role": "user", "content": format!("How long is record {i} kept?")},
                {"role": "assistant", "content": format!("Record {i} is kept for {i} years.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// `args` then `flags`.
fn with<'a>(flags: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    [args, flags].concat()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn jobs_and_hub_commands_against_a_server_without_training() {
    let dir = tempfile::tempdir().unwrap();
    let (data, models) = (dir.path().join("data"), dir.path().join("models"));
    std::fs::create_dir_all(models.join("tiny")).unwrap();
    std::fs::write(models.join("tiny/tiny.gguf"), b"").unwrap();
    let key = org(&data, "acme");
    let server = Server::start(&data, &["--workers", "0", "--models-dir", s(&models)]);
    let url = server.url.clone();
    let train = dir.path().join("train.jsonl");
    write_chat(&train, 10);
    let flags = ["--server", url.as_str(), "--api-key", key.as_str()];
    let env = [("DOCRAFT_SERVER", url.as_str()), ("DOCRAFT_API_KEY", key.as_str())];

    // Create: the dataset is uploaded first; only the settings given are sent.
    let job = json(&run(
        &with(
            &flags,
            &[
                "jobs",
                "create",
                "--base-model",
                "tiny",
                "--dataset",
                s(&train),
                "--output-model",
                "policy",
                "--epochs",
                "2",
                "--lora-rank",
                "8",
                "--metadata",
                "team=legal",
                "--json",
            ],
        ),
        &[],
    ));
    assert_eq!(job["status"], "validating_files", "{job}");
    assert_eq!(job["hyperparameters"]["n_epochs"], 2, "{job}");
    assert_eq!(job["hyperparameters"]["lora_rank"], 8, "{job}");
    assert_eq!(job["model"], "tiny");
    assert_eq!(job["user_provided_suffix"], "policy");
    assert_eq!(job["metadata"]["team"], "legal");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ftjob-"), "{id}");
    let file_id = job["training_file"].as_str().unwrap().to_string();
    let files = server.get("/v1/files", &key);
    assert_eq!(ids(&files), vec![file_id.clone()], "the dataset was uploaded once: {files}");
    assert_eq!(files["data"][0]["filename"], "train.jsonl");

    // A file id is used as it is (nothing uploaded); the human output names the job.
    let out = ok(&run(
        &[
            "jobs",
            "create",
            "--base-model",
            "tiny",
            "--dataset",
            &file_id,
            "--output-model",
            "second",
            "--batch-size",
            "auto",
        ],
        &env,
    ));
    let second = out.split_whitespace().nth(2).unwrap().to_string();
    assert!(second.starts_with("ftjob-") && out.contains("(second): validating_files"), "{out}");
    assert_eq!(server.get("/v1/files", &key)["data"].as_array().unwrap().len(), 1);

    // List, as JSON and as a table (whose output names come from the suffix).
    let list = json(&run(&["jobs", "list", "--json"], &env));
    // (Both were created within the same second: the server's order between them is its ids'.)
    let mut listed = ids(&list);
    listed.sort();
    let mut both = vec![id.clone(), second.clone()];
    both.sort();
    assert_eq!(listed, both, "{list}");
    let table = ok(&run(&["jobs", "list"], &env));
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("validating_files") && row.contains("tiny") && row.contains("policy"), "{table}");
    let legal = json(&run(&["jobs", "list", "--metadata", "team=legal", "--json"], &env));
    assert_eq!(ids(&legal), vec![id.clone()], "{legal}");

    // Get by output name.
    let got = json(&run(&with(&flags, &["jobs", "get", "policy", "--json"]), &[]));
    assert_eq!(got["id"], id.as_str(), "{got}");
    assert_eq!(got["docraft"]["output_name"], "policy", "{got}");
    let shown = ok(&run(&["jobs", "get", &id], &env));
    assert!(shown.contains("validating_files") && shown.contains("policy"), "{shown}");

    // Pause, resume, cancel.
    let paused = json(&run(&with(&flags, &["jobs", "pause", &id, "--json"]), &[]));
    assert_eq!(paused["status"], "paused", "{paused}");
    let out = ok(&run(&["jobs", "resume", &id], &env));
    assert_eq!(out.trim(), format!("{id}: queued"));
    let cancelled = json(&run(&["jobs", "cancel", &id, "--json"], &env));
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // By output name (the hub's routes).
    let out = ok(&run(&["jobs", "pause", "second"], &env));
    assert_eq!(out.trim(), format!("{second}: paused"));

    // Events, oldest first; followed, the stream of an ended job ends by itself.
    let events = ok(&run(&["jobs", "events", &id], &env));
    let created = events.find("Created fine-tuning job").unwrap_or_else(|| panic!("{events}"));
    let cancel = events.find("Fine-tuning job cancelled").unwrap_or_else(|| panic!("{events}"));
    assert!(created < cancel, "oldest first: {events}");
    assert_eq!(events.lines().count(), 4, "created, paused, resumed, cancelled: {events}");
    let page = json(&run(&["jobs", "events", &id, "--limit", "1", "--json"], &env));
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["data"][0]["message"], "Fine-tuning job cancelled", "newest first as the server sends it");
    let mut follow =
        command(&["jobs", "events", "policy", "--follow", "--json"], &env).stdout(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while follow.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "--follow did not end for an ended job");
        std::thread::sleep(Duration::from_millis(100));
    }
    let followed = follow.wait_with_output().unwrap();
    let lines: Vec<Value> = ok(&followed).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let messages: Vec<&str> = lines.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(messages[0].starts_with("Created fine-tuning job") && messages[3] == "Fine-tuning job cancelled");

    // The hub.
    let hub = json(&run(&["hub", "models", "list", "--json"], &env));
    let tiny = hub["data"].as_array().unwrap().iter().find(|m| m["name"] == "tiny").unwrap_or_else(|| panic!("{hub}"));
    assert_eq!(tiny["type"], "base");
    assert!(ok(&run(&["hub", "models", "list"], &env)).lines().any(|l| l.starts_with("tiny") && l.contains("base")));
    assert_eq!(json(&run(&["hub", "models", "get", "tiny", "--json"], &env))["type"], "base");
    let adapters = json(&run(&["hub", "adapters", "list", "--json"], &env));
    assert_eq!(adapters["data"], serde_json::json!([]), "{adapters}");

    // Errors.
    let e = fails(&run(&["jobs", "list"], &[]));
    assert!(e.contains("DOCRAFT_API_KEY"), "{e}");
    let e = fails(&run(&with(&flags, &["jobs", "get", "ftjob-doesnotexist000000000000"]), &[]));
    assert!(e.contains("error (HTTP 404)") && e.contains("ftjob-doesnotexist000000000000"), "{e}");
    let e =
        fails(&run(&["jobs", "create", "--base-model", "nope", "--dataset", s(&train), "--output-model", "x"], &env));
    assert!(e.contains("error (HTTP 400)") && e.contains("\"nope\" does not exist"), "{e}");
    assert_eq!(
        server.get("/v1/files", &key)["data"].as_array().unwrap().len(),
        1,
        "the upload for a refused job is deleted"
    );
    let e = fails(&run(&["jobs", "list", "--api-key", "dck_notakey"], &[("DOCRAFT_SERVER", url.as_str())]));
    assert!(e.contains("HTTP 401"), "{e}");
    let e = fails(&run(&["hub", "models", "delete", "tiny"], &env));
    assert!(e.contains("error (HTTP 403)"), "{e}");
    let e = fails(&run(
        &["jobs", "create", "--base-model", "tiny", "--dataset", "missing.jsonl", "--output-model", "x"],
        &env,
    ));
    assert!(e.contains("missing.jsonl"), "{e}");
    let e = fails(&run(&["hub", "adapters", "list", "--server", "http://127.0.0.1:1", "--api-key", &key], &[]));
    assert!(e.contains("http://127.0.0.1:1") && e.contains("docraft serve"), "{e}");
    drop(server);
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_job_trains_and_its_adapter_downloads() {
    common::require_models();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = org(&data, "acme");
    let server = Server::start(&data, &["--workers", "1"]);
    let env = [("DOCRAFT_SERVER", server.url.as_str()), ("DOCRAFT_API_KEY", key.as_str())];
    let train = dir.path().join("train.jsonl");
    write_chat(&train, 10);
    let job = json(&run(
        &[
            "jobs",
            "create",
            "--base-model",
            "smollm2-135m-instruct",
            "--dataset",
            s(&train),
            "--output-model",
            "policy",
            "--epochs",
            "1",
            "--batch-size",
            "5",
            "--json",
        ],
        &env,
    ));
    let id = job["id"].as_str().unwrap().to_string();
    // Followed from the start: it prints the events as the job makes them and ends with it.
    let follow = Guard(command(&["jobs", "events", &id, "--follow"], &env).stdout(Stdio::piped()).spawn().unwrap());

    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let j = json(&run(&["jobs", "get", &id, "--json"], &env));
        match j["status"].as_str().unwrap() {
            "succeeded" => break j,
            "failed" | "cancelled" => panic!("the job ended: {j}\n{}", server.log()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the job is still {}", j["status"]);
        std::thread::sleep(Duration::from_millis(500));
    };
    let model = done["fine_tuned_model"].as_str().unwrap().to_string();
    assert!(model.starts_with("ft:smollm2-135m-instruct:acme:policy:"), "{model}");
    assert_eq!(done["docraft"]["step"], 2, "{done}");
    let shown = ok(&run(&["jobs", "get", "policy"], &env));
    assert!(shown.contains(&model) && shown.contains("2 / 2") && shown.contains("train_loss"), "{shown}");

    let mut follow = follow;
    let deadline = Instant::now() + Duration::from_secs(60);
    while follow.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "--follow did not end with the job");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut followed = String::new();
    follow.0.stdout.take().unwrap().read_to_string(&mut followed).unwrap();
    assert!(follow.0.wait().unwrap().success(), "{followed}");
    assert!(followed.contains("successfully completed"), "{followed}");
    assert!(followed.find("Created fine-tuning job").unwrap() < followed.find("successfully completed").unwrap());

    let adapters = json(&run(&["hub", "adapters", "list", "--json"], &env));
    assert!(adapters["data"].as_array().unwrap().iter().any(|a| a["name"] == "policy"), "{adapters}");
    let out_dir = dir.path().join("downloads");
    let out = ok(&run(&["hub", "adapters", "get", "policy", "--download", s(&out_dir)], &env));
    let zip: PathBuf = out_dir.join("policy.zip");
    assert!(std::fs::read(&zip).unwrap().starts_with(b"PK"), "{}", zip.display());
    let config: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("policy/adapter_config.json")).unwrap()).unwrap();
    assert!(config.is_object(), "{config}");
    let weights = std::fs::metadata(out_dir.join("policy/adapter_model.safetensors")).unwrap();
    assert!(weights.len() > 1000, "{weights:?}");
    assert!(out.contains(s(&zip)) && out.contains("adapter_model.safetensors"), "{out}");

    let hub = json(&run(&["hub", "models", "list", "--json"], &env));
    assert!(ids(&hub).contains(&model), "{hub}");
    let deleted = json(&run(&["hub", "models", "delete", &model, "--json"], &env));
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let hub = json(&run(&["hub", "models", "list", "--json"], &env));
    assert!(!ids(&hub).contains(&model), "{hub}");
    assert!(!ok(&run(&["hub", "models", "list"], &env)).contains(&model));
    drop(server);
}
