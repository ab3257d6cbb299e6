//! Training throughput of LoRA on SmolLM2-135M: tokens/s and peak memory, the figures
//! docs/BENCHMARKS.md compares with PyTorch + peft (scripts/bench_peft.sh runs the same setup).
//!
//! Batch 4 × 256 contiguous tokens of text (labels = inputs), rank 16, alpha 32, all seven
//! projections, AdamW (lr 2e-4, weight decay 0.01), 2 warmup steps then 10 timed ones.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p docraft-train --example bench_train -- GGUF TEXT [DROPOUT]
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use docraft_train::{AdamW, Adapter, BaseModel, Inputs, Llama, LoraConfig, Target};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let gguf = args.get(1).context("usage: bench_train GGUF TEXT [DROPOUT]")?;
    let text_path = args.get(2).context("usage: bench_train GGUF TEXT [DROPOUT]")?;
    let dropout: f64 = args.get(3).map_or(Ok(0.0), |s| s.parse())?;
    let (bs, seq, warm, steps) = (4usize, 256usize, 2usize, 10usize);
    let dev = Device::Cpu;
    let base = BaseModel::load(std::path::Path::new(gguf), &dev)?;
    let model = Llama::new(&base, DType::F32, &dev)?;
    let text = std::fs::read_to_string(text_path)?;
    let ids = base.tokenizer()?.encode(text.as_str(), false).map_err(anyhow::Error::msg)?.get_ids().to_vec();
    let need = (warm + steps) * bs * seq;
    anyhow::ensure!(ids.len() >= need, "text too short: {} < {need} tokens", ids.len());
    let cfg = LoraConfig { rank: 16, alpha: 32.0, dropout, targets: Target::ALL.to_vec(), use_rslora: false };
    let adapter = Adapter::new(model.config(), cfg, 0, DType::F32, &dev)?;
    let vars: Vec<_> = adapter.named_vars().into_iter().map(|(_, v)| v.clone()).collect();
    let refs: Vec<_> = vars.iter().collect();
    let mut opt = AdamW::new(&refs, 0.9, 0.999, 1e-8, 0.01)?;
    let rss_loaded = docraft_train::peak_rss_mib().unwrap_or(0.0);
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut forward_s = Vec::new();
    for step in 0..warm + steps {
        let t = Instant::now();
        let rows: Vec<Vec<u32>> =
            (0..bs).map(|b| ids[(step * bs + b) * seq..(step * bs + b + 1) * seq].to_vec()).collect();
        let segments = vec![vec![0u32; seq]; bs];
        let inputs = Inputs::new(&rows, &segments, DType::F32, &dev)?;
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (b, row) in rows.iter().enumerate() {
            for p in 0..seq - 1 {
                positions.push((b * seq + p) as u32);
                targets.push(row[p + 1]);
            }
        }
        let drop = docraft_train::Dropout::new(dropout, 0, step as u64);
        let hidden = model.hidden(&inputs, Some(&adapter), Some(&drop))?;
        let out = model.loss(&hidden, &positions, &targets)?;
        let loss = (out.sum / out.tokens as f64)?;
        let forward = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        forward_s.push(forward);
        let g: Vec<_> = vars.iter().map(|v| grads.get(v.as_tensor()).cloned()).collect();
        opt.step(&refs, &g, 2e-4)?;
        times.push(t.elapsed().as_secs_f64());
        losses.push(loss.to_scalar::<f32>()?);
    }
    let timed: f64 = times[warm..].iter().sum();
    let mut sorted = times[warm..].to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "bench": "train_lora_candle", "threads": candle_core::utils::get_num_threads(), "bs": bs, "seq": seq,
            "rank": 16, "targets": "all", "dropout": dropout, "steps": steps,
            "trainable_params": adapter.parameter_count(),
            "forward_s": forward_s.iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "step_s": times.iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "tokens_per_s": ((steps * bs * seq) as f64 / timed * 10.0).round() / 10.0,
            "median_step_tokens_per_s": ((bs * seq) as f64 / sorted[steps / 2] * 10.0).round() / 10.0,
            "loss_first_last": [losses[0], losses[losses.len() - 1]],
            "rss_after_load_mib": rss_loaded.round(), "peak_rss_mib": docraft_train::peak_rss_mib().unwrap_or(0.0).round(),
        })
    );
    Ok(())
}
