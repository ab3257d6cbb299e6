//! Upload-to-indexed throughput of `docraft serve`'s collections, beside the CLI on the same
//! files, and the latency of chat completions answered from a collection (issue 17).
//!
//! ```text
//! source ~/.cache/docraft/env.sh
//! cargo build -p docraft-cli        # the CLI run side by side: $CARGO_TARGET_DIR/debug/docraft
//! cargo run -p docraft-server --example bench_chat -- [--clients N] [--per-client N] [--max-tokens N] [--no-cli]
//! ```
//!
//! 1. Starts a server (SQLite, no training workers, one document worker) on a runtime of its
//!    own, creates a collection and uploads every file of `fixtures/docs` in one request; times
//!    it until the last document is `indexed` or `failed` (polling the documents every 100 ms):
//!    pages/s (unpaged documents count as one page), documents/s, chunks. The first documents
//!    load the embedder, so the same files go into a second collection, warm, too. Then the CLI
//!    on the same files: `docraft ingest` and `docraft index build`, each timed as a process.
//! 2. Chat on the first collection: one warm-up request (it loads SmolLM2), then one client
//!    streaming 5 questions the fixtures answer (`max_tokens` 64, temperature 0): time to the
//!    first content token, decoding rate; the same questions as a plain chat (no collection,
//!    a short prompt) and plain chats of growing prompts with `max_tokens` 1, to tell prompt
//!    processing from decoding; then CLIENTS (default 10) concurrent clients asking PER_CLIENT
//!    (default 3) questions each, not streamed: p50/p95/max latency, answers/minute.
//! 3. Prints a markdown summary with the machine and the command. Before each timed phase it
//!    waits (up to 5 minutes) until no `rustc` runs and other processes use under 25% of the
//!    CPUs, and says how much CPU other processes took during the phase.
//!
//! Needs the registry's SmolLM2 and USE-m3 (`scripts/setup.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use docraft_server::{AppState, ServerConfig, admin, bind, serve_with};
use futures::StreamExt;
use serde_json::{Value, json};

const MODEL: &str = "smollm2-135m-instruct";

/// Questions the fixtures answer (the first two and the third from `crates/cli/tests/ask.rs`).
const QUESTIONS: [&str; 5] = [
    "What torque should the flange bolts be tightened to?",
    "¿Dónde se guardan los documentos en papel de nivel confidencial?",
    "¿Cuántos días se conservan las copias de seguridad?",
    "When will the office network be unavailable?",
    "When will the pressure relief valve on pump station P4 be replaced?",
];

struct Args {
    clients: usize,
    per_client: usize,
    max_tokens: u32,
    cli: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { clients: 10, per_client: 3, max_tokens: 64, cli: true };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => a.clients = value()?.parse()?,
            "--per-client" => a.per_client = value()?.parse()?,
            "--max-tokens" => a.max_tokens = value()?.parse()?,
            "--no-cli" => a.cli = false,
            other => bail!("unknown argument {other}; options: --clients N --per-client N --max-tokens N --no-cli"),
        }
    }
    Ok(a)
}

// Whether the machine is quiet: the other engineer's compiles share the 2 cores.

fn rustc_running() -> bool {
    Command::new("pgrep").args(["-x", "rustc"]).output().is_ok_and(|o| o.status.success())
}

/// Other processes may use this share of the CPUs when a phase starts (pgrep, the shell, a
/// browser test's idle chromium: a few percent).
const QUIET_OTHERS: f64 = 0.25;

/// How quiet the machine was for one phase.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    /// No rustc and other processes under [`QUIET_OTHERS`] of the CPUs when the phase
    /// started (after waiting up to 5 minutes).
    at_start: bool,
    /// Seconds waited for it.
    waited: f64,
    /// Share of the phase's samples (every 500 ms) that saw a rustc.
    rustc_share: f64,
    /// Share of the machine's CPU time that went to other processes during the phase (from
    /// `/proc/stat` less this process and the children it waited for).
    others_cpu: f64,
}

