//! The OpenAI-compatible backend against a local server speaking the protocol: the happy path
//! through a whole generation run, and the error paths (429, 500, timeouts, malformed JSON,
//! remote endpoints).
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{MockServer, Reply, chunk, own_address};
use docraft_core::{ChatMessage, GenError, GenRequest, Generator, NoProgress, Role, Sampling};
use docraft_llm::{
    Backend, GeneratorSettings, JsonMode, LlmError, OpenAiConfig, OpenAiGenerator, RequestLogEntry, build_generator,
};
use docraft_qa_gen::{GenerateOptions, Generation, Reason};

fn request(tag: &str) -> GenRequest {
    GenRequest {
        messages: vec![ChatMessage::new(Role::User, "hi")],
        max_tokens: 32,
        sampling: Sampling::default(),
        json_schema: Some(serde_json::json!({"type": "object"})),
        tag: tag.into(),
    }
}

fn fast(url: &str) -> OpenAiConfig {
    OpenAiConfig::new(url, "mock-model").with_retries(3, Duration::from_millis(10))
}

const GOOD: &str = r#"{"pairs":[{"question":"How long are invoices kept in the archive?","answer":"Invoices are kept for ten years."}]}"#;

#[test]
fn a_run_through_the_endpoint_writes_the_dataset() -> anyhow::Result<()> {
    let server = MockServer::start(|_, _| Reply::content(GOOD));
    let g = OpenAiGenerator::new(fast(&server.url()))?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let chunks: Vec<_> = (0..5)
        .map(|i| chunk(&format!("d{i}.md"), &format!("Invoices are kept for ten years in archive {i}.")))
        .collect();
    let run = Generation::new(&g, GenerateOptions { questions_per_chunk: 1, ..Default::default() })?;
    let s = run.run(&chunks, &out, &NoProgress)?;
    assert_eq!(server.count(), 5);
    // The same question for every chunk: the first is kept, the rest are near-duplicates.
    assert_eq!(s.accepted, 1);
    assert_eq!(s.rejected.get(&Reason::Duplicate), Some(&4));
    assert_eq!(s.usage.prompt_tokens, 500, "usage summed from the responses");
    assert_eq!(g.usage().completion_tokens, 100);
    // What the server saw: the model, JSON mode, the prompt with the chunk text.
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0]["model"], "mock-model");
    assert_eq!(bodies[0]["response_format"]["type"], "json_object");
    assert!(bodies[0]["messages"][1]["content"].as_str().unwrap().contains("Invoices are kept for ten years"));
    Ok(())
}

#[test]
fn transient_errors_are_retried_then_succeed() -> anyhow::Result<()> {
    let server = MockServer::start(|n, _| match n {
        0 => Reply::error(429),
        1 => Reply::error(503),
        _ => Reply::content("{}"),
    });
    let g = OpenAiGenerator::new(fast(&server.url()))?;
    let r = g.generate(&request("c1"))?;
    assert_eq!(r.text, "{}");
    assert_eq!(server.count(), 3);
    Ok(())
}

