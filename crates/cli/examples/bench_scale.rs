//! Scale-out on PostgreSQL (issue 18): job throughput with 1 and 2 `docraft worker` processes,
//! and API latency with 1 and 2 `docraft serve` API-only processes under the same load.
//!
//! ```text
//! cargo build -p docraft-cli      # the docraft binary the example runs (or set DOCRAFT_BIN)
//! cargo run -p docraft-cli --example bench_scale -- [SECONDS] [CLIENTS] [JOBS]
//! ```
//!
//! Everything runs as real processes on one throwaway PostgreSQL 18 + pgvector (the server
//! tests' harness), each phase on a fresh database and a fresh data directory:
//!
//! 1. Jobs per minute: one API process (`docraft serve --workers 0 --document-workers 0
//!    --dataset-workers 0`) and 1, then 2, `docraft worker --concurrency 1 --train-threads 1`
//!    processes; JOBS (default 8) tiny SmolLM2 jobs (10 chat examples, `n_epochs` 1, `batch_size`
//!    5: 2 steps each) submitted one after another, timed from the first submission until every
//!    one has succeeded.
//! 2. API latency: 1, then 2, API processes and 2 workers training two long jobs meanwhile;
//!    CLIENTS (default 50) concurrent clients, split evenly across the API processes, for SECONDS
//!    (default 60), each looping over `GET /v1/fine_tuning/jobs`,
//!    `GET /v1/fine_tuning/jobs/{id}/events` and `POST /v1/files` (a 1 MB fine-tune JSONL,
//!    validated on upload): p50/p95/p99/max and requests/s per route, errors counted.
//!
//! Each phase also reports where the machine's CPU time went (this process's clients, the API
//! processes, the workers, PostgreSQL, and everything else on the machine), from `/proc`.
//!
//! The uploads of phase 2 come to gigabytes a minute: a janitor thread deletes each uploaded load
//! file from the data directory a couple of seconds after it was stored (its row stays; nothing
//! reads it again), so that the disk does not fill up.
//!
//! The binary: `DOCRAFT_BIN`, else the `docraft` of the same profile as this example
//! (`target/<profile>/docraft`). Needs scripts/setup.sh (PostgreSQL, SmolLM2). Every child
//! process is killed when the example ends, on errors too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "../../server/tests/common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use docraft_server::client::Client;
use serde_json::{Value, json};

const MODEL: &str = "smollm2-135m-instruct";

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process, killed (SIGKILL) and reaped when dropped; its stderr in a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `docraft` binary: `DOCRAFT_BIN`, else `target/<profile>/docraft` beside this example.
fn docraft_bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("DOCRAFT_BIN") {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/bench_scale(-HASH)
    let profile_dir = exe.parent().and_then(Path::parent).context("where the example runs from")?;
    let bin = profile_dir.join("docraft");
    if !bin.is_file() {
        bail!("no {}: build it (cargo build -p docraft-cli, same profile) or set DOCRAFT_BIN", bin.display());
    }
    Ok(bin)
}

/// An API-only `docraft serve` and its address.
struct Api {
    proc: Proc,
    base: String,
}

