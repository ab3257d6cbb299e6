//! A real server on 127.0.0.1:0 over a real SQLite database in a temporary directory, or over
//! a fresh database of a throwaway PostgreSQL ([`TestServer::start_pg`], [`pg`]); test flows
//! both backends run ([`flows`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod flows;
pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use docraft_server::{AppState, ServerConfig, admin, bind, serve_with};
use tokio::sync::oneshot;

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<docraft_server::Result<()>>>,
    pub http: reqwest::Client,
    /// The PostgreSQL the server's database is on ([`TestServer::start_pg`]); stopped last.
    pub pg: Option<pg::PgServer>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::restart(tempfile::tempdir().unwrap(), tune).await
    }

    /// A server over a fresh database of a throwaway PostgreSQL (needs scripts/setup.sh), with
    /// its data directory in a temporary directory as [`TestServer::start_with`] has it.
    pub async fn start_pg(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let pg = tokio::task::spawn_blocking(pg::PgServer::start).await.unwrap();
        let url = pg.url_for_new_db();
        let mut server = Self::restart(tempfile::tempdir().unwrap(), |c| {
            c.database_url = Some(url);
            tune(c);
        })
        .await;
        server.pg = Some(pg);
        server
    }

    /// A server over the data directory of an earlier one (`dir/data`).
    pub async fn restart(dir: tempfile::TempDir, tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::with_data_dir(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        tune(&mut config);
        let state = AppState::open(config.clone()).await.unwrap();
        let (listener, addr) = bind(config.listen).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Self { addr, dir, state, stop: Some(stop), task: Some(task), http: reqwest::Client::new(), pg: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data(&self) -> PathBuf {
        self.state.config().data_dir.clone()
    }

    /// A new organization and its first key.
    pub async fn org(&self, name: &str) -> (admin::Org, String) {
        let (org, key) = admin::create_org(self.state.db(), name).await.unwrap();
        (org, key.expose().to_string())
    }

    pub async fn upload(&self, key: &str, filename: &str, bytes: Vec<u8>, purpose: &str) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_string())
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string()));
        self.http.post(self.url("/v1/files")).bearer_auth(key).multipart(form).send().await.unwrap()
    }

    /// Rows in the files table (every organization).
    pub async fn file_rows(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM files").fetch_one(self.state.db().pool()).await.unwrap().get("n")
    }

    /// Every regular file under DATA/orgs (temporary ones included).
    pub fn stored_files(&self) -> Vec<PathBuf> {
        walk(&self.data().join("orgs"))
    }

    pub async fn stop(self) {
        drop(self.stop_keep().await);
    }

    /// Stops gracefully and keeps the directory, for [`TestServer::restart`].
    pub async fn stop_keep(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.dir
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `n` valid OpenAI chat records, one per line.
pub fn chat_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "system", "content": "You answer from the policy."},
                {"role": "user", "content": format!("How long is record {i} kept?")},
                {"role": "assistant", "content": format!("Record {i} is kept for {i} years.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

/// The JSON body of an error response, checked to be in OpenAI's shape.
pub async fn error_of(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "expected {status}");
    let body: serde_json::Value = response.json().await.unwrap();
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{body}");
    body
}

/// The registry's SmolLM2-135M, as `GET /v1/models` lists it (fetched by scripts/setup.sh).
pub const SMOLLM2: &str = "smollm2-135m-instruct";

/// Workers that poll and beat fast, so a test sees state changes quickly.
pub fn fast(c: &mut ServerConfig, workers: usize) {
    c.workers = workers;
    c.heartbeat = std::time::Duration::from_millis(200);
    c.poll = std::time::Duration::from_millis(200);
    c.train_threads = Some(1);
}

/// A server whose workers poll and beat fast, so a test sees state changes quickly.
pub async fn fast_server(workers: usize) -> TestServer {
    TestServer::start_with(|c| fast(c, workers)).await
}

/// A models directory with one (empty) registry GGUF: a base model named `tiny`, enough for
/// every route that does not train. Keep the directory while the server runs.
pub fn tiny_models() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tiny")).unwrap();
    std::fs::write(dir.path().join("tiny/tiny.gguf"), b"").unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// The JSON body of a response, checked to be a success.
pub async fn ok(r: reqwest::Response) -> serde_json::Value {
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// Polls a job (GET /v1/fine_tuning/jobs/{id}) until `done` holds, for at most `secs`.
pub async fn wait_job(
    server: &TestServer,
    key: &str,
    id: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let job: serde_json::Value = server
            .http
            .get(server.url(&format!("/v1/fine_tuning/jobs/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&job) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job never got there: {job:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
