//! The generation run: counts that add up, resume after a crash at any point without
//! duplicates or gaps, budgets, determinism. The generator here is scripted so each case is
//! exact; the real models run in `llama.rs` and the CLI tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::chunk;
use docraft_core::jsonl::read_all;
use docraft_core::{
    CancelToken, Chunk, FinishReason, GenError, GenRequest, GenResponse, Generator, NoProgress, QaPair, Usage,
};
use docraft_qa_gen::{
    Budget, ChunkDone, GenerateOptions, Generation, Judge, JudgeOptions, Price, Progress, Reason, Rejected, RunFiles,
};

/// Answers from the chunk text in the prompt: a grounded pair, a second one that is
/// invented, and, for chunks mentioning "broken", output that is not JSON.
struct Scripted {
    calls: AtomicUsize,
}

impl Scripted {
    fn new() -> Self {
        Self { calls: AtomicUsize::new(0) }
    }
}

impl Generator for Scripted {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests
            .iter()
            .map(|r| {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let prompt = &r.messages[1].content;
                let text = prompt.split("\"\"\"").nth(1).unwrap_or_default().trim();
                if text.contains("unavailable") {
                    return Err(GenError::Transient("HTTP 503 (after 5 attempts)".into()));
                }
                let out = if text.contains("broken") {
                    "Sorry, I cannot help with that.".to_string()
                } else {
                    let first = text.split('.').next().unwrap_or(text);
                    serde_json::json!({"pairs": [
                        {"question": format!("What does the record say about {first}?"), "answer": format!("{first}.")},
                        {"question": "Who won the football world cup in 1998?", "answer": "France won it in Paris."}
                    ]})
                    .to_string()
                };
                Ok(GenResponse {
                    text: out,
                    finish: FinishReason::Stop,
                    usage: Usage { prompt_tokens: 50, completion_tokens: 30 },
                })
            })
            .collect()
    }

    fn model_id(&self) -> String {
        "scripted".into()
    }

    fn preferred_batch(&self) -> usize {
        3
    }
}

fn chunks() -> Vec<Chunk> {
    let mut v: Vec<Chunk> = (0..10)
        .map(|i| {
            chunk(&format!("doc{i}.md"), &format!("Pump station {i} is inspected every {} weeks by the crew.", i + 2))
        })
        .collect();
    v.push(chunk("broken.md", "This broken chunk makes the model ramble instead of answering."));
    v.push(chunk("down.md", "The endpoint is unavailable for this one, whatever we try."));
    v
}

fn opts() -> GenerateOptions {
    GenerateOptions { questions_per_chunk: 2, ..Default::default() }
}

fn lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

#[test]
fn counts_add_up_and_every_rejection_has_a_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let g = Scripted::new();
    let s = Generation::new(&g, opts())?.run(&chunks(), &out, &NoProgress)?;
    let files = RunFiles::new(&out);
    assert_eq!(s.processed, 12);
    assert_eq!(s.accepted, 10);
    assert_eq!(s.rejected.get(&Reason::NotGrounded), Some(&10), "the invented second pair of each chunk");
    assert_eq!(s.rejected.get(&Reason::Unparseable), Some(&1));
    assert_eq!(s.rejected.get(&Reason::BackendError), Some(&1));
    assert_eq!(s.generated, s.accepted + s.rejected_total());
    assert_eq!(lines(&files.accepted) as u64, s.accepted);
    assert_eq!(lines(&files.rejected) as u64, s.rejected_total());
    assert_eq!(lines(&files.progress), 12);
    let (rejected, _) = read_all::<Rejected>(&files.rejected)?;
    let raw = rejected.iter().find(|r| r.reason == Reason::Unparseable).unwrap();
    assert_eq!(raw.raw.as_deref(), Some("Sorry, I cannot help with that."), "the raw output is kept");
    let (pairs, _) = read_all::<QaPair>(&files.accepted)?;
    assert!(pairs.iter().all(|p| p.model == "scripted" && p.prompt.starts_with("qa-v1@") && p.lang == "en"));
    assert_eq!(pairs[0].chunk.source, "docs/doc0.md");
    Ok(())
}

