//! `docraft generate | export | validate` end to end on the fixtures with the real SmolLM2
//! GGUF: counts that add up, kill -9 and resume, remote endpoints refused, exported files
//! that pass our validator and an independent one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{docraft, fixtures, s};
use serde_json::Value;

fn records(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .map_or_else(|_| vec![], |t| t.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

fn chunks(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("chunks.jsonl");
    let o = docraft(&["ingest", s(&fixtures().join("docs")), "-o", s(&out), "-q"]).unwrap();
    assert!(out.exists(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

const FAST: [&str; 8] = ["--threads", "1", "--max-tokens", "128", "-n", "2", "--seed", "3"];

#[test]
#[ignore = "needs scripts/setup.sh"]
fn generate_counts_add_up_and_export_validates() -> anyhow::Result<()> {
    common::require_models();
    let dir = tempfile::tempdir()?;
    let c = chunks(dir.path());
    let qa = dir.path().join("qa.jsonl");
    let mut args = vec!["generate", s(&c), "-o", s(&qa), "--limit", "6", "-q"];
    args.extend(FAST);
    let o = docraft(&args)?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let line = stdout.lines().find(|l| l.starts_with("pairs: ")).expect("summary line");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (generated, accepted, rejected) = (nums[0], nums[1], nums[2]);
    assert_eq!(generated, accepted + rejected);
    assert_eq!(records(&qa).len() as u64, accepted);
    assert_eq!(records(&dir.path().join("qa.rejected.jsonl")).len() as u64, rejected);
    assert_eq!(records(&dir.path().join("qa.progress.jsonl")).len(), 6);
    for r in records(&qa) {
        for key in ["id", "chunk_id", "doc_id", "source", "pages", "question", "answer", "lang", "model", "prompt"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }

    // Export as OpenAI chat and validate it with docraft and with the cookbook's checks.
    let train = dir.path().join("train.jsonl");
    let o = docraft(&[
        "export",
        s(&qa),
        "--format",
        "openai-chat",
        "-o",
        s(&train),
        "--system-prompt",
        "Answer from the handbook.",
    ])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = docraft(&["validate", s(&train), "--format", "openai-chat"])?;
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains(&format!("examples: {accepted}")), "{report}");
    assert_eq!(o.status.success(), accepted >= 10, "{report}");
    if accepted < 10 {
        assert!(report.contains("too_few_examples"), "{report}");
    }
    let py = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_chat_check.py"))
        .arg(&train)
        .output()?;
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));
    assert!(String::from_utf8_lossy(&py.stdout).contains("No errors found"));
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn kill_9_mid_run_then_rerun_covers_every_chunk_exactly_once() -> anyhow::Result<()> {
    common::require_models();
    let dir = tempfile::tempdir()?;
    let c = chunks(dir.path());
    let qa = dir.path().join("qa.jsonl");
    let progress = dir.path().join("qa.progress.jsonl");
    let mut args = vec!["generate", s(&c), "-o", s(&qa), "--limit", "8", "--parallel", "1", "-q"];
    args.extend(FAST);
    let mut child = Command::new(env!("CARGO_BIN_EXE_docraft")).args(&args).spawn()?;
    let start = Instant::now();
    while records(&progress).len() < 3 && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let before = records(&progress).len();
    assert!((3..8).contains(&before), "killed mid-run, not after it ({before} chunks done)");

    let o = docraft(&args)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("({before} done before")), "{stdout}");
    let done = records(&progress);
    let keys: HashSet<&str> = done.iter().map(|d| d["gen_key"].as_str().unwrap()).collect();
    assert_eq!((done.len(), keys.len()), (8, 8), "every chunk exactly once");
    let pairs = records(&qa);
    let ids: HashSet<&str> = pairs.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), pairs.len(), "no duplicate pair");
    assert!(pairs.iter().all(|p| keys.contains(p["gen_key"].as_str().unwrap())));
    let accepted: u64 = done.iter().map(|d| d["accepted"].as_u64().unwrap()).sum();
    let rejected: u64 =
        done.iter().flat_map(|d| d["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap())).sum();
    assert_eq!(pairs.len() as u64, accepted);
    assert_eq!(records(&dir.path().join("qa.rejected.jsonl")).len() as u64, rejected);
    Ok(())
}

#[test]
fn remote_endpoint_is_refused_without_allow_remote() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = dir.path().join("chunks.jsonl");
    std::fs::write(&c, "")?;
    let qa = dir.path().join("qa.jsonl");
    let o = docraft(&[
        "generate",
        s(&c),
        "-o",
        s(&qa),
        "--backend",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--model",
        "gpt-4o-mini",
    ])?;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to send documents to https://api.openai.com/v1") && err.contains("--allow-remote"),
        "{err}"
    );
    assert!(!qa.exists(), "nothing written");
    Ok(())
}
