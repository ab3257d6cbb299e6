//! The trainer on a tiny random llama: gradients, memorization, resume, merge, PEFT layout, data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{FACTS, FiniteDiff, tiny_base, write_chat};
use docraft_core::train::{CheckpointState, EventKind, TrainEvent};
use docraft_core::{CancelToken, NoProgress};
use docraft_train::data::{Dataset, Encoder, Example};
use docraft_train::{Adapter, BatchSize, Inputs, Llama, LoraConfig, RunFiles, Settings, StepInfo, Target, Trainer};

fn encoder(base: &docraft_train::BaseModel, max_len: usize) -> Encoder {
    Encoder::new(base.tokenizer().unwrap(), base.template().unwrap(), base.eos.clone(), max_len)
}

fn settings() -> Settings {
    Settings {
        epochs: 2,
        learning_rate: 1e-3,
        batch_size: BatchSize::Fixed(4),
        micro_batch_size: 2,
        lora_rank: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.1,
        checkpoint_every: 3,
        eval_every: 2,
        ..Settings::default()
    }
}

fn adapter_values(dir: &std::path::Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap()
}

/// An adapter on all seven projections (alpha = 2·rank) in the model's dtype, with every B random
/// (B starts at zero, which would hide bugs in A's path).
fn random_adapter(model: &Llama, rank: usize, seed: u64, std: f64) -> Adapter {
    let cfg =
        LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0, targets: Target::ALL.to_vec(), use_rslora: false };
    let adapter = Adapter::new(model.config(), cfg, seed, model.dtype(), &Device::Cpu).unwrap();
    for pair in adapter.layers.iter().flat_map(|row| row.iter().flatten()) {
        pair.b.set(&pair.b.as_tensor().randn_like(0.0, std).unwrap()).unwrap();
    }
    adapter
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn lora_gradients_match_finite_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path(), 1);
    let model = Llama::new(&base, DType::F64, &Device::Cpu).unwrap();
    // Non-zero B so that A's gradient is not trivially zero.
    let adapter = random_adapter(&model, 4, 7, 0.05);
    let ids: Vec<u32> = "Hola, mundo: 42".bytes().map(|b| u32::from(b) + 3).collect();
    let inputs = Inputs::single(&ids, DType::F64, &Device::Cpu).unwrap();
    let rows: Vec<u32> = (0..ids.len() as u32 - 1).collect();
    let targets: Vec<u32> = ids[1..].to_vec();
    let loss = |a: &Adapter| -> f64 {
        let h = model.hidden(&inputs, Some(a), None).unwrap();
        model.loss(&h, &rows, &targets).unwrap().sum.to_scalar::<f64>().unwrap()
    };
    let h = model.hidden(&inputs, Some(&adapter), None).unwrap();
    let grads = model.loss(&h, &rows, &targets).unwrap().sum.backward().unwrap();
    let fd = FiniteDiff { eps: 1e-5, rel: 1e-3, abs: 1e-7 };
    let mut checked = 0;
    for (name, var) in adapter.named_vars().into_iter().step_by(3) {
        let g = grads.get(var.as_tensor()).expect("every LoRA tensor gets a gradient");
        let n = var.as_tensor().elem_count();
        checked += fd.check(&name, var, g, [0, n / 2, n - 1], || loss(&adapter)).unwrap();
    }
    assert!(checked >= 30, "checked {checked} entries");
}

