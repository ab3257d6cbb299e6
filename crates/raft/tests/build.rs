//! The RAFT builder with a scripted generator and a bag-of-words retriever: oracle share,
//! distractor exclusions, hard vs random, quote verification, repair, formats, splits,
//! determinism and resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use docraft_core::jsonl::read_all;
use docraft_core::{
    CancelToken, Chunk, ChunkId, ChunkRef, DocId, DocRole, FinishReason, GenError, GenRequest, GenResponse, Generator,
    NoProgress, QaPair, RaftRecord, RetrieveError, Retriever, Scored, Span, Usage,
};
use docraft_raft::cot::normalize;
use docraft_raft::{
    Format, FormatOptions, Problem, RaftBuilder, RaftFiles, RaftOptions, Rejected, export, parse_splits,
};
use serde_json::Value;

const TOPICS: [&str; 12] = [
    "pump",
    "valve",
    "boiler",
    "turbine",
    "compressor",
    "furnace",
    "conveyor",
    "crane",
    "generator",
    "chiller",
    "mixer",
    "press",
];
const WORDS: [&str; 10] = ["oil", "filter", "belt", "seal", "bearing", "gauge", "sensor", "motor", "panel", "hose"];

fn chunk(doc: &str, i: usize, start: usize, text: String) -> Chunk {
    let doc_id = DocId::from_content(doc.as_bytes());
    Chunk {
        id: ChunkId::new(&doc_id, start, start + text.len()),
        doc_id,
        source: format!("docs/{doc}.md"),
        span: Span::new(start, start + text.len()),
        text,
        pages: None,
        headings: vec![],
        chunk_index: i,
        chunk_count: 5,
        metadata: BTreeMap::default(),
    }
}

/// 12 documents of 5 chunks; chunk j of topic t talks about the topic and two parts.
fn corpus() -> Vec<Chunk> {
    let mut out = Vec::new();
    for (t, topic) in TOPICS.iter().enumerate() {
        for j in 0..5 {
            let (a, b) = (WORDS[(t + j) % 10], WORDS[(t * 3 + j * 7 + 1) % 10]);
            let text = format!(
                "The {topic} {a} must be checked every {n} days by the {topic} team. Replace the {b} of the {topic} when worn. Record {topic} item {j} in log {t}{j}.",
                n = 10 + t + j
            );
            out.push(chunk(topic, j, j * 1000, text));
        }
    }
    out
}

fn question(c: &Chunk, n: usize, text: &str) -> QaPair {
    QaPair {
        id: format!("q-{}-{n}", c.id.as_str()),
        chunk: ChunkRef { headings: vec![], ..ChunkRef::of(c) },
        question: text.to_string(),
        answer: String::new(),
        lang: "en".into(),
        model: "test".into(),
        prompt: "test".into(),
        gen_key: "k".into(),
        judge: None,
    }
}

fn questions(chunks: &[Chunk], per_chunk: usize) -> Vec<QaPair> {
    let mut out = Vec::new();
    for c in chunks {
        let topic = c.source.trim_start_matches("docs/").trim_end_matches(".md");
        for n in 0..per_chunk {
            out.push(question(c, n, &format!("How often is the {topic} checked ({n})?")));
        }
    }
    out
}

/// Answers from the request: the schema's first allowed quote (or the first sentence of the
/// context in free-text mode), with behaviours keyed on words in the question.
#[derive(Default)]
struct Scripted {
    calls: Mutex<HashMap<String, usize>>,
}