impl Quiet {
    fn label(self) -> String {
        let during = if self.rustc_share > 0.0 {
            format!("; rustc ran during {:.0}% of it", self.rustc_share * 100.0)
        } else {
            String::new()
        };
        let start = if self.at_start {
            "quiet at start".to_string()
        } else {
            format!("NOT quiet at start (after waiting {:.0} s)", self.waited)
        };
        format!("{start}; other processes used {:.0}% of the CPUs during it{during}", self.others_cpu * 100.0)
    }
}

/// Waits until no rustc runs (up to 5 minutes), then watches for one until [`Watch::done`].
struct Watch {
    at_start: bool,
    waited: f64,
    /// Samples taken, samples that saw a rustc.
    samples: Arc<[AtomicUsize; 2]>,
    stop: Arc<AtomicBool>,
    cpu_start: Option<Cpu>,
    thread: std::thread::JoinHandle<()>,
}

impl Watch {
    fn start(phase: &str) -> Self {
        let t0 = Instant::now();
        let mut said = false;
        let (at_start, others) = loop {
            let rustc = rustc_running();
            let others = Cpu::others_over(Duration::from_secs(2));
            if !rustc && others < QUIET_OTHERS {
                break (true, others);
            }
            if t0.elapsed() > Duration::from_secs(300) {
                break (false, others);
            }
            if !said {
                println!(
                    "[{phase}] waiting (up to 5 minutes): {}other processes use {:.0}% of the CPUs",
                    if rustc { "rustc is running; " } else { "" },
                    others * 100.0
                );
                said = true;
            }
            std::thread::sleep(Duration::from_secs(3));
        };
        let waited = t0.elapsed().as_secs_f64();
        println!(
            "[{phase}] {}: other processes used {:.0}% of the CPUs over 2 s (waited {waited:.0} s)",
            if at_start { "machine quiet, no rustc" } else { "NOT quiet; measuring anyway" },
            others * 100.0
        );
        let samples = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                s[0].fetch_add(1, Ordering::Relaxed);
                if rustc_running() {
                    s[1].fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self { at_start, waited, samples, stop, thread, cpu_start: Cpu::now() }
    }

    fn done(self) -> Quiet {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let (n, seen) = (self.samples[0].load(Ordering::Relaxed), self.samples[1].load(Ordering::Relaxed));
        #[allow(clippy::cast_precision_loss)]
        let rustc_share = if n == 0 { 0.0 } else { seen as f64 / n as f64 };
        let others_cpu = match (self.cpu_start, Cpu::now()) {
            (Some(a), Some(b)) => Cpu::others(a, b),
            _ => f64::NAN,
        };
        Quiet { at_start: self.at_start, waited: self.waited, rustc_share, others_cpu }
    }
}

/// CPU time in clock ticks: the machine's (all CPUs, busy and in all) and this process's
/// (with the children it waited for).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    busy: u64,
    total: u64,
    own: u64,
}

impl Cpu {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4)?;
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces): utime is the 14th field.
        let rest: Vec<u64> =
            me.rsplit_once(')')?.1.split_whitespace().skip(11).take(4).filter_map(|x| x.parse().ok()).collect();
        Some(Self { busy: total - idle, total, own: rest.iter().sum() })
    }

    /// Share of the CPUs' time between `a` and `b` that went to other processes.
    fn others(a: Self, b: Self) -> f64 {
        let total = b.total.saturating_sub(a.total);
        if total == 0 {
            return f64::NAN;
        }
        let others = b.busy.saturating_sub(a.busy).saturating_sub(b.own.saturating_sub(a.own));
        others as f64 / total as f64
    }

    /// [`Self::others`] over the next `window`.
    fn others_over(window: Duration) -> f64 {
        let a = Self::now();
        std::thread::sleep(window);
        match (a, Self::now()) {
            (Some(a), Some(b)) => Self::others(a, b),
            _ => f64::NAN,
        }
    }
}