#[test]
fn a_second_run_redoes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let g = Scripted::new();
    let run = Generation::new(&g, opts())?;
    run.run(&chunks(), &out, &NoProgress)?;
    let calls = g.calls.load(Ordering::SeqCst);
    let s = run.run(&chunks(), &out, &NoProgress)?;
    assert_eq!(g.calls.load(Ordering::SeqCst), calls, "no chunk generated twice");
    assert_eq!((s.resumed, s.processed, s.accepted), (12, 0, 10));
    // A different seed is a different dataset: everything is redone into a new file.
    let other = Generation::new(
        &g,
        GenerateOptions { sampling: docraft_core::Sampling { seed: 7, ..Default::default() }, ..opts() },
    )?;
    let s = other.run(&chunks(), &dir.path().join("qa7.jsonl"), &NoProgress)?;
    assert_eq!(s.processed, 12);
    Ok(())
}

/// Every point a kill can hit: after the rejected records, after the accepted ones, mid-line.
#[test]
fn resume_after_a_kill_at_any_point_has_no_duplicates_and_no_gaps() -> anyhow::Result<()> {
    let g = Scripted::new();
    let run = Generation::new(&g, opts())?;
    // The reference: one uninterrupted run.
    let ref_dir = tempfile::tempdir()?;
    let ref_out = ref_dir.path().join("qa.jsonl");
    run.run(&chunks(), &ref_out, &NoProgress)?;
    let (reference, _) = read_all::<QaPair>(&ref_out)?;

    for cut in ["after_rejected", "after_accepted", "torn_accepted", "torn_progress"] {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("qa.jsonl");
        let files = RunFiles::new(&out);
        run.run(&chunks()[..5], &out, &NoProgress)?;
        // Simulate a kill while chunk 6 was being written: its records are (partly) there,
        // its marker is not.
        let whole = tempfile::tempdir()?;
        let whole_out = whole.path().join("qa.jsonl");
        run.run(&chunks()[..6], &whole_out, &NoProgress)?;
        let w = RunFiles::new(&whole_out);
        let last_line = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().last().unwrap().to_string();
        let append = |p: &std::path::Path, s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).create(true).open(p).unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        match cut {
            "after_rejected" => append(&files.rejected, &format!("{}\n", last_line(&w.rejected))),
            "after_accepted" => {
                append(&files.rejected, &format!("{}\n", last_line(&w.rejected)));
                append(&files.accepted, &format!("{}\n", last_line(&w.accepted)));
            }
            "torn_accepted" => {
                append(&files.rejected, &format!("{}\n", last_line(&w.rejected)));
                append(&files.accepted, &last_line(&w.accepted)[..40]);
            }
            _ => {
                append(&files.rejected, &format!("{}\n", last_line(&w.rejected)));
                append(&files.accepted, &format!("{}\n", last_line(&w.accepted)));
                append(&files.progress, &last_line(&w.progress)[..20]);
            }
        }
        let s = run.run(&chunks(), &out, &NoProgress)?;
        assert_eq!(s.resumed, 5, "{cut}");
        assert_eq!(s.processed, 7, "{cut}");
        let (pairs, torn) = read_all::<QaPair>(&out)?;
        assert!(torn.is_none());
        let ids: HashSet<_> = pairs.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids.len(), pairs.len(), "{cut}: no duplicate pair");
        assert_eq!(pairs, reference, "{cut}: same records, same order as an uninterrupted run");
        assert_eq!(lines(&files.rejected) as u64, s.rejected_total(), "{cut}");
        let (done, _) = read_all::<ChunkDone>(&files.progress)?;
        let keys: HashSet<_> = done.iter().map(|d| d.gen_key.clone()).collect();
        assert_eq!((done.len(), keys.len()), (12, 12), "{cut}: every chunk exactly once");
    }
    Ok(())
}