#[test]
fn loss_falls_near_zero_on_a_memorization_set() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(&tmp.path().join("base"), 2);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    // Plain texts: every token after the first is determined by the ones before it.
    let texts = ["Madrid es la capital de España.", "Blue is the colour of the sky.", "Cervantes wrote Don Quijote."];
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({ "text": t }).to_string()).collect();
    let data = tmp.path().join("train.jsonl");
    std::fs::write(&data, vec![lines.join("\n"); 32].join("\n")).unwrap();
    let valid_path = tmp.path().join("valid.jsonl");
    std::fs::write(&valid_path, lines.join("\n")).unwrap();
    let enc = encoder(&base, 256);
    let train = Dataset::load(&data, &enc).unwrap();
    let valid = Dataset::load(&valid_path, &enc).unwrap();
    let s = Settings {
        epochs: 10,
        learning_rate: 1e-3,
        batch_size: BatchSize::Fixed(4),
        micro_batch_size: 4,
        lora_rank: 32,
        lora_alpha: 64.0,
        lora_dropout: 0.0,
        warmup_steps: Some(5),
        scheduler: docraft_train::Schedule::Constant,
        eval_every: 0,
        ..Settings::default()
    };
    let mut t = Trainer::new(&model, s, train, &tmp.path().join("run")).unwrap().with_valid(valid);
    let before = t.evaluate().unwrap().0;
    let report = t.run(&NoProgress).unwrap();
    let after = report.valid_loss.unwrap();
    assert!(before > 2.0, "a random model starts far off: {before}");
    assert!(after < 0.1, "memorized set should reach near-zero loss: {before} -> {after}");
    assert!(report.valid_accuracy.unwrap() > 0.97);
}

#[test]
fn resumed_run_follows_the_same_trajectory() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(&tmp.path().join("base"), 3);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    let data = write_chat(&tmp.path().join("train.jsonl"), &FACTS, 3);
    let enc = encoder(&base, 256);
    let load = || Dataset::load(&data, &enc).unwrap();
    // 12 examples, batch 4: 3 steps per epoch, 6 in all; checkpoints every 3.
    let straight = tmp.path().join("straight");
    let r = Trainer::new(&model, settings(), load(), &straight).unwrap().run(&NoProgress).unwrap();
    assert_eq!((r.steps, r.total_steps), (6, 6));

    let split = tmp.path().join("split");
    let r1 = Trainer::new(&model, settings(), load(), &split).unwrap().with_stop_after(4).run(&NoProgress).unwrap();
    assert!(r1.stopped_early && !split.join("adapter").exists());
    // Without --resume the directory is refused, so a run is never overwritten by accident.
    let err = Trainer::new(&model, settings(), load(), &split).unwrap().run(&NoProgress).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let r2 = Trainer::new(&model, settings(), load(), &split).unwrap().with_resume(true).run(&NoProgress).unwrap();
    assert_eq!(r2.resumed_from, Some(3), "the step-4 progress after the checkpoint is redone");
    let a = adapter_values(&straight.join("adapter"));
    let b = adapter_values(&split.join("adapter"));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        let d = max_diff(v, &b[k]);
        assert!(d <= 1e-6, "{k} differs by {d}");
    }
    // The metrics of the resumed run line up with the straight run's, one line per step.
    let steps = |dir: &std::path::Path| -> Vec<(u64, f64)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["step"].as_u64().unwrap(), v["train_loss"].as_f64().unwrap()))
            .collect()
    };
    let (sa, sb) = (steps(&straight), steps(&split));
    assert_eq!(sa.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(sb.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    for (x, y) in sa.iter().zip(&sb) {
        assert!((x.1 - y.1).abs() < 1e-5, "step {}: {} vs {}", x.0, x.1, y.1);
    }
    // Events: started once, resumed once, finished; checkpoints kept within the limit.
    let events = std::fs::read_to_string(split.join("events.jsonl")).unwrap();
    assert_eq!(events.matches("\"started:").count() + events.matches("started: ").count() / 2, 1, "{events}");
    assert!(events.contains("resumed from checkpoint step 3") && events.contains("finished"));
    // A third run with --resume is a no-op that keeps the adapter.
    let r3 = Trainer::new(&model, settings(), load(), &split).unwrap().with_resume(true).run(&NoProgress).unwrap();
    assert_eq!((r3.resumed_from, r3.steps), (Some(6), 6));
}

#[test]
fn a_cancelled_run_checkpoints_where_it_stopped_and_resumes_to_the_same_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(&tmp.path().join("base"), 3);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    let data = write_chat(&tmp.path().join("train.jsonl"), &FACTS, 3);
    let enc = encoder(&base, 256);
    let load = || Dataset::load(&data, &enc).unwrap();
    // 6 steps, checkpoints every 3.
    let straight = tmp.path().join("straight");
    Trainer::new(&model, settings(), load(), &straight).unwrap().run(&NoProgress).unwrap();

    // Cancelled from the progress callback at step 4, between two regular checkpoints.
    let run = tmp.path().join("cancelled");
    let token = CancelToken::new();
    let steps = std::sync::Mutex::new(Vec::new());
    let progress = |i: &StepInfo| {
        steps.lock().unwrap().push(i.step);
        if i.step == 4 {
            token.cancel();
        }
    };
    // A validation set (evaluated every 2 steps) fills the checkpoint's validation metrics.
    let r = Trainer::new(&model, settings(), load(), &run)
        .unwrap()
        .with_valid(load())
        .with_cancel(token.clone())
        .run(&progress)
        .unwrap();
    assert_eq!(*steps.lock().unwrap(), vec![1, 2, 3, 4], "no step after the cancel");
    assert!(r.cancelled && r.stopped_early && !run.join("adapter").exists());
    assert_eq!(r.steps, 4);
    let (step, dir) = RunFiles::new(&run).latest_checkpoint().unwrap();
    assert_eq!(step, 4, "a checkpoint at the step reached");
    let state: CheckpointState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!((state.step, state.optimizer_steps, state.metrics.step), (4, 4, Some(4.0)));
    let acc = state.metrics.train_mean_token_accuracy.unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    let m = &state.metrics;
    assert!(m.valid_loss.is_some_and(f64::is_finite), "evaluated at step 4 (every 2)");
    assert_eq!((m.full_valid_loss, m.full_valid_mean_token_accuracy), (m.valid_loss, m.valid_mean_token_accuracy));
    let events: Vec<TrainEvent> = std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap().kind, Some(EventKind::Cancelled));

    let r = Trainer::new(&model, settings(), load(), &run).unwrap().with_resume(true).run(&NoProgress).unwrap();
    assert_eq!((r.resumed_from, r.steps, r.cancelled), (Some(4), 6, false));
    let a = adapter_values(&straight.join("adapter"));
    let b = adapter_values(&run.join("adapter"));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        let d = max_diff(v, &b[k]);
        assert!(d <= 1e-6, "{k} differs by {d}");
    }
}

