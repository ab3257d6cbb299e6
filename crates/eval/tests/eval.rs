#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retrieval and QA evaluation with scripted retrievers and generators, and the report files.

use std::collections::HashMap;

use docraft_core::{
    Chunk, ChunkId, ChunkRef, DocId, FinishReason, GenError, GenRequest, GenResponse, Generator, PageRange,
    RaftContext, RaftEvalRecord, RaftMeta, RaftRecord, RetrieveError, Retriever, Scored, Span, Usage,
};
use docraft_eval::qa::{self, QaCase, QaOptions};
use docraft_eval::report::{Losses, Report};
use docraft_eval::retrieval::{self, Case, Relevant};

fn chunk(id: &str, source: &str, page: u32) -> Chunk {
    Chunk {
        id: ChunkId::from_string(id.to_string()),
        doc_id: DocId::from_string("d".to_string()),
        source: format!("docs/{source}"),
        text: id.to_string(),
        span: Span::new(0, 1),
        pages: Some(PageRange::new(page, page)),
        headings: vec![],
        chunk_index: 0,
        chunk_count: 1,
        metadata: Default::default(),
    }
}

/// Returns, for each question, the chunks listed for it (from its own chunk table).
struct Ranked(HashMap<&'static str, Vec<&'static str>>, HashMap<ChunkId, Chunk>);

impl Retriever for Ranked {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        let ids = self.0.get(query).cloned().unwrap_or_default();
        Ok(ids
            .into_iter()
            .take(k)
            .map(|id| Scored { chunk: self.1[&ChunkId::from_string(id.to_string())].clone(), score: 0.5 })
            .collect())
    }
}

/// A RAFT record whose oracle is chunk `oracle`.
fn raft_record(question: &str, oracle: &str) -> RaftRecord {
    let c = chunk(oracle, "x.pdf", 1);
    RaftRecord {
        id: format!("r-{oracle}"),
        kind: "general".into(),
        question: question.into(),
        context: RaftContext { title: vec![vec![]], sentences: vec![vec![c.text.clone()]] },
        oracle_context: c.text.clone(),
        cot_answer: "##begin_quote##a##end_quote## <ANSWER>: a".into(),
        instruction: format!("<DOCUMENT>{}</DOCUMENT>\n{question}", c.text),
        final_answer: "a".into(),
        meta: RaftMeta {
            question_id: "q".into(),
            oracle: ChunkRef::of(&c),
            lang: "en".into(),
            split: "test".into(),
            oracle_in_context: true,
            documents: vec![],
            quotes: vec![],
            attempts: 1,
            model: "m".into(),
            prompt: "p".into(),
        },
    }
}