#[test]
fn budgets_stop_cleanly_and_the_next_run_continues() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let g = Scripted::new();
    let capped = GenerateOptions { budget: Budget { max_pairs: Some(4), ..Default::default() }, ..opts() };
    let s = Generation::new(&g, capped)?.run(&chunks(), &out, &NoProgress)?;
    assert!(s.stopped.as_deref().unwrap_or_default().contains("--max-pairs 4"), "{:?}", s.stopped);
    assert!(s.accepted >= 4 && s.remaining > 0);
    let priced = GenerateOptions {
        price: Some(Price { input_per_million: 1_000.0, output_per_million: 1_000.0 }),
        budget: Budget { max_cost: Some(0.2), ..Default::default() },
        ..opts()
    };
    let run = Generation::new(&g, priced)?;
    let est = run.estimate(&chunks(), &out)?;
    assert_eq!(est.chunks, 12 - s.processed);
    assert!(est.max_cost.unwrap() > 0.0);
    let s2 = run.run(&chunks(), &out, &NoProgress)?;
    assert!(s2.stopped.as_deref().unwrap_or_default().contains("--max-cost"), "{:?}", s2.stopped);
    assert!(Price { input_per_million: 1_000.0, output_per_million: 1_000.0 }.cost(s2.usage) <= 0.2);
    let s3 = Generation::new(&g, opts())?.run(&chunks(), &out, &NoProgress)?;
    assert_eq!(s3.remaining, 0);
    assert_eq!(s3.accepted, 10, "the pieces add up to one full run");
    Ok(())
}

#[test]
fn settings_are_checked() {
    let g = Scripted::new();
    assert!(Generation::new(&g, GenerateOptions { questions_per_chunk: 0, ..opts() }).is_err());
    let no_price = GenerateOptions { budget: Budget { max_cost: Some(1.0), ..Default::default() }, ..opts() };
    assert!(Generation::new(&g, no_price).is_err());
}

#[test]
fn a_cancelled_run_stops_after_the_batch_in_hand_and_a_rerun_completes_it() -> anyhow::Result<()> {
    let g = Scripted::new();
    let ref_dir = tempfile::tempdir()?;
    let ref_out = ref_dir.path().join("qa.jsonl");
    Generation::new(&g, opts())?.run(&chunks(), &ref_out, &NoProgress)?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let token = CancelToken::new();
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: &Progress| {
        seen.lock().unwrap().push(p.done);
        if p.done >= 6 {
            token.cancel();
        }
    };
    let g = Scripted::new();
    let s = Generation::new(&g, opts())?.with_cancel(token.clone()).run(&chunks(), &out, &progress)?;
    assert_eq!(*seen.lock().unwrap(), vec![3, 6], "two batches of three, then stop");
    assert_eq!(g.calls.load(Ordering::SeqCst), 6, "nothing generated after the cancel");
    assert_eq!((s.processed, s.remaining, s.stopped.as_deref()), (6, 6, Some("cancelled")));
    assert_eq!(lines(&RunFiles::new(&out).progress), 6);

    let s = Generation::new(&g, opts())?.run(&chunks(), &out, &NoProgress)?;
    assert_eq!((s.resumed, s.processed, s.stopped), (6, 6, None));
    assert_eq!(std::fs::read(&out)?, std::fs::read(&ref_out)?, "the same pairs as one uninterrupted run");
    let (a, b) = (RunFiles::new(&out), RunFiles::new(&ref_out));
    assert_eq!(std::fs::read(&a.rejected)?, std::fs::read(&b.rejected)?);
    Ok(())
}

/// A table of contents and a copyright page among the chunks.
fn chunks_with_furniture() -> Vec<Chunk> {
    let mut v = chunks();
    v.push(chunk(
        "toc.pdf",
        "Contents\n1 Purpose and scope ........ 1\n2 Before a site visit ........ 3\n3 Installation ........ 5\n\
         4 Calibration ........ 8",
    ));
    v.push(chunk(
        "legal.pdf",
        "© 2026 Northwind Instruments B.V. All rights reserved. No part of this publication may be reproduced \
         without the prior written permission of the publisher.",
    ));
    v
}