#[test]
fn a_resumed_run_without_checkpoint_starts_over_without_duplicate_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(&tmp.path().join("base"), 3);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    let data = write_chat(&tmp.path().join("train.jsonl"), &FACTS, 3);
    let enc = encoder(&base, 256);
    let run = tmp.path().join("run");
    // Killed (here: stopped) after 2 steps, before the first checkpoint at step 3.
    let r = Trainer::new(&model, settings(), Dataset::load(&data, &enc).unwrap(), &run)
        .unwrap()
        .with_stop_after(2)
        .run(&NoProgress)
        .unwrap();
    assert!(r.stopped_early && RunFiles::new(&run).latest_checkpoint().is_none());
    let r = Trainer::new(&model, settings(), Dataset::load(&data, &enc).unwrap(), &run)
        .unwrap()
        .with_resume(true)
        .run(&NoProgress)
        .unwrap();
    assert_eq!((r.resumed_from, r.steps), (None, 6));
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn merged_weights_give_the_logits_of_base_plus_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path(), 4);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    let adapter = random_adapter(&model, 8, 9, 0.1);
    let ids: Vec<u32> = "merge me".bytes().map(|b| u32::from(b) + 3).collect();
    let inputs = Inputs::single(&ids, DType::F32, &Device::Cpu).unwrap();
    let with = model.logits(&model.hidden(&inputs, Some(&adapter), None).unwrap()).unwrap();
    let plain = model.logits(&model.hidden(&inputs, None, None).unwrap()).unwrap();
    let merged = model.merged(&adapter).unwrap();
    // Plain tensors, not a graph over the adapter's variables: decoding with the merged model
    // must not record (and keep alive) the activations of every token.
    for (name, w) in merged.weights() {
        assert!(!w.track_op(), "{name} is tracked by autograd");
    }
    let m = merged.logits(&merged.hidden(&inputs, None, None).unwrap()).unwrap();
    assert!(!m.track_op(), "the merged model's logits carry an autograd graph");
    assert!(max_diff(&with, &plain) > 1e-2, "the adapter must change the logits for this test to mean anything");
    assert!(max_diff(&with, &m) < 1e-4, "merged {}", max_diff(&with, &m));
    // The cached (generation) path agrees with the full forward on the last position.
    let mut cache = docraft_train::KvCache::default();
    let _ = merged.forward_cached(&ids[..3], &mut cache, None).unwrap();
    let last = merged.forward_cached(&ids[3..], &mut cache, None).unwrap();
    assert!(max_diff(&last, &m.get(ids.len() - 1).unwrap()) < 1e-4);
}