// The client.

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.key).json(body).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }

    /// A chat request; with a collection, answered from it, else a plain chat with the model.
    fn chat_body(&self, collection: Option<&str>, question: &str, max_tokens: u32, stream: bool) -> Value {
        let mut body = json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": question}],
            "stream": stream,
            "max_tokens": max_tokens,
            "temperature": 0,
        });
        if let Some(c) = collection {
            body["docraft"] = json!({"collection": c});
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace")
}

fn fixture_files() -> Result<Vec<PathBuf>> {
    let dir = workspace().join("fixtures/docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

fn short(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

// Phase 1: upload to indexed.

struct DocOutcome {
    filename: String,
    bytes: i64,
    status: String,
    pages: i64,
    chunks: i64,
    error: Option<String>,
    /// Seconds from the upload request until the poll that first saw it settled.
    settled_at: f64,
}

struct Upload {
    collection: String,
    docs: Vec<DocOutcome>,
    /// Seconds the upload request took (files streamed to disk, documents queued).
    request_s: f64,
    /// Seconds from the upload request until every document settled.
    total_s: f64,
}

impl Upload {
    fn pages(&self) -> i64 {
        self.docs.iter().filter(|d| d.status == "indexed").map(|d| d.pages.max(1)).sum()
    }
    fn chunks(&self) -> i64 {
        self.docs.iter().map(|d| d.chunks).sum()
    }
    fn failed(&self) -> usize {
        self.docs.iter().filter(|d| d.status == "failed").count()
    }
    fn indexed(&self) -> usize {
        self.docs.iter().filter(|d| d.status == "indexed").count()
    }
}

async fn upload_to_indexed(api: &Api, name: &str, files: &[PathBuf]) -> Result<Upload> {
    let col = api.post("/v1/collections", &json!({"name": name})).await?;
    let collection = col["id"].as_str().context("collection id")?.to_string();
    let mut form = reqwest::multipart::Form::new();
    for f in files {
        let bytes = tokio::fs::read(f).await?;
        let fname = f.file_name().and_then(|n| n.to_str()).context("file name")?.to_string();
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(fname));
    }
    let t0 = Instant::now();
    let r = api
        .http
        .post(format!("{}/v1/collections/{collection}/documents", api.base))
        .bearer_auth(&api.key)
        .multipart(form)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let request_s = t0.elapsed().as_secs_f64();
    if !status.is_success() {
        bail!("upload: {status} {v}");
    }
    let uploaded = v["data"].as_array().map_or(0, Vec::len);
    if uploaded != files.len() {
        bail!("{} files sent, {uploaded} documents back: {v}", files.len());
    }
    let mut settled: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    loop {
        let list = api.get(&format!("/v1/collections/{collection}/documents")).await?;
        let data = list["data"].as_array().context("documents")?.clone();
        let t = t0.elapsed().as_secs_f64();
        for d in &data {
            let s = d["status"].as_str().unwrap_or_default();
            if s == "indexed" || s == "failed" {
                settled.entry(d["id"].as_str().unwrap_or_default().to_string()).or_insert(t);
            }
        }
        if settled.len() == data.len() {
            let total_s = t;
            let mut docs: Vec<DocOutcome> = data
                .iter()
                .map(|d| DocOutcome {
                    filename: d["filename"].as_str().unwrap_or_default().to_string(),
                    bytes: d["bytes"].as_i64().unwrap_or(0),
                    status: d["status"].as_str().unwrap_or_default().to_string(),
                    pages: d["pages"].as_i64().unwrap_or(0),
                    chunks: d["chunks"].as_i64().unwrap_or(0),
                    error: d["error"].as_str().map(str::to_string),
                    settled_at: settled[d["id"].as_str().unwrap_or_default()],
                })
                .collect();
            docs.sort_by(|a, b| a.settled_at.total_cmp(&b.settled_at).then(a.filename.cmp(&b.filename)));
            return Ok(Upload { collection, docs, request_s, total_s });
        }
        if t > 600.0 {
            bail!("documents still not settled after 10 minutes: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_upload(title: &str, u: &Upload) {
    println!("\n### {title}\n");
    println!("| document | bytes | status | pages | chunks | settled at s |");
    println!("|---|---:|---|---:|---:|---:|");
    for d in &u.docs {
        let status = match &d.error {
            Some(e) => format!("{} ({})", d.status, short(e, 80)),
            None => d.status.clone(),
        };
        println!("| {} | {} | {status} | {} | {} | {:.2} |", d.filename, d.bytes, d.pages, d.chunks, d.settled_at);
    }
    println!(
        "upload request {:.2} s; all settled {:.2} s after it; {} indexed, {} failed; {} pages (unpaged = 1), {} chunks",
        u.request_s,
        u.total_s,
        u.indexed(),
        u.failed(),
        u.pages(),
        u.chunks()
    );
}

// Phase 1b: the CLI.

struct CliRun {
    ingest_s: f64,
    index_s: f64,
    files: i64,
    failed: i64,
    pages: i64,
    chunks: i64,
    ingest_summary: String,
    index_summary: String,
}

fn docraft_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from);
    target.join("debug").join("docraft")
}

fn run_timed(cmd: &mut Command) -> Result<(f64, String)> {
    let t0 = Instant::now();
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    let s = t0.elapsed().as_secs_f64();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {text}", out.status);
    }
    Ok((s, text.trim().to_string()))
}

fn cli_run(bin: &Path) -> Result<CliRun> {
    let tmp = tempfile::tempdir()?;
    let (chunks, report, index) =
        (tmp.path().join("chunks.jsonl"), tmp.path().join("report.json"), tmp.path().join("index"));
    let docs = workspace().join("fixtures/docs");
    let (ingest_s, ingest_summary) = run_timed(
        Command::new(bin).arg("ingest").arg(&docs).arg("-o").arg(&chunks).arg("--quiet").arg("--report").arg(&report),
    )?;
    let (index_s, index_summary) =
        run_timed(Command::new(bin).args(["index", "build"]).arg(&chunks).arg("-o").arg(&index).arg("--quiet"))?;
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let files = r["files"].as_array().context("report files")?;
    let ok: Vec<&Value> = files.iter().filter(|f| f["status"] == "ok").collect();
    Ok(CliRun {
        ingest_s,
        index_s,
        files: i64::try_from(files.len())?,
        failed: i64::try_from(files.len() - ok.len())?,
        pages: ok.iter().map(|f| f["pages"].as_i64().unwrap_or(0).max(1)).sum(),
        chunks: r["totals"]["chunks"].as_i64().unwrap_or(0),
        ingest_summary,
        index_summary,
    })
}

// Phase 2: chat.

#[derive(Debug, Clone, Default)]
struct Streamed {
    question: String,
    ttft_ms: f64,
    total_s: f64,
    /// `usage.completion_tokens` (the server's count of the answer's tokens, with any quote
    /// appended after generation).
    completion_tokens: u64,
    /// `usage.prompt_tokens` (from a collection: the server's estimate, the shown chunks'
    /// tokens plus 100).
    prompt_tokens: u64,
    /// Content deltas received.
    deltas: usize,
    /// Content deltas made by the model (all but a quote appended after generation), per
    /// second between the first and the last of them.
    decode_per_s: f64,
    /// completion tokens over the time from the first token to `[DONE]`.
    usage_per_s: f64,
    declined: bool,
    citations: usize,
    answer: String,
}

async fn ask_streamed(api: &Api, collection: Option<&str>, question: &str, max_tokens: u32) -> Result<Streamed> {
    let body = api.chat_body(collection, question, max_tokens, true);
    let t0 = Instant::now();
    let r = api.http.post(format!("{}/v1/chat/completions", api.base)).bearer_auth(&api.key).json(&body).send().await?;
    let status = r.status();
    if !status.is_success() {
        bail!("chat: {status} {}", r.text().await?);
    }
    let mut out = Streamed { question: question.to_string(), ..Streamed::default() };
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut times: Vec<(f64, String)> = Vec::new();
    let mut done_at = None;
    'read: while let Some(bytes) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&bytes?));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let t = t0.elapsed().as_secs_f64();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:") else { continue };
                let data = data.trim();
                if data == "[DONE]" {
                    done_at = Some(t);
                    break 'read;
                }
                let v: Value = serde_json::from_str(data).with_context(|| data.to_string())?;
                if v.get("error").is_some() {
                    bail!("chat stream: {v}");
                }
                if let Some(text) = v["choices"][0]["delta"]["content"].as_str()
                    && !text.is_empty()
                {
                    times.push((t, text.to_string()));
                }
                if v["choices"][0]["finish_reason"].is_string() {
                    out.declined = v["declined"].as_bool().unwrap_or(false);
                    out.citations = v["citations"].as_array().map_or(0, Vec::len);
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    out.completion_tokens = n;
                    out.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    let done = done_at.context("the stream ended without [DONE]")?;
    out.total_s = done;
    out.deltas = times.len();
    out.answer = times.iter().map(|(_, s)| s.as_str()).collect();
    if let Some(&(first, _)) = times.first() {
        out.ttft_ms = first * 1000.0;
        // A quote added after generation ("\n\nFrom the sources: «…» [file]") comes as one delta.
        let generated = match times.last() {
            Some((_, s)) if times.len() > 1 && s.starts_with("\n\n") && s.contains('«') => &times[..times.len() - 1],
            _ => &times[..],
        };
        let span = generated.last().map_or(0.0, |(t, _)| t - first);
        #[allow(clippy::cast_precision_loss)]
        {
            out.decode_per_s = if span > 0.0 { (generated.len() - 1) as f64 / span } else { f64::NAN };
            out.usage_per_s = if done > first { out.completion_tokens as f64 / (done - first) } else { f64::NAN };
        }
    } else {
        out.ttft_ms = f64::NAN;
        out.decode_per_s = f64::NAN;
        out.usage_per_s = f64::NAN;
    }
    Ok(out)
}

/// Prompt processing alone: plain chats with prompts of growing length and `max_tokens` 1
/// (one forward pass over the prompt, one token): (prompt tokens, seconds).
async fn prefill_probe(api: &Api) -> Result<Vec<(u64, f64)>> {
    const SENTENCE: &str = "The office network will be unavailable on Saturday 21 March 2026 from 08:00 to 12:00 \
                            while the core switches are replaced, and remote access through the VPN will be down. ";
    let mut out = Vec::new();
    for repeats in [2, 5, 10, 20, 30] {
        let prompt = format!("{}\nSummarize the memo above in one sentence.", SENTENCE.repeat(repeats));
        let body = api.chat_body(None, &prompt, 1, false);
        let t = Instant::now();
        let v = api.post("/v1/chat/completions", &body).await?;
        out.push((v["usage"]["prompt_tokens"].as_u64().unwrap_or(0), t.elapsed().as_secs_f64()));
    }
    Ok(out)
}

struct Concurrent {
    latencies: Vec<f64>,
    errors: Vec<String>,
    wall_s: f64,
    completion_tokens: u64,
    declined: usize,
}

async fn concurrent(
    api: &Arc<Api>,
    collection: &str,
    clients: usize,
    per_client: usize,
    max_tokens: u32,
) -> Concurrent {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (api, collection) = (api.clone(), collection.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for j in 0..per_client {
                let q = QUESTIONS[(c * per_client + j) % QUESTIONS.len()];
                let body = api.chat_body(Some(&collection), q, max_tokens, false);
                let t = Instant::now();
                let r = api.post("/v1/chat/completions", &body).await;
                out.push((t.elapsed().as_secs_f64(), r));
            }
            out
        }));
    }
    let mut res =
        Concurrent { latencies: Vec::new(), errors: Vec::new(), wall_s: 0.0, completion_tokens: 0, declined: 0 };
    for t in tasks {
        match t.await {
            Ok(outs) => {
                for (s, r) in outs {
                    match r {
                        Ok(v) if v["choices"][0]["message"]["content"].is_string() => {
                            res.latencies.push(s);
                            res.completion_tokens += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                            res.declined += usize::from(v["declined"].as_bool().unwrap_or(false));
                        }
                        Ok(v) => res.errors.push(short(&v.to_string(), 200)),
                        Err(e) => res.errors.push(short(&e.to_string(), 200)),
                    }
                }
            }
            Err(e) => res.errors.push(e.to_string()),
        }
    }
    res.wall_s = t0.elapsed().as_secs_f64();
    res.latencies.sort_by(f64::total_cmp);
    res
}