#[test]
fn retries_run_out_on_persistent_500() -> anyhow::Result<()> {
    let server = MockServer::start(|_, _| Reply::error(500));
    let g = OpenAiGenerator::new(fast(&server.url()))?;
    let err = g.generate(&request("c1")).unwrap_err();
    assert!(matches!(err, GenError::Transient(_)), "{err:?}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(server.count(), 4, "1 try + 3 retries");
    Ok(())
}

#[test]
fn client_errors_and_malformed_json_are_not_retried() -> anyhow::Result<()> {
    let server = MockServer::start(|n, _| if n == 0 { Reply::error(400) } else { Reply::malformed() });
    let g = OpenAiGenerator::new(fast(&server.url()))?;
    let e1 = g.generate(&request("a")).unwrap_err();
    assert!(matches!(e1, GenError::Permanent(_)) && e1.to_string().contains("400"), "{e1:?}");
    let e2 = g.generate(&request("b")).unwrap_err();
    assert!(matches!(e2, GenError::Permanent(_)) && e2.to_string().contains("malformed"), "{e2:?}");
    assert_eq!(server.count(), 2);
    Ok(())
}

#[test]
fn timeouts_are_transient_and_one_slow_request_does_not_sink_the_batch() -> anyhow::Result<()> {
    let server = MockServer::start(|_, body| {
        if body["messages"][0]["content"] == "slow" {
            Reply::content("{}").delayed(Duration::from_millis(400))
        } else {
            Reply::content("{}")
        }
    });
    let cfg = fast(&server.url()).with_timeout(Duration::from_millis(150))?.with_retries(1, Duration::from_millis(1));
    let g = OpenAiGenerator::new(cfg)?;
    let mut slow = request("slow");
    slow.messages[0].content = "slow".into();
    let out = g.generate_batch(&[request("a"), slow, request("b")]);
    assert!(out[0].is_ok() && out[2].is_ok());
    let err = out[1].as_ref().unwrap_err();
    assert!(matches!(err, GenError::Transient(_)) && err.to_string().contains("no answer within"), "{err:?}");
    Ok(())
}

#[test]
fn failed_requests_become_rejected_records() -> anyhow::Result<()> {
    let server = MockServer::start(|_, _| Reply::error(401));
    let g = OpenAiGenerator::new(fast(&server.url()))?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("qa.jsonl");
    let run = Generation::new(&g, GenerateOptions::default())?;
    let s = run.run(&[chunk("a.md", "Some text here."), chunk("b.md", "Other text here.")], &out, &NoProgress)?;
    assert_eq!(s.rejected.get(&Reason::BackendError), Some(&2));
    let rejected = std::fs::read_to_string(dir.path().join("qa.rejected.jsonl"))?;
    assert_eq!(rejected.lines().count(), 2);
    assert!(rejected.contains("401"));
    Ok(())
}

#[test]
fn remote_endpoints_are_refused_unless_allowed_and_then_logged() -> anyhow::Result<()> {
    let server = MockServer::start(|_, _| Reply::content("{}"));
    let remote = format!("http://{}:{}/v1", own_address(), server.port);
    let err = OpenAiGenerator::new(fast(&remote)).unwrap_err();
    assert!(matches!(err, LlmError::RemoteRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("--allow-remote"));
    assert!(matches!(OpenAiGenerator::new(fast("https://api.openai.com/v1")), Err(LlmError::RemoteRefused { .. })));
    assert_eq!(server.count(), 0, "nothing was sent");

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("requests.jsonl");
    let g = OpenAiGenerator::new(fast(&remote).with_remote(true, Some(log.clone())))?;
    assert!(g.is_remote());
    g.generate_batch(&[request("chunk-1"), request("chunk-2")]);
    let (entries, _) = docraft_core::jsonl::read_all::<RequestLogEntry>(&log)?;
    assert_eq!(entries.len(), 2);
    let mut ids: Vec<_> = entries.iter().flat_map(|e| e.chunk_ids.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["chunk-1", "chunk-2"]);
    assert!(entries.iter().all(|e| e.bytes > 50 && e.endpoint.contains(&own_address()) && e.outcome == "ok"));

    // A local endpoint leaves no log: nothing left the machine.
    let local_log = dir.path().join("local.jsonl");
    let g = OpenAiGenerator::new(fast(&server.url()).with_remote(true, Some(local_log.clone())))?;
    g.generate(&request("x"))?;
    assert!(!local_log.exists());
    Ok(())
}

#[test]
fn settings_build_an_endpoint_generator_that_logs_remote_requests_to_the_default_log() -> anyhow::Result<()> {
    let server = MockServer::start(|_, _| Reply::content("{}"));
    let remote = format!("http://{}:{}/v1", own_address(), server.port);
    let settings = GeneratorSettings {
        backend: Backend::Openai,
        base_url: Some(remote.clone()),
        model: Some("mock-model".into()),
        json_mode: JsonMode::Schema,
        ..GeneratorSettings::default()
    };
    let dir = tempfile::tempdir()?;
    let default_log = dir.path().join("qa.requests.jsonl");
    let err = build_generator(&settings, &default_log).map(|_| ()).unwrap_err();
    assert!(matches!(err, LlmError::RemoteRefused { .. }), "{err:?}");

    let settings = GeneratorSettings { allow_remote: true, ..settings };
    assert_eq!(settings.remote_log(&default_log), Some(default_log.clone()));
    let g = build_generator(&settings, &default_log)?;
    assert_eq!(g.model_id(), format!("mock-model@{}", own_address()));
    assert_eq!(g.preferred_batch(), 2 * settings.concurrency);
    g.generate(&request("chunk-9"))?;
    let (entries, _) = docraft_core::jsonl::read_all::<RequestLogEntry>(&default_log)?;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].chunk_ids, ["chunk-9"]);
    // The settings reached the request: schema mode sends the request's schema.
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0]["response_format"]["type"], "json_schema");
    Ok(())
}
