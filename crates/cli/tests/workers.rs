//! Scale-out on PostgreSQL as a user runs it: two `docraft serve --workers 0` processes answer
//! the API and two `docraft worker` processes train the jobs, all on one database (a throwaway
//! PostgreSQL, the server tests' harness) and one data directory. Six jobs go in through both
//! APIs; `kill -9` of the worker training one hands it to the other once the lease runs out,
//! which finishes it from the last checkpoint: every job succeeds with every step's metrics
//! once, no event twice, and its checkpoints in order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../server/tests/common/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn request(addr: &str, method: &str, path: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    let text = String::from_utf8_lossy(&r).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    // Chunked bodies: drop the chunk-size lines.
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.lines().filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit())).collect::<Vec<_>>().join("\n")
    } else {
        body.to_string()
    };
    (status, body)
}

/// A child process killed (SIGKILL) when dropped, its stderr in a file.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let term = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(term.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(dir: &Path, db: &str, name: &str) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let data = dir.join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(["worker", "--database", db, "--data", common::s(&data)])
        .args(["--concurrency", "1", "--train-threads", "1", "--lease-seconds", "2"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}

struct Api {
    proc: Proc,
    addr: String,
    key: String,
}

impl Api {
    fn json(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, text) =
            request(&self.addr, method, path, &self.key, "application/json", body.to_string().as_bytes());
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn get(&self, path: &str) -> Value {
        self.json("GET", path, &Value::Null)
    }

    fn wait(&self, id: &str, secs: u64, done: &dyn Fn(&Value) -> bool, logs: &dyn Fn() -> String) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.get(&format!("/v1/fine_tuning/jobs/{id}"));
            if done(&j) {
                return j;
            }
            assert!(Instant::now() < deadline, "never got there: {j:#}\n{}", logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn events(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/v1/fine_tuning/jobs/{id}/events?limit=1000"))["data"].as_array().unwrap().clone()
    }
}

/// The workers that took a job, in the order they did (`HOST/wINDEX-PID`).
fn workers_of(events: &[Value]) -> Vec<String> {
    let mut w: Vec<String> = events
        .iter()
        .rev()
        .filter_map(|e| e["data"]["worker"].as_str().filter(|_| e["message"].as_str().unwrap().starts_with("Worker ")))
        .map(str::to_string)
        .collect();
    w.dedup();
    w
}

fn pid_of(worker: &str) -> u32 {
    worker.rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn two_apis_and_two_workers_share_the_queue_and_survive_kill_9() {
    common::require_models();
    let pg = pg::PgServer::start();
    let db = pg.url_for_new_db();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = common::s(&data);
    let out =
        common::docraft(&["admin", "org", "create", "acme", "--data", data, "--database", &db, "--json"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();

    // Two API-only processes and two workers on one database and one data directory.
    let apis = [api(dir.path(), &db, data, &key, "api1"), api(dir.path(), &db, data, &key, "api2")];
    let mut workers = vec![Some(worker(dir.path(), &db, "w1")), Some(worker(dir.path(), &db, "w2"))];
    let pids: Vec<u32> = workers.iter().flatten().map(Proc::pid).collect();
    let logs = |workers: &[Option<Proc>]| {
        workers.iter().flatten().map(|w| format!("--- worker {}:\n{}", w.pid(), w.log())).collect::<String>()
    };

    let lines: String = (0..10)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("How long is record {i} kept?")},
                {"role": "assistant", "content": format!("Record {i} is kept for {i} years.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let boundary = "docraftboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{lines}\r\n--{boundary}--\r\n"
    );
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let (status, text) = request(&apis[0].addr, "POST", "/v1/files", &apis[0].key, &ctype, body.as_bytes());
    assert_eq!(status, 200, "{text}");
    let file = serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_string();

    // Six jobs through both APIs: four short ones (2 steps) and two of 14 steps with a
    // checkpoint every 3, submitted long ones first so both workers start on one.
    let started = Instant::now();
    let short = json!({"model": "smollm2-135m-instruct", "training_file": file,
                       "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
    let long = json!({"model": "smollm2-135m-instruct", "training_file": file,
        "hyperparameters": {"n_epochs": 2, "batch_size": 1, "max_steps": 14, "checkpoint_every": 3, "max_seq_len": 64}});
    let bodies = [&long, &long, &short, &short, &short, &short];
    let ids: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| apis[i % 2].json("POST", "/v1/fine_tuning/jobs", b)["id"].as_str().unwrap().to_string())
        .collect();
    // Each API lists the jobs the other one created.
    for a in &apis {
        let listed = a.get("/v1/fine_tuning/jobs?limit=100");
        let listed: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
        assert!(ids.iter().all(|id| listed.contains(&id.as_str())), "{listed:?}");
    }

    // kill -9 of the worker training the first long job, past its first checkpoint: the other
    // worker takes it once the lease runs out and finishes it from the checkpoint.
    let step = |j: &Value| j["docraft"]["step"].as_i64().unwrap_or(0);
    apis[1].wait(&ids[0], 300, &|j| step(j) >= 5, &|| logs(&workers));
    let first = workers_of(&apis[1].events(&ids[0]));
    assert_eq!(first.len(), 1, "{first:?}");
    let victim = workers.iter().position(|w| w.as_ref().is_some_and(|w| w.pid() == pid_of(&first[0]))).unwrap();
    drop(workers[victim].take()); // SIGKILL: no checkpoint, no hand-back, the lease left running.
    let killed_at = Instant::now();
    let survivor = workers.iter().flatten().next().unwrap().pid();

    let finished = |j: &Value| j["status"] == "succeeded" || j["status"] == "failed";
    for (i, id) in ids.iter().enumerate() {
        let api = &apis[(i + 1) % 2];
        let done = api.wait(id, 900, &finished, &|| logs(&workers));
        assert_eq!(done["status"], "succeeded", "{done:#}\n{}", logs(&workers));
        let events = api.events(id);
        let ran_on = workers_of(&events);
        assert!(
            ran_on.iter().all(|w| pids.contains(&pid_of(w))),
            "{id} ran on {ran_on:?}, not on a worker of {pids:?}"
        );
        let total = done["docraft"]["total_steps"].as_i64().unwrap();
        let mut steps: Vec<i64> =
            events.iter().filter(|e| e["type"] == "metrics").map(|e| e["data"]["step"].as_i64().unwrap()).collect();
        steps.sort_unstable();
        assert_eq!(steps, (1..=total).collect::<Vec<_>>(), "{id}: metric steps missing or repeated");
        let ids_of_events: std::collections::HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids_of_events.len(), events.len(), "{id}: an event row twice");
        let cks = api.get(&format!("/v1/fine_tuning/jobs/{id}/checkpoints?limit=100"));
        let mut ck: Vec<i64> =
            cks["data"].as_array().unwrap().iter().map(|c| c["step_number"].as_i64().unwrap()).collect();
        ck.sort_unstable();
        if i < 2 {
            assert_eq!(total, 14);
            assert_eq!(ck, [3, 6, 9, 12, 14], "{id}: checkpoints listed once each");
        } else {
            assert_eq!(ck.last(), Some(&total), "{id}: {ck:?}");
            assert!(ck.windows(2).all(|w| w[0] < w[1]), "{id}: {ck:?}");
        }
        if i == 0 {
            assert_eq!(ran_on.len(), 2, "{ran_on:?}");
            assert_eq!((pid_of(&ran_on[0]), pid_of(&ran_on[1])), (pids[victim], survivor), "{ran_on:?}");
            let resumed = events
                .iter()
                .filter(|e| e["message"].as_str().unwrap().starts_with("Resuming from the checkpoint at step"));
            assert_eq!(resumed.count(), 1, "{events:#?}");
            eprintln!("taken over and finished {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
        }
    }
    eprintln!("six jobs in {:.1} s", started.elapsed().as_secs_f64());

    // SIGTERM: the idle worker and the APIs stop cleanly.
    let status = workers.into_iter().flatten().next().unwrap().terminate();
    assert!(status.success(), "docraft worker exited with {status} on SIGTERM");
    for a in apis {
        let log = a.proc.log();
        let status = a.proc.terminate();
        assert!(status.success(), "docraft serve exited with {status} on SIGTERM: {log}");
    }
}

/// `docraft serve` answering the API only (no workers of any kind), its stderr in NAME.log.
fn api(dir: &Path, db: &str, data: &str, key: &str, name: &str) -> Api {
    let mut child = Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--document-workers", "0"])
        .args(["--dataset-workers", "0", "--data", data, "--database", db])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("0 workers") && line.contains("Postgres"), "{line}");
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    let log = dir.join(format!("{name}.log"));
    let mut sink = std::fs::File::create(&log).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut sink));
    Api { proc: Proc { child, log }, addr, key: key.to_string() }
}
