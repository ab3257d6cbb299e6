#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `docraft run` end to end on a subset of the fixtures with the real models (SmolLM2 GGUF,
//! USE-m3): every output file, the manifest's hashes and lineage, the report; a
//! run killed during generation and one killed during training resume; a second run is a
//! no-op; a changed setting redoes only its stage.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use common::{fixtures, s};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CONFIG: &str = r#"
[raft]
questions-per-chunk = 1
limit = 4
seed = 1
max-tokens = 256
system-prompt = "Answer from the documents."
# SmolLM2-135M writes almost no real question: the quality checks (tested on their own in
# qa-gen and raft) would leave nothing for this test of the run's mechanics.
no-question-filter = true
no-passage-filter = true
no-answer-filter = true
min-answer-support = 0.0

[train]
max-steps = 6
batch-size = 1
micro-batch-size = 1
max-seq-len = 384
learning-rate = 2e-4
lora-rank = 4
lora-alpha = 8
checkpoint-every = 2
eval-every = 3

[eval]
limit = 2
max-tokens = 40
"#;

fn docs() -> Vec<PathBuf> {
    ["release-notes.md", "guia-es.md"].iter().map(|f| fixtures().join("docs").join(f)).collect()
}

fn args(run: &Path, config: &Path) -> Vec<String> {
    let mut a = vec!["run".to_string()];
    a.extend(docs().iter().map(|d| s(d).to_string()));
    a.extend(["-o", s(run), "--config", s(config), "--quiet"].map(String::from));
    a
}

