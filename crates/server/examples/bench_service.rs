//! Latency of `docraft serve` under load while jobs train, and job throughput.
//!
//! ```text
//! cargo run --release -p docraft-server --example bench_service -- [SECONDS] [CLIENTS]
//! ```
//!
//! 1. Starts a server (SQLite, 2 workers) on a runtime of its own, creates an organization,
//!    and starts two long SmolLM2 jobs; waits until both train.
//! 2. CLIENTS (default 50) concurrent clients for SECONDS (default 60), each looping over
//!    `GET /v1/fine_tuning/jobs`, `GET /v1/fine_tuning/jobs/{id}/events` and `POST /v1/files`
//!    (a 1 MB fine-tune JSONL, validated on upload): p50/p95/p99/max latency and requests/s of
//!    each route.
//! 3. Cancels the long jobs, then submits 6 tiny jobs (2 steps each) and times them to the end:
//!    tiny jobs per minute with 2 workers.
//!
//! Needs the registry's SmolLM2 (`scripts/setup.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use docraft_server::{AppState, ServerConfig, admin, bind, serve_with};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const MODEL: &str = "smollm2-135m-instruct";

fn chat_lines(n: usize, pad: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"messages": [
                {"role": "system", "content": "You answer from the policy."},
                {"role": "user", "content": format!("How long is record {i} kept? {}", "context ".repeat(pad))},
                {"role": "assistant", "content": format!("Record {i} is kept for {i} years.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn upload(&self, name: &str, body: Vec<u8>) -> Result<String> {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "fine-tune")
            .part("file", reqwest::multipart::Part::bytes(body).file_name(name.to_string()));
        let r = self.http.post(format!("{}/v1/files", self.base)).bearer_auth(&self.key).multipart(form).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("upload: {status} {v}");
        }
        Ok(v["id"].as_str().context("file id")?.to_string())
    }

    async fn job(&self, body: &Value) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/v1/fine_tuning/jobs", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        let v: Value = r.json().await?;
        Ok(v["id"].as_str().with_context(|| format!("job: {v}"))?.to_string())
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await?;
        Ok(r.json().await?)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_lines)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).map_or(Ok(60), |s| s.parse())?;
    let clients: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let mut config = ServerConfig::with_data_dir(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse()?;
    config.workers = 2;
    // The server's runtime: its own threads, as a separate process would have.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (addr, key, stop) = server_rt.block_on(async {
        let state = AppState::open(config.clone()).await?;
        let (_, key) = admin::create_org(state.db(), "bench").await?;
        let (listener, addr) = bind(config.listen).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(listener, state, async move {
            let _ = stopped.await;
        }));
        anyhow::Ok((addr, key.expose().to_string(), stop))
    })?;
    let threads = config.threads_per_job();
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    client_rt.block_on(async move {
        let api = Arc::new(Api { http: reqwest::Client::new(), base: format!("http://{addr}"), key });
        let train = api.upload("train.jsonl", chat_lines(10, 0).into_bytes()).await?;
        let long = json!({"model": MODEL, "training_file": train,
                          "hyperparameters": {"n_epochs": 10, "batch_size": 1, "max_steps": 100000, "max_seq_len": 64}});
        let jobs = [api.job(&long).await?, api.job(&long).await?];
        let t0 = Instant::now();
        loop {
            let mut running = 0;
            for j in &jobs {
                let v = api.get(&format!("/v1/fine_tuning/jobs/{j}")).await?;
                if v["docraft"]["step"].as_i64().unwrap_or(0) >= 1 {
                    running += 1;
                }
            }
            if running == 2 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("the two jobs did not start training");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("two jobs training ({threads} threads each, 2 workers); {clients} clients for {seconds} s");
        let one_mb = {
            let mut s = chat_lines(600, 200);
            while s.len() < 1 << 20 {
                s += &chat_lines(50, 200);
            }
            s.into_bytes()
        };
        println!("upload body: {} bytes", one_mb.len());
        let one_mb = Arc::new(one_mb);
        let lat: Arc<Mutex<[Vec<f64>; 3]>> = Arc::new(Mutex::new([Vec::new(), Vec::new(), Vec::new()]));
        let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (api, lat, errors, one_mb, job) = (api.clone(), lat.clone(), errors.clone(), one_mb.clone(), jobs[c % 2].clone());
            tasks.push(tokio::spawn(async move {
                let mut op = c % 3;
                while Instant::now() < end {
                    let t = Instant::now();
                    let ok = match op {
                        0 => api.get("/v1/fine_tuning/jobs?limit=20").await.map(|v| v["data"].is_array()).unwrap_or(false),
                        1 => api
                            .get(&format!("/v1/fine_tuning/jobs/{job}/events?limit=20"))
                            .await
                            .map(|v| v["data"].is_array())
                            .unwrap_or(false),
                        _ => api.upload("load.jsonl", one_mb.as_ref().clone()).await.is_ok(),
                    };
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    if ok {
                        lat.lock().await[op].push(ms);
                    } else {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    op = (op + 1) % 3;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let mut lat = lat.lock().await.clone();
        println!("| route | requests | req/s | p50 ms | p95 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let names = ["GET /v1/fine_tuning/jobs", "GET /v1/fine_tuning/jobs/{id}/events", "POST /v1/files (1 MB)"];
        let mut total = 0;
        for (name, l) in names.iter().zip(lat.iter_mut()) {
            l.sort_by(f64::total_cmp);
            total += l.len();
            #[allow(clippy::cast_precision_loss)]
            let rps = l.len() as f64 / seconds as f64;
            println!(
                "| {name} | {} | {rps:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
                l.len(),
                percentile(l, 50.0),
                percentile(l, 95.0),
                percentile(l, 99.0),
                l.last().copied().unwrap_or(f64::NAN)
            );
        }
        #[allow(clippy::cast_precision_loss)]
        let all_rps = total as f64 / seconds as f64;
        println!("all routes: {all_rps:.1} requests/s, {} errors", errors.load(std::sync::atomic::Ordering::Relaxed));
        let steps: Vec<i64> = {
            let mut out = Vec::new();
            for j in &jobs {
                out.push(api.get(&format!("/v1/fine_tuning/jobs/{j}")).await?["docraft"]["step"].as_i64().unwrap_or(0));
            }
            out
        };
        println!("steps the two jobs trained meanwhile: {steps:?}");
        for j in &jobs {
            api.http.post(format!("{}/v1/fine_tuning/jobs/{j}/cancel", api.base)).bearer_auth(&api.key).send().await?;
        }
        for j in &jobs {
            while api.get(&format!("/v1/fine_tuning/jobs/{j}")).await?["status"] != "cancelled" {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        let tiny = json!({"model": MODEL, "training_file": train, "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
        let n = 6;
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(api.job(&tiny).await?);
        }
        for j in &ids {
            loop {
                let s = api.get(&format!("/v1/fine_tuning/jobs/{j}")).await?["status"].as_str().unwrap_or("").to_string();
                if s == "succeeded" {
                    break;
                }
                if s == "failed" || s == "cancelled" {
                    bail!("tiny job {j} ended {s}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let per_min = n as f64 / secs * 60.0;
        println!("{n} tiny jobs (10 examples, 2 steps, validation + adapter + results) in {secs:.1} s: {per_min:.1} jobs/minute");
        anyhow::Ok(())
    })?;
    let _ = stop.send(());
    server_rt.shutdown_timeout(Duration::from_secs(30));
    Ok(())
}
