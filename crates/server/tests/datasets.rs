//! Dataset jobs: requests refused before anything runs; with the registry's embedder, a
//! collection's documents go through an OpenAI-compatible endpoint (a loopback stand-in that
//! records every request) into `/v1/files`, personal data redacted before it left, and on into a
//! fine-tuning job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use common::{TestServer, error_of, wait_job};
use serde_json::{Value, json};

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn collection(server: &TestServer, key: &str) -> String {
    let r =
        server.http.post(server.url("/v1/collections")).bearer_auth(key).json(&json!({"name": "docs"})).send().await;
    ok(r.unwrap()).await["id"].as_str().unwrap().to_string()
}

async fn start(server: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.url("/v1/datasets/jobs")).bearer_auth(key).json(body).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_requests_are_checked_before_anything_runs() {
    let server = TestServer::start_with(|c| {
        c.workers = 0;
        c.document_workers = 0;
        c.dataset_workers = 0;
    })
    .await;
    common::flows::dataset_requests_are_checked_before_anything_runs(&server).await;
    server.stop().await;
}

/// Every request body the stand-in endpoint received.
type Seen = Arc<Mutex<Vec<String>>>;

/// An OpenAI-compatible chat endpoint that answers each question-generation prompt with one
/// pair grounded in the prompt's document text.
async fn completions(State(seen): State<Seen>, body: String) -> Json<Value> {
    seen.lock().unwrap().push(body.clone());
    let req: Value = serde_json::from_str(&body).unwrap();
    let user = req["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "user").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let line =
        user.lines().find(|l| l.contains("travel policy requires")).unwrap_or("The travel policy requires approval.");
    let answer: String = line.split_whitespace().skip_while(|w| *w != "The").take(12).collect::<Vec<_>>().join(" ");
    let content = json!({"pairs": [{"question": "What does the travel policy require before booking flights?", "answer": answer}]});
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "stand-in",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn documents_to_redacted_dataset_to_fine_tuning_job() {
    let seen: Seen = Arc::default();
    let app =
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key).await;
    let text = "Travel policy\n\nContact John Doe at john.doe@example.com or +34 612 345 678 before you travel. \
                The travel policy requires approval from the manager before booking flights. Employees keep \
                receipts for thirty days and file them with the finance team. His IBAN is ES91 2100 0418 4502 0005 1332.\n";
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("travel.txt"));
    ok(server
        .http
        .post(server.url(&format!("/v1/collections/{col}/documents")))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap())
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let docs = ok(server
            .http
            .get(server.url(&format!("/v1/collections/{col}/documents")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap())
        .await;
        if docs["data"][0]["status"] == "indexed" {
            break;
        }
        assert_ne!(docs["data"][0]["status"], "failed", "{docs}");
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let body = json!({"collection": col, "kind": "qa", "questions_per_chunk": 1,
                      "generator": {"base_url": endpoint, "model": "stand-in"}});
    let job = ok(start(&server, &key, &body).await).await;
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let job = loop {
        let j =
            ok(server.http.get(server.url(&format!("/v1/datasets/jobs/{id}"))).bearer_auth(&key).send().await.unwrap())
                .await;
        if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap()) {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert!(job["counts"]["accepted"].as_u64().unwrap() >= 1, "{job:#}");
    assert_eq!(job["counts"]["redacted"]["email"], 1, "{job:#}");
    assert_eq!(job["counts"]["redacted"]["phone"], 1, "{job:#}");
    assert_eq!(job["counts"]["redacted"]["iban"], 1, "{job:#}");

    // Nothing personal reached the endpoint; the placeholders did.
    let bodies = seen.lock().unwrap().clone();
    assert!(!bodies.is_empty());
    for b in &bodies {
        for raw in ["john.doe@example.com", "612 345 678", "ES91 2100", "0005 1332"] {
            assert!(!b.contains(raw), "{raw} reached the endpoint: {b}");
        }
    }
    assert!(bodies.iter().any(|b| b.contains("[EMAIL]")), "{bodies:?}");
    // The job's events say what was replaced, by type and count, never the values.
    let events = ok(server
        .http
        .get(server.url(&format!("/v1/datasets/jobs/{id}/events?limit=100")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap())
    .await;
    let text = events.to_string();
    assert!(text.contains("Personal data redacted") && text.contains("1 email"), "{text}");
    assert!(!text.contains("john.doe@example.com"), "{text}");
    let stream = server
        .http
        .get(server.url(&format!("/v1/datasets/jobs/{id}/events?stream=true")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.contains("Dataset job succeeded") && stream.trim_end().ends_with("data: [DONE]"), "{stream}");

    // The training file is a fine-tune file of the organization: train on it.
    let train = job["result_files"].as_array().unwrap().iter().find(|f| f["split"] == "train").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let content = server
        .http
        .get(server.url(&format!("/v1/files/{train}/content")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(content.contains("\"messages\"") && content.contains("travel policy"), "{content}");
    let ft = json!({"model": common::SMOLLM2, "training_file": train, "hyperparameters": {"n_epochs": 1, "batch_size": 1, "max_steps": 1}});
    let ft = ok(server.http.post(server.url("/v1/fine_tuning/jobs")).bearer_auth(&key).json(&ft).send().await.unwrap())
        .await;
    let done = wait_job(&server, &key, ft["id"].as_str().unwrap(), 300, |j| {
        j["status"] == "succeeded" || j["status"] == "failed"
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    server.stop().await;
}