/// One phase's processes on one fresh database and data directory.
struct Cluster {
    // Dropped in this order: the processes before their data directory goes.
    apis: Vec<Api>,
    workers: Vec<Proc>,
    key: String,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(bin: &Path, pg: &pg::PgServer, n_apis: usize, n_workers: usize) -> Result<Self> {
        let db = pg.url_for_new_db();
        // In the system temp dir, on disk, as bench_service's data directory.
        let dir = tempfile::Builder::new().prefix("docraft-bench-scale-").tempdir()?;
        let data = dir.path().join("data");
        let data_s = data.to_str().context("a UTF-8 temp path")?.to_string();
        let out = Command::new(bin)
            .args(["admin", "org", "create", "acme", "--data", &data_s, "--database", &db, "--json"])
            .output()?;
        if !out.status.success() {
            bail!("docraft admin org create: {}", String::from_utf8_lossy(&out.stderr));
        }
        let key = serde_json::from_slice::<Value>(&out.stdout)?["api_key"].as_str().context("api_key")?.to_string();
        let mut cluster = Self { apis: Vec::new(), workers: Vec::new(), key, data, dir };
        for i in 0..n_apis {
            let log = cluster.dir.path().join(format!("api{i}.log"));
            let mut child = Command::new(bin)
                .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--document-workers", "0"])
                .args(["--dataset-workers", "0", "--data", &data_s, "--database", &db])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let mut stderr = BufReader::new(child.stderr.take().context("serve's stderr")?);
            let proc = Proc { child, log: log.clone() };
            let mut line = String::new();
            stderr.read_line(&mut line)?;
            let Some(addr) = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()) else {
                bail!("docraft serve did not start: {line}");
            };
            let base = format!("http://{addr}");
            let mut sink = std::fs::File::create(&log)?;
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut sink));
            cluster.apis.push(Api { proc, base });
        }
        for i in 0..n_workers {
            let log = cluster.dir.path().join(format!("worker{i}.log"));
            let child = Command::new(bin)
                .args(["worker", "--database", &db, "--data", &data_s, "--concurrency", "1", "--train-threads", "1"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()?;
            cluster.workers.push(Proc { child, log });
        }
        Ok(cluster)
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.apis.iter().enumerate() {
            s += &format!("--- api{i} (pid {}):\n{}\n", a.proc.pid(), a.proc.log_tail());
        }
        for (i, w) in self.workers.iter().enumerate() {
            s += &format!("--- worker{i} (pid {}):\n{}\n", w.pid(), w.log_tail());
        }
        s
    }

    fn client(&self, i: usize) -> Result<Client> {
        Ok(Client::new(&self.apis[i].base, Some(&self.key))?)
    }

    /// A file `name` holding `bytes` in the phase's temporary directory (outside the data
    /// directory).
    fn file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: the server's own client (`docraft_server::client`)

/// The query `?limit=N`.
fn limit(n: u32) -> [(&'static str, String); 1] {
    [("limit", n.to_string())]
}

/// Uploads the fine-tune JSONL at `path`; its file id.
async fn upload(api: &Client, path: &Path) -> Result<String> {
    let v = api.upload(path, "fine-tune").await?;
    Ok(v["id"].as_str().with_context(|| format!("file id: {v}"))?.to_string())
}

/// Creates a fine-tuning job; its id.
async fn create_job(api: &Client, body: &Value) -> Result<String> {
    let v = api.post(&["v1", "fine_tuning", "jobs"], Some(body)).await?;
    Ok(v["id"].as_str().with_context(|| format!("job: {v}"))?.to_string())
}

/// A job's object.
async fn job(api: &Client, id: &str) -> Result<Value> {
    Ok(api.get(&["v1", "fine_tuning", "jobs", id], &[]).await?)
}

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

/// The ~1 MB fine-tune JSONL the load clients upload (as bench_service's).
fn one_mb() -> Vec<u8> {
    let mut s = chat_lines(600, 200);
    while s.len() < 1 << 20 {
        s += &chat_lines(50, 200);
    }
    s.into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (ppid, utime + stime, cutime + cstime) of a process, in clock ticks.
fn proc_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let n = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((u32::try_from(n(1)?).ok()?, n(11)? + n(12)?, n(13)? + n(14)?))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The postmaster listening on `port` (its command line has `-p PORT`).
fn postmaster(port: u16) -> Option<u32> {
    let port = port.to_string();
    all_pids().into_iter().find(|pid| {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"postgres"))
            && args.windows(2).any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
    })
}

/// CPU ticks so far: the machine's busy ticks, and each group of processes'.
#[derive(Clone, Copy, Default)]
struct CpuSnap {
    busy: u64,
    clients: u64,
    apis: u64,
    workers: u64,
    postgres: u64,
}

fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

fn snap(cluster: &Cluster, postmaster: Option<u32>) -> CpuSnap {
    let own = |pid: u32| proc_stat(pid).map_or(0, |(_, t, c)| t + c);
    let postgres = postmaster.map_or(0, |pm| {
        own(pm)
            + all_pids()
                .into_iter()
                .filter_map(|p| proc_stat(p).filter(|(ppid, _, _)| *ppid == pm).map(|(_, t, c)| t + c))
                .sum::<u64>()
    });
    CpuSnap {
        busy: machine_busy(),
        clients: proc_stat(std::process::id()).map_or(0, |(_, t, _)| t),
        apis: cluster.apis.iter().map(|a| own(a.proc.pid())).sum(),
        workers: cluster.workers.iter().map(|w| own(w.pid())).sum(),
        postgres,
    }
}

/// Each group's share of the machine's CPU capacity between two snapshots, as text.
fn cpu_report(a: CpuSnap, b: CpuSnap, wall: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    let capacity = wall.as_secs_f64() * clk_tck() * cores;
    let pct = |t: u64| 100.0 * t as f64 / capacity;
    let ours = (b.clients - a.clients) + (b.apis - a.apis) + (b.workers - a.workers) + (b.postgres - a.postgres);
    let busy = b.busy - a.busy;
    format!(
        "CPU, share of {cores} cores over {:.0} s: clients (this process) {:.0}%, API processes {:.0}%, \
         workers {:.0}%, PostgreSQL {:.0}%, other processes {:.0}%, idle {:.0}%",
        wall.as_secs_f64(),
        pct(b.clients - a.clients),
        pct(b.apis - a.apis),
        pct(b.workers - a.workers),
        pct(b.postgres - a.postgres),
        pct(busy.saturating_sub(ours)),
        (100.0 - pct(busy.max(ours))).max(0.0),
    )
}

// ---------------------------------------------------------------------------------------------
// Janitor: deletes uploaded load files a little after they were stored.

struct Janitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Janitor {
    fn start(data: PathBuf, keep: HashSet<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut deleted = 0;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let Ok(orgs) = std::fs::read_dir(data.join("orgs")) else { continue };
                for org in orgs.flatten() {
                    let Ok(files) = std::fs::read_dir(org.path().join("files")) else { continue };
                    for f in files.flatten() {
                        let name = f.file_name().to_string_lossy().to_string();
                        let old = f
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| SystemTime::now().duration_since(t).ok())
                            .is_some_and(|age| age > Duration::from_secs(2));
                        if name.starts_with("file-")
                            && !keep.contains(&name)
                            && old
                            && std::fs::remove_file(f.path()).is_ok()
                        {
                            deleted += 1;
                        }
                    }
                }
            }
            deleted
        });
        Self { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Phases

/// The workers that took each job (`Worker HOST/wN-PID took the job` events), counted.
async fn jobs_per_worker(api: &Client, ids: &[String]) -> Result<BTreeMap<String, usize>> {
    let mut per = BTreeMap::new();
    for id in ids {
        let ev = api.get(&["v1", "fine_tuning", "jobs", id, "events"], &limit(1000)).await?;
        let mut took: Vec<String> = ev["data"]
            .as_array()
            .context("events")?
            .iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Worker ")))
            .filter_map(|e| e["data"]["worker"].as_str().map(str::to_string))
            .collect();
        took.dedup();
        for w in took {
            *per.entry(w).or_insert(0) += 1;
        }
    }
    Ok(per)
}

/// Phase 1: JOBS tiny jobs on `n_workers` workers; jobs per minute.
fn throughput(rt: &tokio::runtime::Runtime, bin: &Path, pg: &pg::PgServer, n_workers: usize, n: usize) -> Result<f64> {
    let cluster = Cluster::start(bin, pg, 1, n_workers)?;
    let pm = postmaster(pg.port());
    let api = cluster.client(0)?;
    let train_file = cluster.file("train.jsonl", chat_lines(10, 0).as_bytes())?;
    let (secs, per_worker, cpu) = rt.block_on(async {
        let train = upload(&api, &train_file).await?;
        let tiny = json!({"model": MODEL, "training_file": train, "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
        let c0 = snap(&cluster, pm);
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(create_job(&api, &tiny).await?);
        }
        loop {
            let list = api.get(&["v1", "fine_tuning", "jobs"], &limit(100)).await?;
            let mut done = 0;
            for j in list["data"].as_array().context("jobs")? {
                if !ids.iter().any(|id| j["id"] == id.as_str()) {
                    continue;
                }
                match j["status"].as_str().unwrap_or("") {
                    "succeeded" => done += 1,
                    s @ ("failed" | "cancelled") => bail!("job {} ended {s}: {j}\n{}", j["id"], cluster.logs()),
                    _ => {}
                }
            }
            if done == n {
                break;
            }
            if t0.elapsed() > Duration::from_secs(1800) {
                bail!("{n} jobs not done in 30 minutes\n{}", cluster.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wall = t0.elapsed();
        let c1 = snap(&cluster, pm);
        anyhow::Ok((wall.as_secs_f64(), jobs_per_worker(&api, &ids).await?, cpu_report(c0, c1, wall)))
    })?;
    let per_min = n as f64 / secs * 60.0;
    println!(
        "{n_workers} worker(s): {n} tiny jobs (10 examples, 2 steps) in {secs:.1} s = {per_min:.2} jobs/minute; \
         jobs per worker: {:?}",
        per_worker.values().collect::<Vec<_>>()
    );
    println!("  {cpu}");
    Ok(per_min)
}

/// One route's latencies, sorted, and errors.
#[derive(Default)]
struct Route {
    ms: Vec<f64>,
    errors: usize,
}

const ROUTES: [&str; 3] =
    ["`GET /v1/fine_tuning/jobs`", "`GET /v1/fine_tuning/jobs/{id}/events`", "`POST /v1/files` (1 MB, validated)"];

struct LoadResult {
    routes: [Route; 3],
    per_api: Vec<Route>,
    seconds: f64,
}

/// Phase 2: `n_apis` API processes, 2 workers training two long jobs, CLIENTS clients.
#[allow(clippy::too_many_lines)]
fn load(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    pg: &pg::PgServer,
    n_apis: usize,
    seconds: u64,
    clients: usize,
) -> Result<LoadResult> {
    let cluster = Cluster::start(bin, pg, n_apis, 2)?;
    let pm = postmaster(pg.port());
    let apis: Vec<Client> = (0..n_apis).map(|i| cluster.client(i)).collect::<Result<_>>()?;
    let train_file = cluster.file("train.jsonl", chat_lines(10, 0).as_bytes())?;
    let load_file = Arc::new(cluster.file("load.jsonl", &one_mb())?);
    let result = rt.block_on(async {
        let train = upload(&apis[0], &train_file).await?;
        let hyper = json!({"n_epochs": 10, "batch_size": 1, "max_steps": 100_000, "max_seq_len": 64});
        let long = json!({"model": MODEL, "training_file": train, "hyperparameters": hyper});
        let jobs = [create_job(&apis[0], &long).await?, create_job(&apis[n_apis - 1], &long).await?];
        let step = |v: &Value| v["docraft"]["step"].as_i64().unwrap_or(0);
        let t0 = Instant::now();
        let before = loop {
            let mut steps = Vec::new();
            for j in &jobs {
                steps.push(step(&job(&apis[0], j).await?));
            }
            if steps.iter().all(|s| *s >= 1) {
                break steps;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("the two long jobs did not start training\n{}", cluster.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let janitor = Janitor::start(cluster.data.clone(), HashSet::from([train.clone()]));
        let c0 = snap(&cluster, pm);
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let a = c % n_apis;
            let (api, load_file, job) = (apis[a].clone(), load_file.clone(), jobs[(c / n_apis) % 2].clone());
            tasks.push(tokio::spawn(async move {
                let mut samples: Vec<(usize, Option<f64>)> = Vec::new();
                let mut first_error = None;
                let mut op = c % 3;
                while Instant::now() < end {
                    let t = Instant::now();
                    let r = match op {
                        0 => api
                            .get(&["v1", "fine_tuning", "jobs"], &limit(20))
                            .await
                            .map_err(anyhow::Error::from)
                            .and_then(|v| v["data"].is_array().then_some(()).with_context(|| format!("jobs: {v}"))),
                        1 => api
                            .get(&["v1", "fine_tuning", "jobs", &job, "events"], &limit(20))
                            .await
                            .map_err(anyhow::Error::from)
                            .and_then(|v| v["data"].is_array().then_some(()).with_context(|| format!("events: {v}"))),
                        _ => upload(&api, &load_file).await.map(|_| ()),
                    };
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    match r {
                        Ok(()) => samples.push((op, Some(ms))),
                        Err(e) => {
                            samples.push((op, None));
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    op = (op + 1) % 3;
                }
                (a, samples, first_error)
            }));
        }
        let mut routes: [Route; 3] = Default::default();
        let mut per_api: Vec<Route> = (0..n_apis).map(|_| Route::default()).collect();
        let mut errors_seen = Vec::new();
        for t in tasks {
            let (a, samples, first_error) = t.await?;
            for (op, ms) in samples {
                match ms {
                    Some(ms) => {
                        routes[op].ms.push(ms);
                        per_api[a].ms.push(ms);
                    }
                    None => {
                        routes[op].errors += 1;
                        per_api[a].errors += 1;
                    }
                }
            }
            errors_seen.extend(first_error);
        }
        let wall = start.elapsed();
        let c1 = snap(&cluster, pm);
        let deleted = janitor.finish();
        let mut after = Vec::new();
        for j in &jobs {
            after.push(step(&job(&apis[0], j).await?));
        }
        let trained: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        for r in routes.iter_mut().chain(per_api.iter_mut()) {
            r.ms.sort_by(f64::total_cmp);
        }
        println!(
            "{n_apis} API process(es), {clients} clients, {:.1} s; the two long jobs trained {trained:?} steps \
             meanwhile; {deleted} uploaded load files deleted by the janitor",
            wall.as_secs_f64()
        );
        println!("  {}", cpu_report(c0, c1, wall));
        for e in errors_seen.iter().take(3) {
            println!("  an error: {e}");
        }
        anyhow::Ok(LoadResult { routes, per_api, seconds: wall.as_secs_f64() })
    })?;
    print_load(&result, n_apis, clients);
    Ok(result)
}

fn print_load(r: &LoadResult, n_apis: usize, clients: usize) {
    println!();
    println!(
        "| route ({clients} clients, {n_apis} API process{}, 2 jobs training) | requests | req/s | p50 ms | p95 ms | \
         p99 ms | max ms | errors |",
        if n_apis == 1 { "" } else { "es" }
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, l: &Route| {
        println!(
            "| {name} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            l.ms.len(),
            l.ms.len() as f64 / r.seconds,
            percentile(&l.ms, 50.0),
            percentile(&l.ms, 95.0),
            percentile(&l.ms, 99.0),
            l.ms.last().copied().unwrap_or(f64::NAN),
            l.errors
        );
    };
    for (name, l) in ROUTES.iter().zip(&r.routes) {
        row(name, l);
    }
    let mut all = Route::default();
    for l in &r.routes {
        all.ms.extend_from_slice(&l.ms);
        all.errors += l.errors;
    }
    all.ms.sort_by(f64::total_cmp);
    row("all routes", &all);
    if n_apis > 1 {
        for (i, l) in r.per_api.iter().enumerate() {
            row(&format!("all routes, API process {}", i + 1), l);
        }
    }
    println!();
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).map_or(Ok(60), |s| s.parse())?;
    let clients: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let n_jobs: usize = args.get(3).map_or(Ok(8), |s| s.parse())?;
    let bin = docraft_bin()?;
    println!("docraft binary: {}", bin.display());
    let pg = pg::PgServer::start();
    println!("PostgreSQL on 127.0.0.1:{} (postmaster pid {:?})", pg.port(), postmaster(pg.port()));
    // The clients' runtime: 2 threads, as bench_service's.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    println!("\n== Jobs per minute (1 API process, workers with --concurrency 1 --train-threads 1)");
    let one = throughput(&rt, &bin, &pg, 1, n_jobs)?;
    let two = throughput(&rt, &bin, &pg, 2, n_jobs)?;
    println!("2 workers / 1 worker: {:.2}x", two / one);

    println!("\n== API latency ({clients} clients for {seconds} s, 2 workers training two long jobs)");
    let single = load(&rt, &bin, &pg, 1, seconds, clients)?;
    let double = load(&rt, &bin, &pg, 2, seconds, clients)?;
    let total = |r: &LoadResult| r.routes.iter().map(|l| l.ms.len()).sum::<usize>() as f64 / r.seconds;
    println!(
        "all routes: 1 API process {:.1} req/s, 2 API processes {:.1} req/s ({:.2}x)",
        total(&single),
        total(&double),
        total(&double) / total(&single)
    );
    Ok(())
}
