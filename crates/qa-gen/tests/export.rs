//! Export formats, the document-level split, and validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::Path;

use docraft_core::jsonl::JsonlWriter;
use docraft_core::{ChunkId, ChunkRef, DocId, QaPair, Span};
use docraft_qa_gen::export::{ExportOptions, Format, export, split_docs};
use docraft_qa_gen::validate::{TokenCounter, validate};
use serde_json::Value;

fn pair(doc: usize, i: usize) -> QaPair {
    let doc_id = DocId::from_content(format!("doc{doc}").as_bytes());
    QaPair {
        id: format!("{doc}-{i}"),
        chunk: ChunkRef {
            chunk_id: ChunkId::new(&doc_id, i, i + 1),
            doc_id,
            source: format!("docs/doc{doc}.md"),
            pages: None,
            span: Span::new(i, i + 1),
            headings: vec![],
        },
        question: format!("What is item {i} of document {doc}?"),
        answer: format!("Item {i} of document {doc} is a valve."),
        lang: "en".into(),
        model: "m".into(),
        prompt: "p".into(),
        gen_key: format!("k{doc}-{i}"),
        judge: None,
    }
}

fn write_pairs(path: &Path, docs: usize, per_doc: usize) -> Vec<QaPair> {
    let pairs: Vec<QaPair> = (0..docs).flat_map(|d| (0..per_doc).map(move |i| pair(d, i))).collect();
    JsonlWriter::create(path).unwrap().write_all(&pairs).unwrap();
    pairs
}

fn read(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_format_has_its_shape() {
    let sys = Some("You answer from the handbook.");
    let chat = Format::OpenaiChat.record("Q?", "A.", sys);
    assert_eq!(chat["messages"][0]["role"], "system");
    assert_eq!(chat["messages"][1]["content"], "Q?");
    assert_eq!(chat["messages"][2]["role"], "assistant");
    assert_eq!(Format::OpenaiChat.record("Q?", "A.", None)["messages"].as_array().unwrap().len(), 2);
    assert_eq!(Format::Completion.record("Q?", "A.", None), serde_json::json!({"prompt": "Q?", "completion": "A."}));
    assert_eq!(Format::Alpaca.record("Q?", "A.", None)["output"], "A.");
    let sg = Format::Sharegpt.record("Q?", "A.", sys);
    assert_eq!(sg["conversations"][1], serde_json::json!({"from": "human", "value": "Q?"}));
    assert_eq!(Format::TextLabel.record("Q?", "A.", sys), serde_json::json!({"text": "Q?", "label": "A."}));
    for f in Format::ALL {
        assert_eq!(Format::parse(f.name()).unwrap(), f);
    }
    assert!(Format::parse("jsonl").unwrap_err().to_string().contains("openai-chat"));
}

#[test]
fn split_is_by_document_deterministic_and_near_the_fraction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let qa = dir.path().join("qa.jsonl");
    let pairs = write_pairs(&qa, 20, 5);
    let out = dir.path().join("train.jsonl");
    let opts = ExportOptions { format: Format::TextLabel, system_prompt: None, valid_fraction: 0.2, seed: 1 };
    let r = export(&qa, &out, &opts)?;
    assert_eq!(r.train + r.valid, 100);
    assert_eq!(r.valid, 20, "whole documents of 5 pairs reach 20% exactly");
    assert_eq!(r.valid_path.as_deref(), Some(dir.path().join("train.valid.jsonl").as_path()));
    // No document on both sides.
    let valid_docs = split_docs(&pairs, 0.2, 1);
    let train_q: HashSet<String> = read(&out).iter().map(|v| v["text"].as_str().unwrap().to_string()).collect();
    for p in &pairs {
        assert_eq!(train_q.contains(&p.question), !valid_docs.contains(p.chunk.doc_id.as_str()));
    }
    // Same seed, same split; another seed, another split.
    assert_eq!(split_docs(&pairs, 0.2, 1), valid_docs);
    assert_ne!(split_docs(&pairs, 0.2, 2), valid_docs);
    // One document cannot be split: everything trains.
    assert!(split_docs(&pairs[..5], 0.5, 1).is_empty());
    // Uneven documents: a 4-pair document is not taken for a 1-pair target when a 1-pair
    // document is there, whatever the order.
    let mut uneven: Vec<QaPair> = (0..4).map(|i| pair(100, i)).collect();
    uneven.push(pair(101, 0));
    for seed in 0..8 {
        let v = split_docs(&uneven, 0.2, seed);
        assert_eq!(v.len(), 1);
        assert!(v.contains(uneven[4].chunk.doc_id.as_str()), "seed {seed}");
    }
    Ok(())
}

