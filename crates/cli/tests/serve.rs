//! `docraft admin` and `docraft serve` as a user runs them: an organization and keys made
//! from the command line work against the server, which stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn docraft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_docraft")).args(args).output().unwrap()
}

#[test]
fn admin_commands_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = docraft(&["admin", "org", "create", "acme", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("dck_"), "{created}");
    assert_eq!(created["organization"]["name"], "acme");
    // The same name again is refused.
    assert!(!docraft(&["admin", "org", "create", "acme", "--data", data]).status.success());
    let out = docraft(&["admin", "key", "create", "--org", "acme", "--name", "ci", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = docraft(&["admin", "key", "list", "--org", "acme", "--data", data, "--json"]);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key), "a listing shows a key");
    let revoke_id = second["key"]["id"].as_str().unwrap();
    let out = docraft(&["admin", "key", "revoke", "--org", "acme", revoke_id, "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");

    let mut server = Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    let get = |path: &str, key: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(get("/v1/files", &key).starts_with("HTTP/1.1 200"));
    assert!(get("/v1/files", second["api_key"].as_str().unwrap()).starts_with("HTTP/1.1 401"));
    let term = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "docraft serve exited with {status} on SIGTERM");
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn request(addr: &str, method: &str, path: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
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
    // Chunked bodies: the JSON is one chunk here; drop the chunk-size lines.
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.lines().filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit())).collect::<Vec<_>>().join("\n")
    } else {
        body.to_string()
    };
    (status, body)
}

struct Serve {
    child: std::process::Child,
    addr: String,
}

impl Serve {
    fn start(data: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_docraft"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data", data])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child, addr }
    }

    fn json(&self, method: &str, path: &str, key: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, text) = request(&self.addr, method, path, key, "application/json", body.to_string().as_bytes());
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -9` of `docraft serve` mid-training: the next server takes the job up once its
/// lease runs out, from the last checkpoint, and finishes it with every step's metrics and
/// every checkpoint listed once.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn kill_9_mid_training_then_restart_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = docraft(&["admin", "org", "create", "acme", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();
    let flags = ["--workers", "1", "--train-threads", "1", "--lease-seconds", "2"];
    let server = Serve::start(data, &flags);

    let lines: String = (0..10)
        .map(|i| {
            serde_json::json!({"messages": [
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
    let (status, text) = request(&server.addr, "POST", "/v1/files", &key, &ctype, body.as_bytes());
    assert_eq!(status, 200, "{text}");
    let file = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"].as_str().unwrap().to_string();
    let job = server.json(
        "POST",
        "/v1/fine_tuning/jobs",
        &key,
        &serde_json::json!({"model": "smollm2-135m-instruct", "training_file": file,
            "hyperparameters": {"n_epochs": 2, "batch_size": 1, "max_steps": 14, "checkpoint_every": 3, "max_seq_len": 64}}),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let path = format!("/v1/fine_tuning/jobs/{id}");
    let wait = |server: &Serve, secs: u64, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let j = server.json("GET", &path, &key, &serde_json::Value::Null);
            if done(&j) {
                return j;
            }
            assert!(std::time::Instant::now() < deadline, "never got there: {j:#}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    // Past the first checkpoint (step 3) and into the steps after it.
    wait(&server, 300, &|j| j["docraft"]["step"].as_i64().unwrap_or(0) >= 5);
    drop(server); // SIGKILL: no checkpoint, no hand-back, the lease left running.

    let server = Serve::start(data, &flags);
    let done = wait(&server, 600, &|j| j["status"] == "succeeded" || j["status"] == "failed");
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let events = server.json("GET", &format!("{path}/events?limit=1000"), &key, &serde_json::Value::Null);
    let mut steps: Vec<i64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "metrics")
        .map(|e| e["data"]["step"].as_i64().unwrap())
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, (1..=14).collect::<Vec<_>>(), "metric steps missing or repeated");
    let resumed = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().starts_with("Resuming from the checkpoint at step"));
    assert_eq!(resumed.count(), 1, "{events:#}");
    let cks = server.json("GET", &format!("{path}/checkpoints?limit=100"), &key, &serde_json::Value::Null);
    let mut ck: Vec<i64> = cks["data"].as_array().unwrap().iter().map(|c| c["step_number"].as_i64().unwrap()).collect();
    ck.sort_unstable();
    assert_eq!(ck, [3, 6, 9, 12, 14], "checkpoints listed once each");
}