fn print_streamed(title: &str, streamed: &[Streamed]) {
    println!("\n### {title}\n");
    println!(
        "| question | prompt tokens | first token ms | prompt tokens/s to first token | [DONE] s | completion tokens | deltas | decode deltas/s | usage tokens/s | declined | citations | answer |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|");
    for s in streamed {
        #[allow(clippy::cast_precision_loss)]
        let prefill = s.prompt_tokens as f64 / (s.ttft_ms / 1000.0);
        println!(
            "| {} | {} | {:.0} | {prefill:.0} | {:.2} | {} | {} | {:.1} | {:.1} | {} | {} | {} |",
            s.question,
            s.prompt_tokens,
            s.ttft_ms,
            s.total_s,
            s.completion_tokens,
            s.deltas,
            s.decode_per_s,
            s.usage_per_s,
            s.declined,
            s.citations,
            short(&s.answer, 100).replace('|', "\\|")
        );
    }
    let med = |f: &dyn Fn(&Streamed) -> f64| median(&streamed.iter().map(f).collect::<Vec<_>>());
    println!(
        "median: first token {:.0} ms, [DONE] {:.2} s, {:.1} decode deltas/s, {:.1} usage tokens/s",
        med(&|s| s.ttft_ms),
        med(&|s| s.total_s),
        med(&|s| s.decode_per_s),
        med(&|s| s.usage_per_s)
    );
}