impl Scripted {
    fn answer(&self, r: &GenRequest) -> Result<GenResponse, GenError> {
        let user = &r.messages.last().unwrap().content;
        let question = user.lines().next().unwrap().trim_start_matches("Question: ").to_string();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(question.clone()).or_default();
            *n += 1;
            *n
        };
        let quote = match &r.json_schema {
            Some(s) => {
                s.pointer("/properties/reasoning/items/properties/quote/enum/0").unwrap().as_str().unwrap().to_string()
            }
            None => {
                let ctx = user.split("Context: ").nth(1).unwrap();
                ctx.split(". ").next().unwrap().to_string()
            }
        };
        let text = if question.contains("INVENT") || (question.contains("FLAKY") && n == 1) {
            r#"{"reasoning": [{"thought": "It says so.", "quote": "The moon is made of green cheese"}], "answer": "cheese"}"#.to_string()
        } else if question.contains("DISAGREE") {
            // A real quote, then an answer that has nothing to do with it.
            serde_json::json!({"reasoning": [{"thought": "The context answers it.", "quote": quote}], "answer": "Paint it green with a roller"}).to_string()
        } else if question.contains("RAMBLE") {
            // An answer the schema's 500-character limit cut off mid-word.
            let answer =
                format!("Every few days, {}", "and then again ".repeat(40)).chars().take(500).collect::<String>();
            serde_json::json!({"reasoning": [{"thought": "The context answers it.", "quote": quote}], "answer": answer})
                .to_string()
        } else if question.contains("DUNNO") {
            serde_json::json!({"reasoning": [{"thought": "Hmm.", "quote": quote}], "answer": "I don't know."})
                .to_string()
        } else if question.contains("BROKEN") {
            return Err(GenError::Permanent("the model fell over".into()));
        } else if question.contains("LATER") {
            return Err(GenError::Transient("busy".into()));
        } else if r.json_schema.is_some() {
            serde_json::json!({"reasoning": [{"thought": "The context answers it.", "quote": quote}], "answer": "every few days"}).to_string()
        } else {
            format!("The context says ##begin_quote##{quote}##end_quote##.\n<ANSWER>: every few days")
        };
        Ok(GenResponse { text, finish: FinishReason::Stop, usage: Usage { prompt_tokens: 100, completion_tokens: 20 } })
    }
}

impl Generator for Scripted {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests.iter().map(|r| self.answer(r)).collect()
    }
    fn model_id(&self) -> String {
        "scripted".into()
    }
}

fn bow(text: &str) -> HashMap<String, f32> {
    let mut m = HashMap::new();
    for w in normalize(text).split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        *m.entry(w.to_string()).or_default() += 1.0;
    }
    m
}

fn cosine(a: &HashMap<String, f32>, b: &HashMap<String, f32>) -> f32 {
    let dot: f32 = a.iter().map(|(k, v)| v * b.get(k).copied().unwrap_or(0.0)).sum();
    let na: f32 = a.values().map(|v| v * v).sum::<f32>().sqrt();
    let nb: f32 = b.values().map(|v| v * v).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

/// Exact bag-of-words search over the chunks.
struct Bow(Vec<(Chunk, HashMap<String, f32>)>);

impl Bow {
    fn new(chunks: &[Chunk]) -> Self {
        Self(chunks.iter().map(|c| (c.clone(), bow(&c.text))).collect())
    }
}

impl Retriever for Bow {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        let q = bow(query);
        let mut hits: Vec<Scored> =
            self.0.iter().map(|(c, v)| Scored { chunk: c.clone(), score: cosine(&q, v) }).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }
}

/// The reference's settings: random distractors, everything in one training split (the
/// library's defaults are hard distractors and train/valid/test).
fn reference() -> RaftOptions {
    RaftOptions {
        hard_share: 0.0,
        splits: vec![docraft_raft::Split { name: "train".into(), fraction: 1.0 }],
        ..RaftOptions::default()
    }
}

#[test]
fn defaults_are_hard_distractors_and_three_splits() {
    let o = RaftOptions::default();
    assert!((o.hard_share - 1.0).abs() < f32::EPSILON);
    assert_eq!(o.splits, parse_splits("train=0.8,valid=0.1,test=0.1").unwrap());
    // Hard distractors need an index: without a retriever the run is refused, naming the setting.
    let chunks = vec![];
    let dir = tempfile::tempdir().unwrap();
    let g = Scripted::default();
    let b = RaftBuilder::new(&g, o).unwrap();
    let e = b.run(&chunks, &[], &dir.path().join("raft.jsonl"), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("hard_share"), "{e}");
}

fn build(
    g: &dyn Generator,
    r: Option<&dyn Retriever>,
    o: RaftOptions,
    chunks: &[Chunk],
    qs: &[QaPair],
    out: &Path,
) -> docraft_raft::Summary {
    let mut b = RaftBuilder::new(g, o).unwrap();
    if let Some(r) = r {
        b = b.with_retriever(r);
    }
    b.run(chunks, qs, out, &NoProgress).unwrap()
}

