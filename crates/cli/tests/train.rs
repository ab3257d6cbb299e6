//! `docraft train` / `convert` / `merge` / `chat` on a small random llama written in Hugging Face
//! layout: a run killed with SIGKILL and resumed ends with the adapter of an uninterrupted run;
//! metrics, events, checkpoints and a peft-layout adapter are written; merge and chat work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use common::{docraft, fixtures, s};
use docraft_train::{BaseModel, CHATML, EosIds, Llama, ModelConfig, byte_tokenizer_json};

fn tiny_model(dir: &Path) {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut config = ModelConfig::tiny(256 + specials.len(), 128, 4);
    config.eos_token_id = Some(EosIds::One(2));
    let model = Llama::random(&config, 11, DType::F32, &Device::Cpu).unwrap();
    BaseModel {
        config,
        weights: model.weights(),
        tokenizer_json: byte_tokenizer_json(&specials),
        chat_template: CHATML.to_string(),
        bos: Some("<|im_start|>".into()),
        eos: Some("<|im_end|>".into()),
        source: dir.to_path_buf(),
    }
    .save_hf(dir)
    .unwrap();
}

fn tensors(p: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

#[test]
fn train_resumes_after_kill_9_on_the_same_trajectory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("base");
    tiny_model(&base);
    let data = fixtures().join("train/chat.jsonl");
    let valid = fixtures().join("train/chat.valid.jsonl");
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--base",
            s(&base),
            "--data",
            s(&data),
            "--valid",
            s(&valid),
            "-o",
            s(out),
            "--epochs",
            "10",
            "--batch-size",
            "1",
            "--micro-batch-size",
            "1",
            "--learning-rate",
            "1e-3",
            "--lora-rank",
            "8",
            "--lora-alpha",
            "16",
            "--checkpoint-every",
            "10",
            "--eval-every",
            "40",
            "--quiet",
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let straight = tmp.path().join("straight");
    let o = Command::new(env!("CARGO_BIN_EXE_docraft")).args(args(&straight)).output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("120 steps") && stdout.contains("valid loss"), "{stdout}");

    let run = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_docraft")).args(args(&run)).spawn()?;
    let t0 = Instant::now();
    while !run.join("checkpoints/step-000030/state.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    assert!(!run.join("adapter").exists(), "the run finished before it could be killed; make it longer");
    let o = docraft(&args(&run).iter().map(String::as_str).chain(["--resume"]).collect::<Vec<_>>())?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resumed from step"));

    let a = tensors(&straight.join("adapter/adapter_model.safetensors"));
    let b = tensors(&run.join("adapter/adapter_model.safetensors"));
    assert_eq!(a.len(), 4 * 7 * 2);
    for (k, v) in &a {
        let d = (v - &b[k])?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d <= 1e-5, "{k}: resumed adapter differs by {d}");
    }
    // One metrics line per step, no duplicates from the killed attempt; events tell the story.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl"))?;
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=120).collect::<Vec<_>>());
    let events = std::fs::read_to_string(run.join("events.jsonl"))?;
    for e in [
        "started:",
        "epoch 1 started",
        "evaluation at step 40",
        "checkpoint saved",
        "resumed from checkpoint",
        "finished",
    ] {
        assert!(events.contains(e), "events lack {e}: {events}");
    }
    let kept: Vec<_> = std::fs::read_dir(run.join("checkpoints"))?.flatten().map(|e| e.file_name()).collect();
    assert_eq!(kept.len(), 3, "the newest 3 checkpoints are kept: {kept:?}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json"))?)?;
    assert_eq!(config["settings"]["lora_rank"], 8);
    assert_eq!(config["resolved"]["total_steps"], 120);

    // Merge writes an HF model whose greedy answers equal base + adapter's.
    let merged = tmp.path().join("merged");
    let adapter = run.join("adapter");
    let o = docraft(&["merge", "--base", s(&base), "--adapter", s(&adapter), "-o", s(&merged)])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = "¿Cada cuánto se hacen las copias de seguridad?";
    let with_adapter = docraft(&["chat", "--base", s(&base), "--adapter", s(&adapter), "--max-tokens", "40", q])?;
    let with_merged = docraft(&["chat", "--base", s(&merged), "--max-tokens", "40", q])?;
    assert!(with_adapter.status.success(), "{}", String::from_utf8_lossy(&with_adapter.stderr));
    assert_eq!(String::from_utf8_lossy(&with_adapter.stdout), String::from_utf8_lossy(&with_merged.stdout));
    Ok(())
}

#[test]
fn train_refuses_bad_settings_and_names_bad_lines() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("base");
    tiny_model(&base);
    let out = tmp.path().join("run");
    let o = docraft(&["train", "--base", s(&base), "--data", "x.jsonl", "-o", s(&out), "--learning-rate", "0.5"])?;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("learning_rate") && err.contains("0.001"), "{err}");
    let data = tmp.path().join("mixed.jsonl");
    let good = std::fs::read_to_string(fixtures().join("train/chat.jsonl"))?;
    std::fs::write(&data, format!("{good}{{\"oops\": 1}}\n"))?;
    let o = docraft(&["train", "--base", s(&base), "--data", s(&data), "-o", s(&out), "--max-steps", "2", "--quiet"])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mixed.jsonl:13: expected `messages`"), "{err}");
    let events = std::fs::read_to_string(out.join("events.jsonl"))?;
    assert!(events.contains("mixed.jsonl:13") && events.contains("\"level\":\"error\""), "{events}");
    Ok(())
}
