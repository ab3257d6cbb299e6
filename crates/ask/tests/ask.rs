#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The asker with a scripted retriever and generator: citations, declines, languages,
//! conversational rewriting and the quote fallback.

use std::collections::HashMap;
use std::sync::Mutex;

use docraft_ask::{AskOptions, Asker, Attribution, Turn};
use docraft_core::{
    Chunk, ChunkId, DocId, FinishReason, GenError, GenRequest, GenResponse, Generator, PageRange, RetrieveError,
    Retriever, Scored, Span, Usage,
};

fn chunk(id: &str, source: &str, page: Option<u32>, text: &str) -> Chunk {
    Chunk {
        id: ChunkId::from_string(id.to_string()),
        doc_id: DocId::from_string(format!("doc-{source}")),
        source: format!("/data/{source}"),
        text: text.to_string(),
        span: Span::new(0, text.len()),
        pages: page.map(|p| PageRange::new(p, p)),
        headings: vec![],
        chunk_index: 0,
        chunk_count: 1,
        metadata: Default::default(),
    }
}

fn store() -> HashMap<ChunkId, Chunk> {
    [
        chunk("c1", "handbook.pdf", Some(7), "The flange bolts are tightened to 45 N·m in a star pattern."),
        chunk("c2", "guia.md", None, "Las copias de seguridad se hacen cada noche a las 02:00 en la sala B."),
        chunk("c3", "memo.txt", None, "The cafeteria opens at eight in the morning."),
    ]
    .into_iter()
    .map(|c| (c.id.clone(), c))
    .collect()
}

/// Returns the listed chunks with fixed scores and records every query.
struct Fixed {
    hits: Vec<(&'static str, f32)>,
    store: HashMap<ChunkId, Chunk>,
    queries: Mutex<Vec<String>>,
}

impl Retriever for Fixed {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        self.queries.lock().unwrap().push(query.to_string());
        Ok(self
            .hits
            .iter()
            .take(k)
            .map(|(id, s)| Scored { chunk: self.store[&ChunkId::from_string((*id).to_string())].clone(), score: *s })
            .collect())
    }
}