#[test]
fn oracle_share_follows_p_and_distractors_are_never_the_oracle() {
    let chunks = corpus();
    let qs = questions(&chunks, 6);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raft.jsonl");
    let o = RaftOptions { p: 0.7, distractors: 3, seed: 5, ..reference() };
    let s = build(&Scripted::default(), None, o, &chunks, &qs, &out);
    assert_eq!(s.accepted, qs.len());
    let (records, _) = read_all::<RaftRecord>(&out).unwrap();
    assert_eq!(records.len(), 360);
    let with = records.iter().filter(|r| r.meta.oracle_in_context).count();
    let share = with as f64 / records.len() as f64;
    assert!((share - 0.7).abs() < 0.07, "oracle share {share}");
    assert_eq!(s.with_oracle, with);
    let by_id: HashMap<&str, &Chunk> = chunks.iter().map(|c| (c.id.as_str(), c)).collect();
    for r in &records {
        assert_eq!(r.meta.documents.len(), 4, "k distractors + oracle, or k + 1 distractors");
        let oracle = by_id[r.meta.oracle.chunk_id.as_str()];
        let oracles = r.meta.documents.iter().filter(|d| d.role == DocRole::Oracle).count();
        assert_eq!(oracles, usize::from(r.meta.oracle_in_context));
        for d in r.meta.documents.iter().filter(|d| d.role != DocRole::Oracle) {
            assert_ne!(d.chunk_id, oracle.id);
            let c = by_id[d.chunk_id.as_str()];
            let overlaps =
                c.doc_id == oracle.doc_id && c.span.start < oracle.span.end && oracle.span.start < c.span.end;
            assert!(!overlaps);
        }
        assert_eq!(r.context.sentences[0].contains(&r.oracle_context), r.meta.oracle_in_context);
    }
}

#[test]
fn overlapping_near_duplicate_and_answer_holding_chunks_are_excluded() {
    let mut chunks = corpus();
    let oracle = chunks[0].clone();
    // Overlaps the oracle's span in the same document.
    chunks.push(chunk("pump", 9, 10, "Overlapping words about a pump seal and the other pump parts here.".into()));
    // The oracle's text with one word changed: a near-duplicate from another document.
    chunks.push(chunk("pump-copy", 0, 0, oracle.text.replace("team", "crew")));
    // Holds the answer.
    chunks.push(chunk("notes", 0, 0, "Unrelated notes, but the pump inspection interval is ninety seven days.".into()));
    let mut q = question(&oracle, 0, "What is the pump inspection interval?");
    q.answer = "ninety seven days".into();
    let qs: Vec<QaPair> = (0..40).map(|n| QaPair { id: format!("{}-{n}", q.id), ..q.clone() }).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raft.jsonl");
    let index = Bow::new(&chunks);
    for hard_share in [0.0, 1.0] {
        let o = RaftOptions { hard_share, distractors: 5, seed: 1, ..reference() };
        let out = out.with_file_name(format!("raft-{hard_share}.jsonl"));
        build(&Scripted::default(), Some(&index), o, &chunks, &qs, &out);
        let (records, _) = read_all::<RaftRecord>(&out).unwrap();
        assert_eq!(records.len(), 40);
        let excluded: BTreeSet<&str> = chunks[60..].iter().map(|c| c.id.as_str()).collect();
        for r in &records {
            for d in &r.meta.documents {
                assert!(
                    !excluded.contains(d.chunk_id.as_str()),
                    "{:?} chose an excluded chunk {}",
                    hard_share,
                    d.source
                );
            }
        }
    }
}

#[test]
fn hard_distractors_are_closer_to_the_question_than_random_ones() {
    let chunks = corpus();
    let qs = questions(&chunks, 2);
    let index = Bow::new(&chunks);
    let dir = tempfile::tempdir().unwrap();
    let mean_similarity = |hard_share: f32| {
        let out = dir.path().join(format!("raft-{hard_share}.jsonl"));
        let o = RaftOptions { hard_share, seed: 3, ..reference() };
        build(&Scripted::default(), Some(&index), o, &chunks, &qs, &out);
        let (records, _) = read_all::<RaftRecord>(&out).unwrap();
        let texts: HashMap<&str, &str> = chunks.iter().map(|c| (c.id.as_str(), c.text.as_str())).collect();
        let mut sims = Vec::new();
        for r in &records {
            let q = bow(&r.question);
            for d in r.meta.documents.iter().filter(|d| d.role != DocRole::Oracle) {
                let expected = if hard_share > 0.0 { DocRole::Hard } else { DocRole::Random };
                assert_eq!(d.role, expected);
                sims.push(cosine(&q, &bow(texts[d.chunk_id.as_str()])));
            }
        }
        sims.iter().sum::<f32>() / sims.len() as f32
    };
    let (hard, random) = (mean_similarity(1.0), mean_similarity(0.0));
    assert!(hard > random + 0.1, "hard {hard} vs random {random}");
}