#[test]
fn adapter_has_peft_names_and_shapes_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(&tmp.path().join("base"), 5);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.05,
        targets: vec![Target::Q, Target::V, Target::Down],
        use_rslora: false,
    };
    let adapter = Adapter::new(&base.config, cfg, 1, DType::F32, &Device::Cpu).unwrap();
    let out = tmp.path().join("adapter");
    adapter.save_peft(&out, "base").unwrap();
    let t = adapter_values(&out);
    assert_eq!(t.len(), 2 * 3 * 2);
    let q_a = &t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    assert_eq!(q_a.dims(), &[4, 64]);
    assert_eq!(t["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].dims(), &[64, 4]);
    assert_eq!(t["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"].dims(), &[32, 4]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["target_modules"], serde_json::json!(["down_proj", "q_proj", "v_proj"]));
    let back = Adapter::load_peft(&out, &base.config, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(back.config.targets, vec![Target::Q, Target::V, Target::Down]);
    assert_eq!(max_diff(back.layers[0][0].as_ref().unwrap().a.as_tensor(), q_a), 0.0);
    // A wrong shape is refused with the tensor's name.
    let other = tiny_base(&tmp.path().join("wide"), 5);
    let mut wide = other.config.clone();
    wide.hidden_size = 128;
    let err = Adapter::load_peft(&out, &wide, DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("q_proj.lora_A.weight"), "{err}");
}

#[test]
fn chat_loss_covers_exactly_the_assistant_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path(), 6);
    let enc = encoder(&base, 512);
    let ex = Example::from_json(&serde_json::json!({"messages": [
        {"role": "user", "content": "¿Dónde está Sevilla?"},
        {"role": "assistant", "content": "En Andalucía."},
        {"role": "user", "content": "¿Y Bilbao?"},
        {"role": "assistant", "content": "En el País Vasco.", "weight": 0},
    ]}))
    .unwrap();
    let t = enc.encode(&ex, 1).unwrap();
    let target_ids: Vec<u32> = t.ids.iter().zip(&t.target).filter(|(_, m)| **m).map(|(i, _)| *i).collect();
    let text = enc.tokenizer().decode(&target_ids, false).unwrap();
    assert_eq!(text, "En Andalucía.<|im_end|>\n", "weight 0 turns and user turns carry no loss");
    // Completion and text-label records: loss on the completion and the end of sequence only.
    let c = Example::from_json(&serde_json::json!({"text": "Q: 2+2?\nA: ", "label": "4"})).unwrap();
    let t = enc.encode(&c, 2).unwrap();
    let ids: Vec<u32> = t.ids.iter().zip(&t.target).filter(|(_, m)| **m).map(|(i, _)| *i).collect();
    assert_eq!(enc.tokenizer().decode(&ids, false).unwrap(), "4<|im_end|>");
    // Cutting at max_seq_len is counted; a cut that leaves nothing to learn is an error, not a silent drop.
    // A long context before the answer loses its middle, not the answer.
    let long = Example::from_json(&serde_json::json!({"messages": [
        {"role": "user", "content": format!("{} ¿Dónde está Sevilla?", "contexto ".repeat(40))},
        {"role": "assistant", "content": "En Andalucía."}]}))
    .unwrap();
    let short = encoder(&base, 96);
    let t = short.encode(&long, 3).unwrap();
    assert!(t.truncated && t.ids.len() == 96);
    let kept = short.tokenizer().decode(&t.ids, false).unwrap();
    assert!(
        kept.starts_with("<|im_start|>user\ncont")
            && kept.ends_with("¿Dónde está Sevilla?<|im_end|>\n<|im_start|>assistant\nEn Andalucía.<|im_end|>\n"),
        "{kept}"
    );
    // Plain text longer than the limit keeps its beginning.
    let text = Example::Text("abcdefghij".repeat(20));
    let t = short.encode(&text, 4).unwrap();
    assert_eq!(short.tokenizer().decode(&t.ids, false).unwrap(), "abcdefghij".repeat(20)[..96]);
}