fn spawn(run: &Path, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(args(run, config))
        .env_remove("OMP_WAIT_POLICY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn run_to_end(run: &Path, config: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_docraft")).args(args(run, config)).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn kill_when(mut child: Child, what: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < Duration::from_secs(600), "{what} never happened");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn sha256(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut b = Vec::new();
    f.read_to_end(&mut b).unwrap();
    format!("{:x}", Sha256::digest(&b))
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn mtimes(dir: &Path) -> HashMap<PathBuf, SystemTime> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(mtimes(&p));
        } else {
            out.insert(p.clone(), p.metadata().unwrap().modified().unwrap());
        }
    }
    out
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn run_end_to_end_resumes_after_kills_and_then_does_nothing() {
    common::require_models();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("docraft.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let run = tmp.path().join("run");

    // 1. Killed during generation (questions being written).
    let progress = run.join("raft.questions.progress.jsonl");
    kill_when(spawn(&run, &config), "question generation", || {
        std::fs::read_to_string(&progress).is_ok_and(|t| t.lines().count() >= 1)
    });
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["stages"]["raft"]["status"], "running");
    assert_eq!(manifest["stages"]["ingest"]["status"], "done");

    // 2. Resumed, then killed during training, after its first checkpoint.
    let ckpt = run.join("train/checkpoints/step-000002/state.json");
    kill_when(spawn(&run, &config), "a training checkpoint", || ckpt.exists());
    assert!(!run.join("train/adapter").exists(), "training finished before the kill; make it longer");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["stages"]["raft"]["status"], "done");
    assert_eq!(manifest["stages"]["train"]["status"], "running");

    // 3. Resumed to the end.
    let out = run_to_end(&run, &config);
    for stage in ["ingest", "index", "raft"] {
        assert!(out.contains(&format!("[{stage}] unchanged, skipped")), "{out}");
    }
    assert!(out.contains("[train] resuming the interrupted run"), "{out}");
    assert!(out.contains("[eval] running"), "{out}");
    let events = std::fs::read_to_string(run.join("train/events.jsonl")).unwrap();
    assert!(events.contains("resumed from checkpoint step"), "{events}");

    // Every output is there.
    for f in [
        "chunks.jsonl",
        "ingest-report.json",
        "index/index.json",
        "raft.jsonl",
        "raft.questions.jsonl",
        "raft.rejected.jsonl",
        "raft.train.chat.jsonl",
        "raft.train.eval.jsonl",
        "raft.train.hf.jsonl",
        "raft.train.completion.jsonl",
        "train/adapter/adapter_model.safetensors",
        "train/adapter/adapter_config.json",
        "train/metrics.jsonl",
        "report/report.md",
        "report/report.json",
        "report/loss.svg",
        "report/qa.svg",
        "report/retrieval.svg",
        "report/qa.base.jsonl",
        "report/qa.adapter.jsonl",
        "config.toml",
        "manifest.json",
    ] {
        assert!(run.join(f).is_file(), "{f} is missing");
    }
    // Questions were not duplicated by the resumed generation.
    let records = lines(&run.join("raft.jsonl"));
    assert!(!records.is_empty(), "no RAFT record was accepted");
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate RAFT records after the resume");
    // One metrics line per step.
    let steps: Vec<u64> = lines(&run.join("train/metrics.jsonl")).iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());

    // The manifest: hashes of the documents and of every file output; lineage of records.
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    for d in docs() {
        assert_eq!(manifest["documents"][s(&d)], sha256(&d), "{}", d.display());
    }
    let gguf = docraft_core::models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(manifest["stages"]["raft"]["models"][s(&gguf)], sha256(&gguf));
    assert!(manifest["stages"]["raft"]["prompts"]["raft/cot.system.en.txt"].is_string());
    for stage in ["ingest", "index", "raft", "train", "eval"] {
        let st = &manifest["stages"][stage];
        assert_eq!(st["status"], "done", "{stage}");
        assert_eq!(st["fingerprint"].as_str().unwrap().len(), 64);
        for (rel, hash) in st["outputs"].as_object().unwrap() {
            let p = run.join(rel);
            if p.is_file() {
                assert_eq!(hash.as_str().unwrap(), sha256(&p), "{stage}: {rel}");
            }
        }
        for (rel, hash) in st["inputs"].as_object().unwrap() {
            let p = if Path::new(rel).is_absolute() { PathBuf::from(rel) } else { run.join(rel) };
            if p.is_file() {
                assert_eq!(hash.as_str().unwrap(), sha256(&p), "{stage} input {rel}");
            }
        }
    }
    assert_eq!(manifest["stages"]["raft"]["inputs"]["chunks.jsonl"], sha256(&run.join("chunks.jsonl")));
    let chunks: HashMap<String, Value> =
        lines(&run.join("chunks.jsonl")).into_iter().map(|c| (c["id"].as_str().unwrap().to_string(), c)).collect();
    for r in &records {
        let o = &r["meta"];
        let c = &chunks[o["chunk_id"].as_str().unwrap()];
        assert_eq!(o["doc_id"], c["doc_id"]);
        assert_eq!(o["source"], c["source"]);
        assert_eq!(o["span"], c["span"]);
        assert_eq!(r["oracle_context"], c["text"]);
        assert!(manifest["documents"][o["source"].as_str().unwrap()].is_string(), "the source is a listed document");
    }

    // The report: retrieval scores, both models, the loss plot.
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("## Retrieval") && md.contains("recall@1") && md.contains("MRR"), "{md}");
    assert!(md.contains("| base |") && md.contains("| base + adapter |"), "{md}");
    assert!(md.contains("## Training") && md.contains("6 steps"), "{md}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report/report.json")).unwrap()).unwrap();
    assert_eq!(report["qa"][0]["questions"], report["qa"][1]["questions"]);
    assert!(report["retrieval"][1]["questions"].as_u64().unwrap() >= 1);
    assert!(std::fs::read_to_string(run.join("report/loss.svg")).unwrap().contains("<polyline"));

    // 4. A second run is a no-op: every stage skipped, no file touched.
    let before = mtimes(&run);
    let out = run_to_end(&run, &config);
    for stage in ["ingest", "index", "raft", "train", "eval"] {
        assert!(out.contains(&format!("[{stage}] unchanged, skipped")), "{out}");
    }
    let after = mtimes(&run);
    for (p, t) in &before {
        if !p.ends_with("manifest.json") {
            assert_eq!(after.get(p), Some(t), "{} was rewritten", p.display());
        }
    }

    // 5. A changed setting redoes its stage only.
    std::fs::write(&config, CONFIG.replace("limit = 2", "limit = 1")).unwrap();
    let out = run_to_end(&run, &config);
    assert!(out.contains("[train] unchanged, skipped") && out.contains("[eval] running"), "{out}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report/report.json")).unwrap()).unwrap();
    assert_eq!(report["qa"][0]["questions"], 1);
}

#[test]
fn run_refuses_a_bad_config_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[raft]\nquestions-per-chunck = 2\n").unwrap();
    let run = tmp.path().join("run");
    let docs = fixtures().join("docs/release-notes.md");
    let o = common::docraft(&["run", s(&docs), "-o", s(&run), "--config", s(&config), "--until", "raft", "--quiet"])
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("[raft]") && err.contains("`questions-per-chunck`"), "{err}");
    assert!(err.contains("did you mean `questions_per_chunk`"), "{err}");
    std::fs::write(&config, "[rafts]\n").unwrap();
    let o = common::docraft(&["run", s(&docs), "-o", s(&run), "--config", s(&config)]).unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown section [rafts]"));
    std::fs::write(&config, "[train]\noutput = \"x\"\n").unwrap();
    let o = common::docraft(&["run", s(&docs), "-o", s(&run), "--config", s(&config)]).unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("set by docraft run itself"));
}