#[test]
fn quotes_are_verified_failures_repaired_or_rejected_and_all_accounted_for() {
    let chunks = corpus();
    let mut qs = questions(&chunks[..10], 1);
    let special = ["INVENT a", "FLAKY b", "BROKEN c", "LATER d"];
    for (q, word) in qs.iter_mut().zip(special) {
        q.question = format!("{word}: {}", q.question);
    }
    let mut missing = question(&chunks[11], 0, "A question about a chunk we do not have");
    missing.chunk.chunk_id = ChunkId::from_string("not-a-chunk");
    qs.push(missing);
    for structured in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("raft.jsonl");
        let o = RaftOptions { structured, attempts: 2, ..reference() };
        let s = build(&Scripted::default(), None, o, &chunks, &qs, &out);
        assert_eq!(s.accepted, 7, "{s:?}");
        assert_eq!(s.repaired, 1);
        assert_eq!(s.deferred, 1);
        assert_eq!(s.rejected.get(&Problem::QuoteNotInOracle), Some(&1));
        assert_eq!(s.rejected.get(&Problem::GenerationError), Some(&1));
        assert_eq!(s.rejected.get(&Problem::UnknownChunk), Some(&1));
        assert_eq!(s.accepted + s.rejected_total() + s.deferred, qs.len());
        let (records, _) = read_all::<RaftRecord>(&out).unwrap();
        let (rejected, _) = read_all::<Rejected>(&RaftFiles::new(&out).rejected).unwrap();
        assert_eq!((records.len(), rejected.len()), (7, 3));
        let invented = rejected.iter().find(|r| r.reason == Problem::QuoteNotInOracle).unwrap();
        assert_eq!(invented.attempts, 2);
        assert!(invented.raw.contains("green cheese"));
        for r in &records {
            assert!(!r.meta.quotes.is_empty());
            for q in &r.meta.quotes {
                assert!(normalize(&r.oracle_context).contains(&normalize(q)), "{q} not in oracle");
            }
            assert!(r.cot_answer.contains("##begin_quote##") && r.cot_answer.contains("##end_quote##"));
            assert!(r.cot_answer.ends_with("<ANSWER>: every few days"));
            assert_eq!(r.final_answer, "every few days");
        }
        // The deferred question is done by a rerun; nothing else is redone.
        let again = build(
            &Scripted::default(),
            None,
            RaftOptions { structured, attempts: 2, ..reference() },
            &chunks,
            &qs,
            &out,
        );
        assert_eq!(again.resumed, 10);
        assert_eq!(again.deferred, 1);
        assert_eq!(again.usage.completion_tokens, 0);
    }
}

/// The final answer must answer and agree with its quotes: a chain of thought that quotes the
/// oracle correctly but answers something else, or answers "I don't know", is rejected after
/// its tries with its reason; `min_answer_support: 0` turns the check off. An answer the
/// schema's length limit cut off is refused either way.
#[test]
fn final_answers_that_disagree_with_the_quotes_are_rejected() {
    let chunks = corpus();
    let mut qs = questions(&chunks[..6], 1);
    qs[0].question = format!("DISAGREE {}", qs[0].question);
    qs[1].question = format!("DUNNO {}", qs[1].question);
    qs[2].question = format!("RAMBLE {}", qs[2].question);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raft.jsonl");
    let s = build(&Scripted::default(), None, RaftOptions { attempts: 2, ..reference() }, &chunks, &qs, &out);
    assert_eq!(s.accepted, 3, "{s:?}");
    assert_eq!(s.rejected.get(&Problem::UnsupportedAnswer), Some(&1));
    assert_eq!(s.rejected.get(&Problem::NonAnswer), Some(&1));
    assert_eq!(s.rejected.get(&Problem::CutAnswer), Some(&1), "an answer cut at the schema's limit is not kept");
    let (rejected, _) = read_all::<Rejected>(&RaftFiles::new(&out).rejected).unwrap();
    let r = rejected.iter().find(|r| r.reason == Problem::UnsupportedAnswer).unwrap();
    assert_eq!(r.attempts, 2, "asked again before giving up");
    assert!(r.detail.contains("claim words") && r.raw.contains("Paint it green"), "{r:?}");
    let line = std::fs::read_to_string(RaftFiles::new(&out).rejected).unwrap();
    assert!(line.contains("\"unsupported_answer\"") && line.contains("\"non_answer\""));

    let off = tempfile::tempdir().unwrap();
    let o = RaftOptions { attempts: 2, min_answer_support: 0.0, ..reference() };
    let s = build(&Scripted::default(), None, o, &chunks, &qs, &off.path().join("raft.jsonl"));
    // The agreement check is off; a cut answer is still refused (it is broken, not doubtful).
    assert_eq!((s.accepted, s.rejected_total()), (5, 1));
    assert_eq!(s.rejected.get(&Problem::CutAnswer), Some(&1));
    assert!(RaftBuilder::new(&Scripted::default(), RaftOptions { min_answer_support: 1.5, ..reference() }).is_err());
}