#[test]
fn exported_chat_file_validates_and_broken_files_get_line_numbers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let qa = dir.path().join("qa.jsonl");
    write_pairs(&qa, 4, 5);
    let out = dir.path().join("chat.jsonl");
    let opts = ExportOptions {
        format: Format::OpenaiChat,
        system_prompt: Some("Be brief.".into()),
        valid_fraction: 0.0,
        seed: 0,
    };
    export(&qa, &out, &opts)?;
    let r = validate(&out, Format::OpenaiChat, &TokenCounter::Estimate)?;
    assert!(r.is_valid(), "{:?}", r.errors);
    assert_eq!(r.examples, 20);
    assert_eq!(r.missing_system, 0);
    assert_eq!(r.epochs, 5, "20 examples: 100 // 20 epochs, as OpenAI's defaults");
    assert_eq!(r.billed_tokens, r.epochs * r.billing_tokens_per_epoch);

    let bad = dir.path().join("bad.jsonl");
    let lines = [
        r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}"#,
        r#"not json"#,
        r#"{"messages": [{"role": "user", "content": "Q"}]}"#,
        r#"{"messages": [{"role": "robot", "content": "Q"}, {"role": "assistant", "content": ""}]}"#,
        r#"{"messages": [{"role": "user", "content": "Q", "extra": 1}, {"role": "assistant", "content": "A"}]}"#,
        r#"{"prompt": "x"}"#,
        r#"[1, 2]"#,
        r#"{"messages": [{"role": "assistant", "content": "A", "weight": 2}]}"#,
    ];
    std::fs::write(&bad, lines.join("\n"))?;
    let r = validate(&bad, Format::OpenaiChat, &TokenCounter::Estimate)?;
    assert!(!r.is_valid());
    let at = |line: usize| r.errors.iter().filter(|p| p.line == line).map(|p| p.kind).collect::<Vec<_>>();
    assert!(at(1).is_empty());
    assert_eq!(at(2), ["invalid_json"]);
    assert_eq!(at(3), ["example_missing_assistant_message"]);
    assert_eq!(at(4), ["unrecognized_role", "missing_content"]);
    assert_eq!(at(5), ["message_unrecognized_key"]);
    assert_eq!(at(6), ["missing_messages_list"]);
    assert_eq!(at(7), ["data_type"]);
    assert_eq!(at(8), ["invalid_weight"]);
    assert!(r.errors.iter().any(|p| p.kind == "too_few_examples"));
    assert!(r.warnings.iter().any(|p| p.kind == "missing_user_message" && p.line == 8));
    Ok(())
}

#[test]
fn other_formats_get_their_keys_checked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("tl.jsonl");
    std::fs::write(&f, "{\"text\": \"q\", \"label\": \"a\"}\n{\"text\": \"q\"}\n{\"text\": \"\", \"label\": \"a\"}\n")?;
    let r = validate(&f, Format::TextLabel, &TokenCounter::Estimate)?;
    let kinds: Vec<(usize, &str)> = r.errors.iter().map(|p| (p.line, p.kind)).collect();
    assert!(kinds.contains(&(2, "missing_key")) && kinds.contains(&(3, "empty_value")), "{kinds:?}");
    Ok(())
}