#[test]
fn recall_and_mrr_from_ranks() {
    let chunks: HashMap<ChunkId, Chunk> =
        [chunk("a", "x.pdf", 1), chunk("b", "x.pdf", 2), chunk("c", "y.md", 1), chunk("d", "y.md", 1)]
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
    let r =
        Ranked(HashMap::from([("q1", vec!["a", "b"]), ("q2", vec!["c", "d", "b"]), ("q3", vec!["c", "d"])]), chunks);
    let cases = vec![
        Case { question: "q1".into(), relevant: Relevant::Chunk(ChunkId::from_string("a".to_string())) },
        Case { question: "q2".into(), relevant: Relevant::Page { source: "x.pdf".into(), page: Some(2) } },
        Case { question: "q3".into(), relevant: Relevant::Chunk(ChunkId::from_string("a".to_string())) },
    ];
    let rep = retrieval::evaluate(&r, &cases, &[1, 3]).unwrap();
    assert_eq!(rep.ranks, vec![Some(1), Some(3), None]);
    assert!((rep.recall_at[&1] - 1.0 / 3.0).abs() < 1e-12);
    assert!((rep.recall_at[&3] - 2.0 / 3.0).abs() < 1e-12);
    assert!((rep.mrr - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
    assert!(retrieval::evaluate(&r, &[], &[1]).is_err());
}

#[test]
fn cases_load_from_every_record_kind_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.jsonl");
    std::fs::write(
        &path,
        [
            r#"{"question":"from qa","chunk_id":"c1","answer":"x"}"#.to_string(),
            serde_json::to_string(&raft_record("from raft", "c2")).unwrap(),
            serde_json::to_string(&RaftEvalRecord::of(&raft_record("from eval", "c3"))).unwrap(),
            r#"{"question":"by page","source":"handbook.pdf","page":3}"#.to_string(),
            r#"{"question":"no source"}"#.to_string(),
            "not json".to_string(),
            r#"{"question":"from qa","chunk_id":"c1"}"#.to_string(),
            r#"{"question":" ","chunk_id":"c1"}"#.to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let (cases, skipped) = retrieval::load_cases(&path).unwrap();
    assert_eq!(cases.len(), 4, "the duplicate question is kept once");
    assert_eq!(cases[0].relevant, Relevant::Chunk(ChunkId::from_string("c1".to_string())));
    assert_eq!(cases[1].relevant, Relevant::Chunk(ChunkId::from_string("c2".to_string())));
    assert_eq!(cases[2].relevant, Relevant::Chunk(ChunkId::from_string("c3".to_string())));
    assert_eq!(cases[3].relevant, Relevant::Page { source: "handbook.pdf".into(), page: Some(3) });
    assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), vec![5, 6, 8]);
    assert!(skipped[1].reason.starts_with("not JSON"), "{:?}", skipped[1]);
    // Open-book cases come from the same RAFT records, in both layouts; others are skipped.
    let qa_path = dir.path().join("qa.jsonl");
    std::fs::write(
        &qa_path,
        [
            serde_json::to_string(&RaftEvalRecord::of(&raft_record("eval line", "c3"))).unwrap(),
            serde_json::to_string(&raft_record("hf line", "c2")).unwrap(),
            r#"{"question":"q","context":"c"}"#.to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let (qa_cases, skipped) = qa::load_cases(&qa_path).unwrap();
    assert_eq!(qa_cases.iter().map(|c| c.question.as_str()).collect::<Vec<_>>(), vec!["eval line", "hf line"]);
    assert_eq!(qa_cases[1].context, "<DOCUMENT>c2</DOCUMENT>\nhf line");
    assert_eq!(qa_cases[0].gold, "a");
    assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), vec![3]);
}

struct Canned(Vec<Result<&'static str, GenError>>, std::sync::Mutex<usize>);

impl Generator for Canned {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests
            .iter()
            .map(|_| {
                let mut i = self.1.lock().unwrap();
                let r = self.0[*i % self.0.len()].clone();
                *i += 1;
                r.map(|t| GenResponse { text: t.to_string(), finish: FinishReason::Stop, usage: Usage::default() })
            })
            .collect()
    }
    fn model_id(&self) -> String {
        "canned".into()
    }
}

#[test]
fn open_book_scores_and_failed_answers_count_as_zero() {
    let cases = vec![
        QaCase {
            question: "q1".into(),
            context: "<DOCUMENT>Bolts take 45 N·m.</DOCUMENT>\nq1".into(),
            gold: "45 N·m".into(),
        },
        QaCase { question: "q2".into(), context: "<DOCUMENT>Room B.</DOCUMENT>\nq2".into(), gold: "room B".into() },
        QaCase { question: "q3".into(), context: "ctx".into(), gold: "x".into() },
    ];
    let g = Canned(
        vec![
            Ok("##begin_quote##Bolts take 45 N·m##end_quote## so <ANSWER>: 45 N·m"),
            Ok("##begin_quote##made up##end_quote##\n<ANSWER>: in room B today"),
            Err(GenError::Permanent("boom".into())),
        ],
        std::sync::Mutex::new(0),
    );
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let s = qa::evaluate(&g, &cases, &QaOptions::default(), &|_: &qa::QaRow| {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(seen.into_inner(), 3);
    assert_eq!(s.errors, 1);
    assert!((s.exact_match - 1.0 / 3.0).abs() < 1e-12);
    assert!((s.contains - 2.0 / 3.0).abs() < 1e-12);
    // F1: 1.0, then "in room b today" vs "room b" = 2*(0.5*1)/(1.5) = 2/3, then 0.
    assert!((s.f1 - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9, "{}", s.f1);
    assert_eq!(s.quotes_found, Some(0.5));
    assert_eq!(s.rows[2].error.as_deref(), Some("boom"));
}

#[test]
fn report_writes_markdown_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(
        &metrics,
        "{\"step\":1,\"train_loss\":3.0}\n{\"step\":2,\"train_loss\":2.5,\"valid_loss\":2.7}\n{\"step\":3,\"train_loss\":2.1}\n",
    )
    .unwrap();
    let losses = Losses::read(&metrics).unwrap();
    assert_eq!(losses.train.len(), 3);
    assert_eq!(losses.valid, vec![(2.0, 2.7)]);
    let case = QaCase { question: "q".into(), context: "c".into(), gold: "yes".into() };
    let base = qa::summarize("base".into(), vec![qa::score(&case, "<ANSWER>: no", None)]);
    let tuned = qa::summarize("base + adapter".into(), vec![qa::score(&case, "<ANSWER>: yes", None)]);
    let report = Report {
        title: "t".into(),
        qa: vec![base, tuned],
        losses: Some(losses),
        notes: vec!["a note".into()],
        ..Report::default()
    };
    let out = dir.path().join("report");
    let written = report.write(&out).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["report.md", "report.json", "qa.svg", "loss.svg"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| base | 0.0% | 0.000 | 0.0% | no quotes | 0 |"), "{md}");
    assert!(md.contains("| base + adapter | 100.0% | 1.000 | 100.0% |"), "{md}");
    assert!(md.contains("![loss](loss.svg)") && md.contains("- a note"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["qa"][1]["exact_match"], 1.0);
}