#[test]
fn formats_keep_the_reference_layout_and_round_trip() {
    let chunks = corpus();
    let qs = questions(&chunks, 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raft.jsonl");
    build(&Scripted::default(), None, reference(), &chunks, &qs, &out);
    let (records, _) = read_all::<RaftRecord>(&out).unwrap();
    let r = &records[0];
    let hf = docraft_raft::format::to_value(r, Format::Hf, &FormatOptions::default());
    let keys: BTreeSet<&str> = hf.as_object().unwrap().keys().map(String::as_str).collect();
    let reference = ["id", "type", "question", "context", "oracle_context", "cot_answer", "instruction"];
    assert!(reference.iter().all(|k| keys.contains(k)), "{keys:?}");
    assert_eq!(hf["type"], "general");
    assert_eq!(hf["context"]["title"].as_array().unwrap().len(), 1);
    assert_eq!(hf["context"]["title"][0].as_array().unwrap().len(), 4);
    assert_eq!(hf["context"]["sentences"][0].as_array().unwrap().len(), 4);
    let docs: Vec<&str> =
        hf["context"]["sentences"][0].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let expected: String = docs.iter().map(|d| format!("<DOCUMENT>{d}</DOCUMENT>\n")).collect::<String>() + &r.question;
    assert_eq!(hf["instruction"], expected.as_str());
    let back: RaftRecord = serde_json::from_value(hf).unwrap();
    assert_eq!(&back, r);

    let o = FormatOptions { system_prompt: Some("Answer from the documents.".into()), ..FormatOptions::default() };
    let chat = docraft_raft::format::to_value(r, Format::Chat, &o);
    let roles: Vec<&str> = chat["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert_eq!(chat["messages"][1]["content"], r.instruction.as_str());
    assert_eq!(chat["messages"][2]["content"], r.cot_answer.as_str());
    assert_eq!(chat.as_object().unwrap().len(), 1);

    let o = FormatOptions { prompt_key: "input".into(), completion_key: "output".into(), ..FormatOptions::default() };
    let completion = docraft_raft::format::to_value(r, Format::Completion, &o);
    assert_eq!(completion.as_object().unwrap().keys().collect::<Vec<_>>(), ["input", "output"]);
    let eval = docraft_raft::format::to_value(r, Format::Eval, &FormatOptions::default());
    assert_eq!(eval["gold_final_answer"], r.cot_answer.rsplit("<ANSWER>: ").next().unwrap());
    assert_eq!(eval["context"], r.instruction.as_str());
    assert_eq!(eval["question"], r.question.as_str());
}

#[test]
fn splits_are_by_document_and_training_never_sees_held_out_text() {
    let chunks = corpus();
    let qs = questions(&chunks, 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raft.jsonl");
    let splits = parse_splits("train=0.6,valid=0.2,test=0.2").unwrap();
    let names: Vec<String> = splits.iter().map(|s| s.name.clone()).collect();
    let o = RaftOptions { splits, seed: 9, ..reference() };
    let s = build(&Scripted::default(), None, o, &chunks, &qs, &out);
    let (records, _) = read_all::<RaftRecord>(&out).unwrap();
    let split_of_doc: HashMap<&str, &str> =
        records.iter().map(|r| (r.meta.oracle.doc_id.as_str(), r.meta.split.as_str())).collect();
    for r in &records {
        assert_eq!(split_of_doc[r.meta.oracle.doc_id.as_str()], r.meta.split, "a document on two sides");
        for d in &r.meta.documents {
            let other = split_of_doc[d.doc_id.as_str()];
            assert!(other == r.meta.split || other == "train", "{} record uses {other} text", r.meta.split);
        }
    }
    for name in &names {
        assert!(s.per_split.get(name).copied().unwrap_or(0) >= 10, "{name}: {:?}", s.per_split);
    }
    let files = export(&records, &out, &names, &Format::ALL, &FormatOptions::default()).unwrap();
    assert_eq!(files.len(), 12);
    let total: usize = files.iter().filter(|f| f.format == Format::Chat).map(|f| f.records).sum();
    assert_eq!(total, records.len());
    for f in &files {
        let (lines, _) = read_all::<Value>(&f.path).unwrap();
        assert_eq!(lines.len(), f.records);
        assert!(f.path.file_name().unwrap().to_str().unwrap().starts_with(&format!(
            "raft.{}.{}",
            f.split,
            f.format.name()
        )));
    }
    assert!(parse_splits("train=0.8,test=0.1").is_err());
    assert!(parse_splits("train=0.8,train=0.2").is_err());
    assert!(parse_splits("train=1.2").is_err());
}

#[test]
fn same_seed_same_dataset_and_a_cut_run_resumes_without_duplicates() {
    let chunks = corpus();
    let qs = questions(&chunks, 2);
    let dir = tempfile::tempdir().unwrap();
    let o = RaftOptions { p: 0.8, seed: 11, ..reference() };
    let full = dir.path().join("full.jsonl");
    build(&Scripted::default(), None, o.clone(), &chunks, &qs, &full);
    let again = dir.path().join("again.jsonl");
    build(&Scripted::default(), None, o.clone(), &chunks, &qs, &again);
    assert_eq!(std::fs::read(&full).unwrap(), std::fs::read(&again).unwrap());
    let other = dir.path().join("other.jsonl");
    build(&Scripted::default(), None, RaftOptions { seed: 12, ..o.clone() }, &chunks, &qs, &other);
    assert_ne!(std::fs::read(&full).unwrap(), std::fs::read(&other).unwrap());

    // Cut the file as a kill would: 50 whole lines and half of the next.
    let text = std::fs::read_to_string(&full).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = dir.path().join("cut.jsonl");
    let torn = &lines[50][..lines[50].len() / 2];
    std::fs::write(&cut, format!("{}\n{torn}", lines[..50].join("\n"))).unwrap();
    let s = build(&Scripted::default(), None, o, &chunks, &qs, &cut);
    assert_eq!(s.resumed, 50);
    assert_eq!(s.accepted, qs.len());
    let (a, _) = read_all::<RaftRecord>(&full).unwrap();
    let (b, _) = read_all::<RaftRecord>(&cut).unwrap();
    assert_eq!(b.len(), a.len(), "no duplicate, nothing missing");
    let sort = |mut v: Vec<RaftRecord>| {
        v.sort_by(|x, y| x.id.cmp(&y.id));
        v
    };
    assert_eq!(sort(a), sort(b), "the resumed run wrote the same records");
}

#[test]
fn a_cancelled_run_stops_after_the_batch_in_hand_and_a_rerun_completes_it() {
    let chunks = corpus();
    let qs = questions(&chunks, 1);
    let dir = tempfile::tempdir().unwrap();
    let o = RaftOptions { p: 0.8, seed: 3, batch: Some(4), ..reference() };
    let full = dir.path().join("full.jsonl");
    build(&Scripted::default(), None, o.clone(), &chunks, &qs, &full);

    let out = dir.path().join("cut.jsonl");
    let token = CancelToken::new();
    let updates = Mutex::new(Vec::new());
    let progress = |p: &docraft_raft::Progress| {
        updates.lock().unwrap().push(p.done);
        if p.done >= 12 {
            token.cancel();
        }
    };
    let g = Scripted::default();
    let b = RaftBuilder::new(&g, o.clone()).unwrap().with_cancel(token.clone());
    let s = b.run(&chunks, &qs, &out, &progress).unwrap();
    assert_eq!(*updates.lock().unwrap(), vec![4, 8, 12], "three batches of four, then stop");
    assert_eq!(s.stopped.as_deref(), Some("cancelled"));
    assert_eq!(s.accepted + s.rejected_total(), 12);
    assert_eq!(read_all::<RaftRecord>(&out).unwrap().0.len(), s.accepted);

    let s = build(&Scripted::default(), None, o, &chunks, &qs, &out);
    assert_eq!((s.resumed, s.stopped), (12, None));
    let sort = |p: &Path| {
        let mut v = read_all::<RaftRecord>(p).unwrap().0;
        v.sort_by(|x, y| x.id.cmp(&y.id));
        v
    };
    assert_eq!(sort(&out), sort(&full), "the resumed run wrote the same records");
}