fn fixed(hits: Vec<(&'static str, f32)>) -> Fixed {
    Fixed { hits, store: store(), queries: Mutex::new(vec![]) }
}

/// Answers from a script (one reply per call, in order), streaming it in 3-character pieces,
/// and records every request.
struct Script {
    replies: Mutex<Vec<String>>,
    requests: Mutex<Vec<GenRequest>>,
}

impl Script {
    fn new(replies: &[&str]) -> Self {
        Self {
            replies: Mutex::new(replies.iter().rev().map(|s| (*s).to_string()).collect()),
            requests: Mutex::new(vec![]),
        }
    }
    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Generator for Script {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests.iter().map(|r| self.generate_stream(r, &mut |_| {})).collect()
    }
    fn generate_stream(&self, r: &GenRequest, on_text: &mut dyn FnMut(&str)) -> Result<GenResponse, GenError> {
        self.requests.lock().unwrap().push(r.clone());
        let text = self.replies.lock().unwrap().pop().ok_or_else(|| GenError::Permanent("script ran out".into()))?;
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(3) {
            on_text(&piece.iter().collect::<String>());
        }
        Ok(GenResponse { text, finish: FinishReason::Stop, usage: Usage::default() })
    }
    fn model_id(&self) -> String {
        "script".into()
    }
}

#[test]
fn markers_become_file_and_page_citations_while_streaming() {
    let retriever = fixed(vec![("c1", 0.71), ("c3", 0.2)]);
    let generator = Script::new(&["They are tightened to 45 N·m [1]."]);
    let asker = Asker::new(&retriever, &generator);
    let mut streamed = String::new();
    let a = asker.ask("What torque do the flange bolts need?", &[], &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!(streamed, "They are tightened to 45 N·m [handbook.pdf, p. 7].");
    assert_eq!(a.text, streamed);
    assert!(!a.declined && a.grounded);
    assert_eq!(a.citations[0].label, "handbook.pdf, p. 7");
    assert_eq!(a.citations[0].pages, Some(PageRange::new(7, 7)));
    assert_eq!(a.citations[0].how, Attribution::Marker);
    // The prompt numbers the sources with their labels and asks for an English answer.
    let req = &generator.requests.lock().unwrap()[0];
    assert!(req.messages[1].content.contains("[1] (handbook.pdf, p. 7)\nThe flange bolts"));
    assert!(req.messages[0].content.contains("Answer in English"));
}

#[test]
fn a_far_best_chunk_declines_without_generating() {
    let retriever = fixed(vec![("c3", 0.12)]);
    let generator = Script::new(&[]);
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("Who won the 1998 football world cup final?", &[], &mut |_| {}).unwrap();
    assert!(a.declined);
    assert!(a.text.starts_with("I don't know"));
    assert!(a.citations.is_empty());
    assert_eq!(generator.calls(), 0);
    // In Spanish, the decline is Spanish.
    let a = asker.ask("¿Quién ganó la final del mundial de fútbol de 1998?", &[], &mut |_| {}).unwrap();
    assert!(a.declined && a.text.starts_with("No lo sé"), "{}", a.text);
}

#[test]
fn questions_whose_words_are_not_in_the_chunks_decline_even_with_a_high_score() {
    let retriever = fixed(vec![("c3", 0.9)]);
    let generator = Script::new(&[]);
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("Which planet hosts Olympus Mons?", &[], &mut |_| {}).unwrap();
    assert!(a.declined, "{a:?}");
    assert!(a.decline_reason.as_deref().unwrap().contains("0 of the question's 4 content words"), "{a:?}");
    let relaxed = AskOptions { min_word_coverage: 0.0, ..AskOptions::default() };
    let generator = Script::new(&["I don't know."]);
    let asker = Asker::new(&retriever, &generator).with_options(relaxed).unwrap();
    let a = asker.ask("Which planet hosts Olympus Mons?", &[], &mut |_| {}).unwrap();
    assert!(a.declined, "the model's own decline counts: {a:?}");
    assert_eq!(generator.calls(), 1);
}

#[test]
fn spanish_questions_get_the_spanish_prompt_and_overlap_citations() {
    let retriever = fixed(vec![("c3", 0.4), ("c2", 0.6)]);
    let generator = Script::new(&["Las copias de seguridad se hacen cada noche a las 02:00."]);
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("¿Cuándo se hacen las copias de seguridad?", &[], &mut |_| {}).unwrap();
    assert_eq!(a.language, "es");
    let req = &generator.requests.lock().unwrap()[0];
    assert!(req.messages[0].content.starts_with("Respondes preguntas"));
    assert!(req.messages[1].content.contains("Pregunta: ¿Cuándo"));
    assert_eq!(a.citations.len(), 1);
    assert_eq!(a.citations[0].label, "guia.md");
    assert_eq!(a.citations[0].how, Attribution::Overlap);
}

#[test]
fn an_answer_found_in_no_source_gets_a_cited_quote() {
    let retriever = fixed(vec![("c1", 0.6), ("c3", 0.3)]);
    let generator = Script::new(&["Bananas are yellow and grow in warm places."]);
    let asker = Asker::new(&retriever, &generator);
    let mut streamed = String::new();
    let a = asker.ask("What torque for the flange bolts?", &[], &mut |t| streamed.push_str(t)).unwrap();
    assert!(!a.grounded);
    assert_eq!(a.citations.len(), 1);
    assert_eq!(a.citations[0].how, Attribution::Quote);
    assert_eq!(a.citations[0].label, "handbook.pdf, p. 7");
    assert!(streamed.ends_with("«The flange bolts are tightened to 45 N·m in a star pattern.» [handbook.pdf, p. 7]"));
}

#[test]
fn follow_ups_are_rewritten_before_retrieval() {
    let retriever = fixed(vec![("c1", 0.7)]);
    let history =
        vec![Turn { question: "What torque do the flange bolts need?".into(), answer: "45 N·m [1].".into() }];
    // A usable rewrite is searched for.
    let generator = Script::new(&["What pattern are the flange bolts tightened in?", "In a star pattern [1]."]);
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("And in what pattern?", &history, &mut |_| {}).unwrap();
    assert_eq!(a.query, "What pattern are the flange bolts tightened in?");
    assert_eq!(retriever.queries.lock().unwrap().last().unwrap(), &a.query);
    let rewrite_prompt = &generator.requests.lock().unwrap()[0].messages[0].content;
    assert!(rewrite_prompt.contains("User: What torque do the flange bolts need?"));
    assert!(rewrite_prompt.contains("Follow-up question: And in what pattern?"));
    // An unusable one (no word of the conversation) falls back to both questions together.
    let generator = Script::new(&["Bananas.", "A star [1]."]);
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("And in what pattern?", &history, &mut |_| {}).unwrap();
    assert_eq!(a.query, "What torque do the flange bolts need? And in what pattern?");
}

#[test]
fn options_are_validated() {
    let retriever = fixed(vec![]);
    let generator = Script::new(&[]);
    let bad = AskOptions { k: 0, ..AskOptions::default() };
    let err = Asker::new(&retriever, &generator).with_options(bad).unwrap_err();
    assert!(err.to_string().starts_with("k:"));
    let asker = Asker::new(&retriever, &generator);
    let a = asker.ask("Anything at all here?", &[], &mut |_| {}).unwrap();
    assert!(a.declined && a.decline_reason.unwrap().contains("no chunks"));
    // Without similarities (keyword or fused scores) there is no similarity floor.
    let o = AskOptions { min_score: 0.3, ..AskOptions::default() };
    assert_eq!(o.clone().for_scores(true).min_score, 0.3);
    assert_eq!(o.for_scores(false).min_score, -1.0);
}

#[test]
fn rendered_prompts() {
    let en = docraft_ask::Prompts::new("en");
    let es = docraft_ask::Prompts::new("es");
    let fr = docraft_ask::Prompts::new("fr");
    insta::assert_snapshot!(
        "answer_en",
        format!("{}\n---\n{}", en.answer_system().unwrap(), en.answer_user("[1] (a.pdf, p. 2)\ntext", "Q?").unwrap())
    );
    insta::assert_snapshot!(
        "answer_es",
        format!("{}\n---\n{}", es.answer_system().unwrap(), es.answer_user("[1] (a.pdf, p. 2)\ntexto", "¿P?").unwrap())
    );
    insta::assert_snapshot!("answer_fr_system", fr.answer_system().unwrap());
    insta::assert_snapshot!("rewrite_es", es.rewrite("Usuario: ¿A?\nAsistente: B.", "¿Y C?").unwrap());
}

#[test]
fn sources_questions_and_history_are_inserted_verbatim() {
    let sources = "[1] (a.pdf)\nThe form says {question}, {{question}}, {sources} and {{history}}.";
    let question = "What is {{sources}} or {language}?";
    for lang in ["en", "es", "fr"] {
        let p = docraft_ask::Prompts::new(lang);
        let user = p.answer_user(sources, question).unwrap();
        assert_eq!(user.matches(sources).count(), 1, "{user}");
        assert_eq!(user.matches(question).count(), 1, "{user}");
        assert!(!user.replacen(sources, "", 1).replacen(question, "", 1).contains('{'), "{user}");
        let rewrite = p.rewrite(sources, question).unwrap();
        assert_eq!(rewrite.matches(sources).count(), 1, "{rewrite}");
        assert_eq!(rewrite.matches(question).count(), 1, "{rewrite}");
        assert!(!p.answer_system().unwrap().contains('{'));
    }
}