#[test]
fn skipped_chunks_are_never_sent_and_are_counted_and_recorded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let files = RunFiles::new(&out);
    let g = Scripted::new();
    let run = Generation::new(&g, opts())?;
    let est = run.estimate(&chunks_with_furniture(), &out)?;
    assert_eq!((est.chunks, est.skipped), (14, 2));
    let s = run.run(&chunks_with_furniture(), &out, &NoProgress)?;
    assert_eq!(g.calls.load(Ordering::SeqCst), 12, "the two skipped chunks were not sent");
    assert_eq!(s.processed, 14);
    assert_eq!(s.skipped.get(&Reason::Toc), Some(&1));
    assert_eq!(s.skipped.get(&Reason::Boilerplate), Some(&1));
    assert!(s.rejected.keys().all(|r| !r.is_skip()), "skipped chunks are not rejected pairs");
    assert_eq!((s.accepted, s.generated), (10, s.accepted + s.rejected_total()));
    // One record per skipped chunk in the rejected file, with its reason and its text.
    assert_eq!(lines(&files.rejected) as u64, s.rejected_total() + s.skipped_total());
    let (rejected, _) = read_all::<Rejected>(&files.rejected)?;
    let toc = rejected.iter().find(|r| r.reason == Reason::Toc).unwrap();
    assert_eq!(toc.source, "docs/toc.pdf");
    assert!(toc.detail.contains("dot leaders"), "{}", toc.detail);
    assert!(toc.raw.as_deref().unwrap().starts_with("Contents\n1 Purpose"));
    assert!(toc.question.is_none());
    let (done, _) = read_all::<ChunkDone>(&files.progress)?;
    assert_eq!(done.iter().filter(|d| d.is_skipped()).count(), 2);

    // Skipping off: those two chunks are asked about now; their records and markers move aside.
    let all = Generation::new(&g, GenerateOptions { skip_chunks: false, ..opts() })?;
    assert_eq!(all.estimate(&chunks_with_furniture(), &out)?.chunks, 2);
    let s = all.run(&chunks_with_furniture(), &out, &NoProgress)?;
    assert_eq!(g.calls.load(Ordering::SeqCst), 14);
    assert_eq!((s.resumed, s.processed, s.rolled_back), (12, 2, 2));
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
    let (rejected, _) = read_all::<Rejected>(&files.rejected)?;
    assert!(rejected.iter().all(|r| !r.reason.is_skip()));
    assert_eq!(lines(&files.rejected) as u64, s.rejected_total());
    let (done, _) = read_all::<ChunkDone>(&files.progress)?;
    let keys: HashSet<_> = done.iter().map(|d| d.gen_key.clone()).collect();
    assert_eq!((done.len(), keys.len()), (14, 14), "every chunk exactly once");
    let aside = std::fs::read_to_string(format!("{}.interrupted", files.rejected.display()))?;
    assert_eq!(aside.lines().count(), 2, "the skip records are kept aside, not lost");
    // Skipping on again: nothing to redo, the chunks were asked about.
    let s = run.run(&chunks_with_furniture(), &out, &NoProgress)?;
    assert_eq!((g.calls.load(Ordering::SeqCst), s.processed, s.skipped_total()), (14, 0, 0));
    Ok(())
}

/// A judge with a fixed answer per question: low scores, prose without scores, a failure,
/// else 5 and 4.
struct ScriptedJudge {
    calls: AtomicUsize,
}