// The machine.

fn machine() -> String {
    let nproc = Command::new("nproc")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()))
        .map_or_else(|| "?".into(), |kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0));
    format!("nproc {nproc}, {model}, {mem} memory")
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
fn main() -> Result<()> {
    let args = parse_args()?;
    let command = {
        let rest: Vec<String> = std::env::args().skip(1).collect();
        let profile = if cfg!(debug_assertions) { "" } else { "--release " };
        format!(
            "cargo run {profile}-p docraft-server --example bench_chat --{}",
            rest.iter().map(|a| format!(" {a}")).collect::<String>()
        )
    };
    let profile = if cfg!(debug_assertions) {
        "dev profile (dependencies at opt-level 3 by the workspace profile, docraft-train at 3, the other docraft crates unoptimized)"
    } else {
        "release profile"
    };
    let machine = machine();
    println!("machine: {machine}\n{profile}\ncommand: {command}");
    let files = fixture_files()?;
    println!("files: {} from fixtures/docs", files.len());
    let bin = docraft_bin();
    if args.cli && !bin.exists() {
        bail!("{} is missing: run `cargo build -p docraft-cli` first (or pass --no-cli)", bin.display());
    }

    let dir = tempfile::tempdir()?;
    let mut config = ServerConfig::with_data_dir(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse()?;
    config.workers = 0;
    config.document_workers = 1;
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
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let api = Arc::new(Api { http: reqwest::Client::new(), base: format!("http://{addr}"), key });

    // 1. Upload to indexed, cold (the first document loads the embedder) and warm.
    let w = Watch::start("upload, cold");
    let cold = client_rt.block_on(upload_to_indexed(&api, "bench-cold", &files))?;
    let q_cold = w.done();
    print_upload(&format!("Upload to indexed, cold ({})", q_cold.label()), &cold);
    let w = Watch::start("upload, warm");
    let warm = client_rt.block_on(upload_to_indexed(&api, "bench-warm", &files))?;
    let q_warm = w.done();
    print_upload(&format!("Upload to indexed, warm: a second collection, embedder loaded ({})", q_warm.label()), &warm);

    let cli = if args.cli {
        let w = Watch::start("CLI");
        let run = cli_run(&bin)?;
        let q = w.done();
        println!("\n### CLI ({}), {}\n", q.label(), bin.display());
        println!("ingest {:.2} s: {}", run.ingest_s, run.ingest_summary.replace('\n', " / "));
        println!("index build {:.2} s: {}", run.index_s, run.index_summary.replace('\n', " / "));
        Some((run, q))
    } else {
        None
    };

    // 2. Chat.
    let collection = cold.collection.clone();
    let w = Watch::start("chat warm-up");
    let warmup = client_rt.block_on(ask_streamed(&api, Some(&collection), QUESTIONS[0], args.max_tokens))?;
    let q_warmup = w.done();
    println!(
        "\nwarm-up (loads SmolLM2; excluded from the figures, {}): first token {:.0} ms, [DONE] at {:.2} s",
        q_warmup.label(),
        warmup.ttft_ms,
        warmup.total_s
    );

    let w = Watch::start("chat, one client streaming");
    let mut streamed = Vec::new();
    for q in QUESTIONS {
        streamed.push(client_rt.block_on(ask_streamed(&api, Some(&collection), q, args.max_tokens))?);
    }
    let q_stream = w.done();
    print_streamed(
        &format!(
            "Chat from the collection, one client, streamed, max_tokens {} ({})",
            args.max_tokens,
            q_stream.label()
        ),
        &streamed,
    );

    // The same questions as a plain chat (no collection): a prompt of a few dozen tokens
    // instead of the retrieved chunks, to tell prompt processing from decoding.
    let w = Watch::start("plain chat, one client streaming");
    let mut plain = Vec::new();
    for q in QUESTIONS {
        plain.push(client_rt.block_on(ask_streamed(&api, None, q, args.max_tokens))?);
    }
    let q_plain = w.done();
    print_streamed(
        &format!(
            "Plain chat (no collection), one client, streamed, max_tokens {} ({})",
            args.max_tokens,
            q_plain.label()
        ),
        &plain,
    );

    let w = Watch::start("prompt processing probe");
    let probe = client_rt.block_on(prefill_probe(&api))?;
    let q_probe = w.done();
    println!("\n### Prompt processing: plain chat, max_tokens 1 ({})\n", q_probe.label());
    println!("| prompt tokens | seconds | prompt tokens/s |");
    println!("|---:|---:|---:|");
    for (n, secs) in &probe {
        println!("| {n} | {secs:.2} | {:.0} |", *n as f64 / secs);
    }

    let w = Watch::start("chat, concurrent clients");
    let conc = client_rt.block_on(concurrent(&api, &collection, args.clients, args.per_client, args.max_tokens));
    let q_conc = w.done();
    let n_ok = conc.latencies.len();
    let per_min = n_ok as f64 / conc.wall_s * 60.0;
    println!(
        "\n### Chat, {} concurrent clients × {} questions, not streamed ({})\n",
        args.clients,
        args.per_client,
        q_conc.label()
    );
    println!(
        "{n_ok} answers, {} errors in {:.1} s: p50 {:.1} s, p95 {:.1} s, max {:.1} s; {per_min:.1} answers/minute; \
         {:.1} completion tokens/s in all; {} declined",
        conc.errors.len(),
        conc.wall_s,
        percentile(&conc.latencies, 50.0),
        percentile(&conc.latencies, 95.0),
        conc.latencies.last().copied().unwrap_or(f64::NAN),
        conc.completion_tokens as f64 / conc.wall_s,
        conc.declined
    );
    for e in &conc.errors {
        println!("error: {e}");
    }

    // 3. The summary.
    println!("\n## bench_chat summary\n");
    println!("Machine: {machine}. {profile}.\n\n```sh\n{command}\n```\n");
    println!("| measure | value | machine |");
    println!("|---|---|---|");
    for (name, u, q) in [("cold: first use loads the embedder", &cold, q_cold), ("warm", &warm, q_warm)] {
        println!(
            "| upload → indexed, server ({name}) | {} docs ({} indexed, {} failed), {} pages, {} chunks in {:.2} s: **{:.1} pages/s**, {:.1} docs/s (request {:.2} s) | {} |",
            u.docs.len(),
            u.indexed(),
            u.failed(),
            u.pages(),
            u.chunks(),
            u.total_s,
            u.pages() as f64 / u.total_s,
            u.docs.len() as f64 / u.total_s,
            u.request_s,
            q.label()
        );
    }
    if let Some((run, q)) = &cli {
        let total = run.ingest_s + run.index_s;
        println!(
            "| CLI `docraft ingest` + `docraft index build` (two processes) | {} files ({} failed), {} pages, {} chunks: ingest {:.2} s + index {:.2} s = {total:.2} s: **{:.1} pages/s**, {:.1} files/s | {} |",
            run.files,
            run.failed,
            run.pages,
            run.chunks,
            run.ingest_s,
            run.index_s,
            run.pages as f64 / total,
            run.files as f64 / total,
            q.label()
        );
    }
    println!(
        "| chat warm-up (loads SmolLM2; excluded) | first token {:.0} ms, [DONE] {:.2} s | {} |",
        warmup.ttft_ms,
        warmup.total_s,
        q_warmup.label()
    );
    let one_by_one = streamed.len() as f64 / streamed.iter().map(|s| s.total_s).sum::<f64>() * 60.0;
    for (name, runs, q) in [("from the collection", &streamed, q_stream), ("plain, no collection", &plain, q_plain)] {
        let each = |f: &dyn Fn(&Streamed) -> f64, digits: usize| {
            let v: Vec<f64> = runs.iter().map(f).collect();
            (median(&v), v.iter().map(|x| format!("{x:.digits$}")).collect::<Vec<_>>().join(", "))
        };
        let (ttft, ttfts) = each(&|s| s.ttft_ms, 0);
        let (dec, decs) = each(&|s| s.decode_per_s, 1);
        #[allow(clippy::cast_precision_loss)]
        let (prompt, _) = each(&|s| s.prompt_tokens as f64, 0);
        println!(
            "| chat {name}, 1 client, streamed, {} questions, max_tokens {} | median first token **{ttft:.0} ms** (each: {ttfts}; median prompt {prompt:.0} tokens); median **{dec:.1} decode deltas/s** (each: {decs}){} | {} |",
            runs.len(),
            args.max_tokens,
            if name.starts_with("from") {
                format!("; one after another: {one_by_one:.1} answers/minute")
            } else {
                String::new()
            },
            q.label()
        );
    }
    println!(
        "| prompt processing (plain chat, max_tokens 1) | {} | {} |",
        probe.iter().map(|(n, secs)| format!("{n} tokens {secs:.2} s")).collect::<Vec<_>>().join("; "),
        q_probe.label()
    );
    println!(
        "| chat, {} clients × {} questions, not streamed | {n_ok} answers, {} errors in {:.1} s: p50 **{:.1} s**, p95 {:.1} s, max {:.1} s; **{per_min:.1} answers/minute** | {} |",
        args.clients,
        args.per_client,
        conc.errors.len(),
        conc.wall_s,
        percentile(&conc.latencies, 50.0),
        percentile(&conc.latencies, 95.0),
        conc.latencies.last().copied().unwrap_or(f64::NAN),
        q_conc.label()
    );

    let _ = stop.send(());
    server_rt.shutdown_timeout(Duration::from_secs(30));
    Ok(())
}
