//! `docraft run`: the whole pipeline into one run directory, with lineage.
//!
//! Stages: ingest -> index -> qa + export (optional) -> raft -> train -> eval. Each stage is
//! the same library call as its own subcommand, with arguments built from the config's table
//! of that name (keys are the subcommand's long flags) and the paths the run directory
//! dictates. `RUN_DIR/manifest.json` records, per stage, a fingerprint of everything it
//! depends on (its settings, the hashes of its input files, of the model files and of the
//! prompts); a stage whose fingerprint is unchanged and whose outputs still hash as recorded
//! is skipped, one left `running` by a crash or kill is resumed (each stage resumes on its
//! own: ingest and generation skip finished work, training continues from its last
//! checkpoint), and one whose inputs changed is redone from scratch.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The commented example config, also what `docraft run --print-config` shows.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../docraft.toml");

#[derive(Args)]
pub struct RunArgs {
    /// Documents: files and folders (walked recursively: .pdf, .md, .markdown, .txt).
    #[arg(required_unless_present = "print_config")]
    docs: Vec<PathBuf>,
    /// The run directory: chunks, index, datasets, adapter, report, manifest.json.
    #[arg(short, long, required_unless_present = "print_config")]
    output: Option<PathBuf>,
    /// Settings of every stage (TOML; see `--print-config` for a commented example). Without
    /// it, RUN_DIR/config.toml from an earlier run, else the defaults.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Stop after this stage (ingest, index, qa, raft, train, eval).
    #[arg(long)]
    until: Option<String>,
    /// Redo every stage, even unchanged ones.
    #[arg(long)]
    force: bool,
    /// Print the commented example config and exit.
    #[arg(long)]
    print_config: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

/// The stages in order.
pub const STAGES: [&str; 7] = ["ingest", "index", "qa", "export", "raft", "train", "eval"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StageRecord {
    status: String,
    fingerprint: String,
    /// The subcommand's arguments, as `docraft` would take them on the command line.
    command: Vec<String>,
    /// The config table of the stage.
    settings: Value,
    inputs: BTreeMap<String, String>,
    models: BTreeMap<String, String>,
    prompts: BTreeMap<String, String>,
    outputs: BTreeMap<String, String>,
    started_unix: u64,
    finished_unix: Option<u64>,
    seconds: Option<f64>,
    error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    docraft_version: String,
    note: String,
    config: BTreeMap<String, String>,
    documents: BTreeMap<String, String>,
    stages: BTreeMap<String, StageRecord>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// sha256 of a file, or of a directory's files (relative path and hash of each, sorted),
/// skipping `checkpoints/` (training state, not a product).
pub fn hash_path(path: &Path) -> Result<String> {
    if path.is_dir() {
        let mut files = Vec::new();
        collect(path, path, &mut files)?;
        files.sort();
        let mut h = Sha256::new();
        for (rel, p) in files {
            h.update(rel.as_bytes());
            h.update([0]);
            h.update(hash_path(&p)?.as_bytes());
            h.update([b'\n']);
        }
        return Ok(format!("{:x}", h.finalize()));
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("hashing {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.file_name().is_some_and(|n| n == "checkpoints" || n.to_string_lossy().ends_with(".tmp")) {
            continue;
        }
        if p.is_dir() {
            collect(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

fn hash_str(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

/// A config table as command-line flags: `key = value` -> `--key value`, `true` -> `--key`,
/// arrays repeat the flag. Keys listed in `reserved` are the run's to set.
fn flags(table: &toml::Table, reserved: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in table {
        if k == "enabled" {
            continue;
        }
        let key = k.replace('_', "-");
        if reserved.contains(&key.as_str()) {
            bail!("`{k}` is set by docraft run itself and cannot be configured");
        }
        let flag = format!("--{key}");
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!("`{k}`: {other} is not a string, number or boolean"),
            })
        };
        match v {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(item)?);
                }
            }
            other => {
                out.push(flag);
                out.push(scalar(other)?);
            }
        }
    }
    Ok(out)
}

/// Parses `argv` (without a program name) into a subcommand's arguments.
fn parse<T: Args + FromArgMatches>(name: &'static str, argv: &[String]) -> Result<T> {
    let cmd = T::augment_args(clap::Command::new(name).no_binary_name(true));
    let m = cmd.try_get_matches_from(argv).map_err(|e| anyhow::anyhow!("[{name}] in the config: {e}"))?;
    Ok(T::from_arg_matches(&m)?)
}

struct Config {
    table: toml::Table,
    text: String,
    path: Option<PathBuf>,
}

impl Config {
    fn load(path: Option<&Path>) -> Result<Self> {
        let Some(p) = path else {
            return Ok(Self { table: toml::Table::new(), text: String::new(), path: None });
        };
        let text = std::fs::read_to_string(p).with_context(|| format!("reading the config {}", p.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not valid TOML", p.display()))?;
        for key in table.keys() {
            if !STAGES.contains(&key.as_str()) && key != "models" {
                bail!("{}: unknown section [{key}] (known: models, {})", p.display(), STAGES.join(", "));
            }
        }
        Ok(Self { table, text, path: Some(p.to_path_buf()) })
    }

    fn section(&self, name: &str) -> toml::Table {
        self.table.get(name).and_then(|v| v.as_table()).cloned().unwrap_or_default()
    }

    fn enabled(&self, name: &str, default: bool) -> bool {
        self.section(name).get("enabled").and_then(toml::Value::as_bool).unwrap_or(default)
    }

    /// A model path from `[models]`: absolute, or relative to $DOCRAFT_MODELS; `default`
    /// when the key is absent.
    fn model(&self, key: &str, default: PathBuf) -> PathBuf {
        match self.section("models").get(key).and_then(|v| v.as_str().map(PathBuf::from)) {
            Some(p) if p.is_absolute() => p,
            Some(p) => docraft_core::models_dir().join(p),
            None => default,
        }
    }
}

struct Runner {
    dir: PathBuf,
    manifest: Manifest,
    force: bool,
    quiet: bool,
    prompts: BTreeMap<String, String>,
    /// Model files are read-only inputs shared by several stages (the GGUF generates, is
    /// trained and is evaluated): hashed once per run.
    model_hashes: BTreeMap<PathBuf, String>,
}

/// What a stage needs to know before it runs.
struct Plan {
    name: &'static str,
    command: Vec<String>,
    settings: toml::Table,
    inputs: Vec<PathBuf>,
    models: Vec<PathBuf>,
    prompts: bool,
    outputs: Vec<PathBuf>,
    /// Removed before a fresh (not resumed) run.
    clean: Vec<PathBuf>,
}

enum Mode {
    Fresh,
    Resume,
}

impl Runner {
    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    fn save(&self) -> Result<()> {
        let path = self.manifest_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.manifest)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.dir).unwrap_or(p).to_string_lossy().into_owned()
    }

    fn hashes(&self, paths: &[PathBuf]) -> Result<BTreeMap<String, String>> {
        paths.iter().filter(|p| p.exists()).map(|p| Ok((self.rel(p), hash_path(p)?))).collect()
    }

    /// Runs `plan` through `work` unless it is unchanged; returns whether it ran.
    fn stage(&mut self, plan: Plan, work: impl FnOnce(&Mode) -> Result<()>) -> Result<bool> {
        let inputs = self.hashes(&plan.inputs)?;
        let mut models = BTreeMap::new();
        for m in plan.models.iter().filter(|m| m.exists()) {
            let hash = match self.model_hashes.get(m) {
                Some(h) => h.clone(),
                None => hash_path(m)?,
            };
            self.model_hashes.insert(m.clone(), hash.clone());
            models.insert(self.rel(m), hash);
        }
        let prompts = if plan.prompts { self.prompts.clone() } else { BTreeMap::new() };
        let settings = serde_json::to_value(&plan.settings)?;
        // Output paths depend on the run directory only, so they stay out of the fingerprint:
        // a run directory moved elsewhere is still up to date.
        let argv: Vec<String> = plan.command.iter().map(|a| self.rel(Path::new(a))).collect();
        let fingerprint = hash_str(&serde_json::to_string(&json!({
            "stage": plan.name, "version": env!("CARGO_PKG_VERSION"), "command": argv,
            "inputs": inputs, "models": models, "prompts": prompts,
        }))?);
        let prev = self.manifest.stages.get(plan.name).cloned();
        if let Some(p) = &prev
            && !self.force
            && p.status == "done"
            && p.fingerprint == fingerprint
        {
            if self.hashes(&plan.outputs)? == p.outputs {
                println!("[{}] unchanged, skipped", plan.name);
                return Ok(false);
            }
            println!("[{}] outputs changed since the last run: redoing", plan.name);
        }
        let mode = match &prev {
            Some(p) if !self.force && p.status == "running" && p.fingerprint == fingerprint => {
                println!("[{}] resuming the interrupted run", plan.name);
                Mode::Resume
            }
            _ => {
                for p in &plan.clean {
                    if p.is_dir() {
                        std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
                    } else if p.exists() {
                        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
                    }
                }
                println!("[{}] running", plan.name);
                Mode::Fresh
            }
        };
        let started = now();
        self.manifest.stages.insert(
            plan.name.to_string(),
            StageRecord {
                status: "running".into(),
                fingerprint,
                command: plan.command.clone(),
                settings,
                inputs,
                models,
                prompts,
                outputs: BTreeMap::new(),
                started_unix: started,
                ..StageRecord::default()
            },
        );
        self.save()?;
        let t0 = Instant::now();
        let result = work(&mode);
        let outputs = self.hashes(&plan.outputs)?;
        let rec = self.manifest.stages.entry(plan.name.to_string()).or_default();
        rec.seconds = Some(t0.elapsed().as_secs_f64());
        rec.finished_unix = Some(now());
        match result {
            Ok(()) => {
                rec.status = "done".into();
                rec.outputs = outputs;
                self.save()?;
                Ok(true)
            }
            Err(e) => {
                rec.status = "failed".into();
                rec.error = Some(format!("{e:#}"));
                self.save()?;
                Err(e.context(format!("stage {} failed (see {})", plan.name, self.manifest_path().display())))
            }
        }
    }
}

fn ok(code: ExitCode, what: &str) -> Result<()> {
    if code == ExitCode::SUCCESS { Ok(()) } else { bail!("{what} did not succeed") }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Every regular file under `paths`, sorted.
fn documents(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files = Vec::new();
            collect(p, p, &mut files)?;
            out.extend(files.into_iter().map(|f| f.1));
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn run(a: &RunArgs) -> Result<ExitCode> {
    if a.print_config {
        print!("{EXAMPLE_CONFIG}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(dir) = a.output.clone() else { bail!("--output RUN_DIR is required") };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kept = dir.join("config.toml");
    let config_path = a.config.clone().or_else(|| kept.is_file().then(|| kept.clone()));
    let config = Config::load(config_path.as_deref())?;
    if let Some(until) = a.until.as_ref().filter(|u| !STAGES.contains(&u.as_str())) {
        bail!("--until {until}: not a stage ({})", STAGES.join(", "));
    }
    check_config(&config)?;
    if std::fs::read_to_string(&kept).ok().as_deref() != Some(config.text.as_str()) {
        std::fs::write(&kept, &config.text).with_context(|| format!("writing {}", kept.display()))?;
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(t) => {
            serde_json::from_str(&t).with_context(|| format!("{}: not a docraft manifest", manifest_path.display()))?
        }
        Err(_) => Manifest::default(),
    };
    manifest.docraft_version = env!("CARGO_PKG_VERSION").into();
    manifest.note = "Per stage: the fingerprint hashes its command, inputs, models and prompts; every dataset \
                     record names its document (doc_id, source), pages and byte span."
        .into();
    manifest.config = BTreeMap::from([
        ("path".to_string(), config.path.as_ref().map(|p| s(p)).unwrap_or_else(|| "(defaults)".into())),
        ("sha256".to_string(), hash_str(&config.text)),
    ]);
    let docs = documents(&a.docs)?;
    manifest.documents = docs.iter().map(|p| Ok((s(p), hash_path(p)?))).collect::<Result<_>>()?;
    let mut prompts = BTreeMap::new();
    for (name, text) in docraft_qa_gen::prompt::PROMPTS.iter().chain(docraft_raft::PROMPTS) {
        prompts.insert((*name).to_string(), hash_str(text));
    }
    let mut r =
        Runner { dir: dir.clone(), manifest, force: a.force, quiet: a.quiet, prompts, model_hashes: BTreeMap::new() };
    r.save()?;

    let p = |name: &str| dir.join(name);
    let quiet = |v: &mut Vec<String>, q: bool| {
        if q {
            v.push("--quiet".into());
        }
    };
    let last = a.until.clone().unwrap_or_else(|| "eval".into());
    let stop_after = |name: &str| name == last;
    let generator = config.model("generator", docraft_llm::default_gguf());
    let base = config.model("base", docraft_llm::default_gguf());
    let embedder = config.model("embedder", docraft_index::default_model_dir());

    // 1. ingest
    let chunks = p("chunks.jsonl");
    let sec = config.section("ingest");
    let mut cmd: Vec<String> = a.docs.iter().map(|d| s(d)).collect();
    cmd.extend(["-o".into(), s(&chunks), "--report".into(), s(&p("ingest-report.json"))]);
    cmd.extend(flags(&sec, reserved("ingest"))?);
    quiet(&mut cmd, r.quiet);
    let args: crate::IngestArgs = parse("ingest", &cmd)?;
    let plan = Plan {
        name: "ingest",
        command: cmd,
        settings: sec,
        inputs: docs.clone(),
        models: vec![],
        prompts: false,
        outputs: vec![chunks.clone(), p("ingest-report.json")],
        clean: vec![chunks.clone(), p("chunks.jsonl.torn"), p("ingest-report.json")],
    };
    r.stage(plan, |_| ok(crate::ingest(&args)?, "ingest"))?;
    if stop_after("ingest") {
        return finish(&r);
    }

    // 2. index
    let index = p("index");
    let sec = config.section("index");
    let mut cmd = vec![s(&chunks), "-o".into(), s(&index)];
    if !sec.contains_key("model") {
        cmd.extend(["--model".into(), s(&embedder)]);
    }
    cmd.extend(flags(&sec, reserved("index"))?);
    quiet(&mut cmd, r.quiet);
    let args: crate::search::IndexBuildArgs = parse("index", &cmd)?;
    let plan = Plan {
        name: "index",
        command: cmd,
        settings: sec,
        inputs: vec![chunks.clone()],
        models: vec![embedder.clone()],
        prompts: false,
        outputs: vec![index.clone()],
        clean: vec![],
    };
    r.stage(plan, |_| ok(crate::search::build(&args)?, "index build"))?;
    if stop_after("index") {
        return finish(&r);
    }

    // 3. qa (+ export), optional
    let qa = p("qa.jsonl");
    let qa_train = p("qa.train.jsonl");
    let use_qa = config.enabled("qa", false);
    if use_qa {
        let sec = config.section("qa");
        let mut cmd = vec![s(&chunks), "-o".into(), s(&qa)];
        let local = sec.get("backend").and_then(|v| v.as_str()).is_none_or(|b| b == "llama");
        if !sec.contains_key("model") {
            cmd.extend(["--model".into(), s(&generator)]);
        }
        cmd.extend(flags(&sec, reserved("qa"))?);
        quiet(&mut cmd, r.quiet);
        let args: crate::qa::GenerateArgs = parse("qa", &cmd)?;
        let rel = |suffix: &str| p(&format!("qa.{suffix}.jsonl"));
        let plan = Plan {
            name: "qa",
            command: cmd,
            settings: sec,
            inputs: vec![chunks.clone()],
            models: if local { vec![generator.clone()] } else { vec![] },
            prompts: true,
            outputs: vec![qa.clone(), rel("rejected")],
            clean: vec![qa.clone(), rel("rejected"), rel("progress"), rel("requests")],
        };
        r.stage(plan, |_| ok(crate::qa::generate(&args)?, "generate"))?;
        let sec = config.section("export");
        let mut cmd = vec![s(&qa), "-o".into(), s(&qa_train)];
        if !sec.contains_key("format") {
            cmd.extend(["--format".into(), "openai-chat".into()]);
        }
        cmd.extend(flags(&sec, reserved("export"))?);
        let args: crate::qa::ExportArgs = parse("export", &cmd)?;
        let valid = p("qa.train.valid.jsonl");
        let plan = Plan {
            name: "export",
            command: cmd,
            settings: sec,
            inputs: vec![qa.clone()],
            models: vec![],
            prompts: false,
            outputs: vec![qa_train.clone(), valid.clone()],
            clean: vec![qa_train.clone(), valid],
        };
        r.stage(plan, |_| ok(crate::qa::export_cmd(&args)?, "export"))?;
    }
    if stop_after("qa") || stop_after("export") {
        return finish(&r);
    }

    // 4. raft
    let raft = p("raft.jsonl");
    let use_raft = config.enabled("raft", true);
    let raft_sec = config.section("raft");
    let raft_file = |split: &str, format: &str| p(&format!("raft.{split}.{format}.jsonl"));
    if use_raft {
        let sec = raft_sec.clone();
        let mut cmd = vec![s(&chunks), "--index".into(), s(&index), "-o".into(), s(&raft)];
        let local = sec.get("backend").and_then(|v| v.as_str()).is_none_or(|b| b == "llama");
        if !sec.contains_key("model") {
            cmd.extend(["--model".into(), s(&generator)]);
        }
        cmd.extend(flags(&sec, reserved("raft"))?);
        quiet(&mut cmd, r.quiet);
        let args: crate::raft::RaftArgs = parse("raft", &cmd)?;
        let siblings = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("raft.")))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut outputs = vec![raft.clone()];
        for split in ["train", "valid", "test"] {
            for f in ["hf", "completion", "chat", "eval"] {
                outputs.push(raft_file(split, f));
            }
        }
        let plan = Plan {
            name: "raft",
            command: cmd,
            settings: sec,
            inputs: vec![chunks.clone(), index.clone()],
            models: if local { vec![generator.clone()] } else { vec![] },
            prompts: true,
            outputs,
            clean: siblings(&dir),
        };
        r.stage(plan, |_| ok(crate::raft::raft(&args)?, "raft"))?;
    }
    if stop_after("raft") {
        return finish(&r);
    }

    // 5. train
    let train_dir = p("train");
    let (data, valid) = if use_raft {
        (raft_file("train", "chat"), raft_file("valid", "chat"))
    } else if use_qa {
        (qa_train.clone(), p("qa.train.valid.jsonl"))
    } else {
        bail!("[train] needs a dataset: enable [raft] or [qa]");
    };
    let use_train = config.enabled("train", true);
    if use_train {
        let sec = config.section("train");
        let mut cmd = vec!["--base".into(), s(&base), "--data".into(), s(&data), "-o".into(), s(&train_dir)];
        let has_valid = std::fs::metadata(&valid).is_ok_and(|m| m.len() > 0);
        if has_valid {
            cmd.extend(["--valid".into(), s(&valid)]);
        }
        cmd.extend(flags(&sec, reserved("train"))?);
        quiet(&mut cmd, r.quiet);
        let fresh: crate::train::TrainArgs = parse("train", &cmd)?;
        let mut resume_cmd = cmd.clone();
        resume_cmd.push("--resume".into());
        let resumed: crate::train::TrainArgs = parse("train", &resume_cmd)?;
        let mut inputs = vec![data.clone()];
        if has_valid {
            inputs.push(valid.clone());
        }
        let plan = Plan {
            name: "train",
            command: cmd,
            settings: sec,
            inputs,
            models: vec![base.clone()],
            prompts: false,
            outputs: vec![train_dir.join("adapter"), train_dir.join("metrics.jsonl")],
            clean: vec![train_dir.clone()],
        };
        let has_checkpoint = |d: &Path| docraft_train::RunFiles::new(d).latest_checkpoint().is_some();
        r.stage(plan, |mode| {
            let args = match mode {
                Mode::Resume if has_checkpoint(&train_dir) => &resumed,
                Mode::Resume => {
                    // Killed before its first checkpoint: nothing to continue from.
                    let _ = std::fs::remove_dir_all(&train_dir);
                    &fresh
                }
                Mode::Fresh => &fresh,
            };
            ok(crate::train::train(args)?, "train")
        })?;
    }
    if stop_after("train") {
        return finish(&r);
    }

    // 6. eval
    if config.enabled("eval", true) {
        let sec = config.section("eval");
        let report = p("report");
        let mut cmd = vec!["-o".into(), s(&report), "--index".into(), s(&index)];
        let questions = if use_raft { raft.clone() } else { qa.clone() };
        cmd.extend(["--questions".into(), s(&questions)]);
        let mut inputs = vec![index.clone(), questions];
        let mut models = vec![embedder.clone()];
        let mut notes = Vec::new();
        if use_raft {
            let nonempty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
            let set =
                ["test", "valid", "train"].into_iter().map(|sp| (sp, raft_file(sp, "eval"))).find(|f| nonempty(&f.1));
            if let Some((split, set)) = set {
                if split == "train" {
                    notes.push("open-book QA on the train split: the test and valid splits are empty (too few documents), so these scores measure fitting, not generalization".to_string());
                } else {
                    notes.push(format!("open-book QA on the {split} split (documents held out of training)"));
                }
                cmd.extend(["--qa-set".into(), s(&set), "--base".into(), s(&base)]);
                inputs.push(set);
                models.push(base.clone());
                if use_train {
                    cmd.extend(["--adapter".into(), s(&train_dir.join("adapter"))]);
                    inputs.push(train_dir.join("adapter"));
                }
                if let Some(sys) =
                    raft_sec.get("system_prompt").or_else(|| raft_sec.get("system-prompt")).and_then(|v| v.as_str())
                {
                    cmd.extend(["--system-prompt".into(), sys.to_string()]);
                }
            }
        }
        if use_train {
            cmd.extend(["--train-run".into(), s(&train_dir)]);
            inputs.push(train_dir.join("metrics.jsonl"));
        }
        for n in notes {
            cmd.extend(["--note".into(), n]);
        }
        cmd.extend(flags(&sec, reserved("eval"))?);
        quiet(&mut cmd, r.quiet);
        let args: crate::eval::EvalArgs = parse("eval", &cmd)?;
        let plan = Plan {
            name: "eval",
            command: cmd,
            settings: sec,
            inputs,
            models,
            prompts: false,
            outputs: vec![report.clone()],
            clean: vec![report.clone()],
        };
        r.stage(plan, |_| crate::eval::evaluate(&args).map(|_| ()))?;
        println!("report: {}", report.join("report.md").display());
    }
    finish(&r)
}

/// Flags `docraft run` sets itself, per stage.
const RESERVED: &[(&str, &[&str])] = &[
    ("ingest", &["output", "report"]),
    ("index", &["output"]),
    ("qa", &["output"]),
    ("export", &["output"]),
    ("raft", &["output", "index"]),
    ("train", &["output", "base", "data", "valid", "resume"]),
    ("eval", &["output", "index", "questions", "qa-set", "base", "adapter", "train-run"]),
];

fn reserved(stage: &str) -> &'static [&'static str] {
    RESERVED.iter().find(|r| r.0 == stage).map_or(&[], |r| r.1)
}

/// Parses every stage's table before anything runs, so a typo fails at once, naming the
/// section and the flag, rather than after an hour of generation.
fn check_config(config: &Config) -> Result<()> {
    let x = || "x".to_string();
    for stage in STAGES {
        let sec = config.section(stage);
        let mut argv = match stage {
            "train" => vec!["--base".into(), x(), "--data".into(), x(), "-o".into(), x()],
            "eval" => vec!["-o".into(), x()],
            _ => vec![x(), "-o".into(), x()],
        };
        if stage == "export" && !sec.contains_key("format") {
            argv.extend(["--format".into(), "openai-chat".into()]);
        }
        argv.extend(flags(&sec, reserved(stage)).map_err(|e| anyhow::anyhow!("[{stage}] in the config: {e}"))?);
        match stage {
            "ingest" => parse::<crate::IngestArgs>(stage, &argv).map(drop),
            "index" => parse::<crate::search::IndexBuildArgs>(stage, &argv).map(drop),
            "qa" => parse::<crate::qa::GenerateArgs>(stage, &argv).map(drop),
            "export" => parse::<crate::qa::ExportArgs>(stage, &argv).map(drop),
            "raft" => parse::<crate::raft::RaftArgs>(stage, &argv).map(drop),
            "train" => parse::<crate::train::TrainArgs>(stage, &argv).map(drop),
            _ => parse::<crate::eval::EvalArgs>(stage, &argv).map(drop),
        }?;
    }
    Ok(())
}

fn finish(r: &Runner) -> Result<ExitCode> {
    println!("manifest: {}", r.manifest_path().display());
    Ok(ExitCode::SUCCESS)
}