#[test]
fn bad_lines_are_reported_with_file_and_line_and_the_rest_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path(), 7);
    let path = tmp.path().join("mixed.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\nnot json\n{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n\n{\"text\": \"plain\"}\n",
    )
    .unwrap();
    let d = Dataset::load(&path, &encoder(&base, 64)).unwrap();
    assert_eq!(d.examples.len(), 2);
    let msgs: Vec<String> = d.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].contains("mixed.jsonl:2: not JSON"), "{msgs:?}");
    assert!(msgs[1].contains("mixed.jsonl:3: no assistant turn"), "{msgs:?}");
}

#[test]
fn settings_are_validated_with_their_ranges_and_files_reject_typos() {
    let mut s = Settings { learning_rate: 5e-3, ..Settings::default() };
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("learning_rate") && err.contains("0.001"), "{err}");
    s.learning_rate = 1e-4;
    s.validate().unwrap();
    for (bad, name) in [
        (Settings { epochs: 11, ..Settings::default() }, "epochs"),
        (Settings { lora_rank: 2, ..Settings::default() }, "lora_rank"),
        (Settings { lora_alpha: 100.0, ..Settings::default() }, "lora_alpha"),
        (Settings { lora_dropout: 0.6, ..Settings::default() }, "lora_dropout"),
        (Settings { batch_size: BatchSize::Fixed(300), ..Settings::default() }, "batch_size"),
        (Settings { target_modules: vec!["qkv".into()], ..Settings::default() }, "target_modules"),
    ] {
        assert!(bad.validate().unwrap_err().to_string().contains(name), "{name}");
    }
    assert_eq!(BatchSize::parse("auto").unwrap().resolve(10_000), 20);
    assert_eq!(BatchSize::parse("auto").unwrap().resolve(50), 1);
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("train.yaml");
    std::fs::write(&yaml, "warmup_steps: 7\nbatch_size: auto\ntarget_modules: [q, v]\npacking: true\n").unwrap();
    let s = Settings::from_file(&yaml).unwrap();
    assert_eq!((s.warmup_steps, s.batch_size, s.packing), (Some(7), BatchSize::Auto, true));
    assert_eq!(s.targets().unwrap(), vec![Target::Q, Target::V]);
    std::fs::write(&yaml, "learning_rat: 0.001\n").unwrap();
    let err = Settings::from_file(&yaml).unwrap_err().to_string();
    assert!(err.contains("train.yaml") && err.contains("learning_rat"), "{err}");
}

#[test]
fn packing_keeps_examples_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path(), 8);
    let model = Llama::new(&base, DType::F32, &Device::Cpu).unwrap();
    let enc = encoder(&base, 256);
    let data = write_chat(&tmp.path().join("d.jsonl"), &FACTS[..2], 1);
    let d = Dataset::load(&data, &enc).unwrap();
    let refs: Vec<_> = d.examples.iter().collect();
    let loss_of = |mbs: Vec<docraft_train::data::MicroBatch>| -> f64 {
        mbs.iter()
            .map(|mb| {
                let inputs = Inputs::new(&mb.rows, &mb.segments, DType::F32, &Device::Cpu).unwrap();
                let h = model.hidden(&inputs, None, None).unwrap();
                f64::from(model.loss(&h, &mb.positions, &mb.targets).unwrap().sum.to_scalar::<f32>().unwrap())
            })
            .sum()
    };
    let packed = docraft_train::data::micro_batches(&refs, 4, 2, true, 256);
    assert_eq!(packed.len(), 1);
    assert_eq!(packed[0].rows.len(), 1, "both examples fit one row");
    let padded = docraft_train::data::micro_batches(&refs, 1, 2, false, 128);
    let (a, b) = (loss_of(packed), loss_of(padded));
    assert!((a - b).abs() < 1e-3, "packed {a} vs separate {b}: attention or positions leak across examples");
}