impl Generator for ScriptedJudge {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests
            .iter()
            .map(|r| {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let user = &r.messages[1].content;
                assert!(user.contains("Question: ") && user.contains("Answer: ") && user.contains("\"\"\"\nPump"));
                assert!(r.json_schema.is_some());
                let text = if user.contains("Pump station 0 ") {
                    r#"{"faithfulness": 2, "usefulness": 4, "reason": "The answer adds a claim."}"#
                } else if user.contains("Pump station 1 ") {
                    "This pair looks fine to me."
                } else if user.contains("Pump station 2 ") {
                    return Err(GenError::Permanent("judge endpoint refused".into()));
                } else {
                    "```json\n{\"faithfulness\": 5, \"usefulness\": \"4/5\", \"reason\": \"Grounded and clear.\"}\n```"
                };
                Ok(GenResponse {
                    text: text.to_string(),
                    finish: FinishReason::Stop,
                    usage: Usage { prompt_tokens: 7, completion_tokens: 3 },
                })
            })
            .collect()
    }

    fn model_id(&self) -> String {
        "judge".into()
    }
}

#[test]
fn the_judge_keeps_rejects_and_records_its_scores() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let files = RunFiles::new(&out);
    let g = Scripted::new();
    let j = ScriptedJudge { calls: AtomicUsize::new(0) };
    let judge = Judge::new(&j, JudgeOptions::default())?;
    let s = Generation::new(&g, opts())?.with_judge(judge).run(&chunks(), &out, &NoProgress)?;
    assert_eq!(j.calls.load(Ordering::SeqCst), 10, "only pairs that passed the filters are judged");
    assert_eq!(s.accepted, 7);
    assert_eq!(s.rejected.get(&Reason::JudgeLowScore), Some(&1));
    assert_eq!(s.rejected.get(&Reason::JudgeUnparseable), Some(&1));
    assert_eq!(s.rejected.get(&Reason::JudgeError), Some(&1));
    assert_eq!(s.generated, s.accepted + s.rejected_total());
    assert_eq!(lines(&files.rejected) as u64, s.rejected_total());
    assert_eq!(s.usage.prompt_tokens, 11 * 50 + 9 * 7, "the judge's tokens count");

    let (pairs, _) = read_all::<QaPair>(&files.accepted)?;
    for p in &pairs {
        let scores = p.judge.as_ref().unwrap();
        assert_eq!((scores.faithfulness, scores.usefulness), (5, 4));
        assert_eq!((scores.reason.as_str(), scores.model.as_str()), ("Grounded and clear.", "judge"));
        assert!(scores.prompt.starts_with("judge-v1@"));
    }
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&out)?.lines().next().unwrap())?;
    assert_eq!(first["judge"]["faithfulness"], 5);
    let (rejected, _) = read_all::<Rejected>(&files.rejected)?;
    let low = rejected.iter().find(|r| r.reason == Reason::JudgeLowScore).unwrap();
    assert!(low.detail.contains("faithfulness 2") && low.detail.contains("below 3"), "{}", low.detail);
    assert!(low.question.as_deref().unwrap().contains("Pump station 0 "), "the pair is kept whole");
    let unparsed = rejected.iter().find(|r| r.reason == Reason::JudgeUnparseable).unwrap();
    assert_eq!(unparsed.raw.as_deref(), Some("This pair looks fine to me."), "the judge's output is kept");
    assert!(unparsed.answer.is_some());

    // A stricter threshold rejects the 5/4 pairs too; without a judge, no `judge` field.
    let strict = tempfile::tempdir()?;
    let judge = Judge::new(&j, JudgeOptions { min_score: 5, ..JudgeOptions::default() })?;
    let s =
        Generation::new(&g, opts())?.with_judge(judge).run(&chunks(), &strict.path().join("qa.jsonl"), &NoProgress)?;
    assert_eq!((s.accepted, s.rejected.get(&Reason::JudgeLowScore)), (0, Some(&8)));
    let plain = tempfile::tempdir()?;
    let plain_out = plain.path().join("qa.jsonl");
    Generation::new(&g, opts())?.run(&chunks(), &plain_out, &NoProgress)?;
    assert!(!std::fs::read_to_string(&plain_out)?.contains("\"judge\""));
    assert!(Judge::new(&j, JudgeOptions { min_score: 0, ..JudgeOptions::default() }).is_err());
    assert!(Judge::new(&j, JudgeOptions { min_score: 6, ..JudgeOptions::default() }).is_err());
    Ok(())
}
