//! Dataset jobs: requests refused before anything runs; with the registry's embedder, a
//! collection's documents go through an OpenAI-compatible endpoint (a loopback stand-in that
//! records every request) into `/v1/files`, personal data redacted before it left, and on into a
//! fine-tuning job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use common::{TestServer, wait_job};
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

/// Three short policies for a RAFT job, so that records have distractors: (file name, text,
/// the sentence the stand-in quotes, its question, its answer).
const POLICIES: [(&str, &str, &str, &str, &str); 3] = [
    (
        "travel.txt",
        "Travel policy\n\nThe travel policy requires approval from the manager before booking flights. Employees \
         keep receipts for thirty days and file them with the finance team. Questions go to travel.desk@example.com.\n",
        "The travel policy requires approval from the manager before booking flights.",
        "Whose approval does the travel policy require before booking flights?",
        "The approval of the manager.",
    ),
    (
        "security.txt",
        "Security policy\n\nEvery laptop must use full disk encryption and a screen lock after five minutes. Lost \
         devices are reported to the security office within one hour of noticing the loss.\n",
        "Every laptop must use full disk encryption and a screen lock after five minutes.",
        "Which protections must every company laptop use under the security policy?",
        "Full disk encryption and a screen lock after five minutes.",
    ),
    (
        "leave.txt",
        "Leave policy\n\nStaff members receive twenty-five days of paid annual leave each calendar year. Unused \
         days may be carried over until the end of March of the following year.\n",
        "Staff members receive twenty-five days of paid annual leave each calendar year.",
        "How many days of paid annual leave do staff members receive each year?",
        "Twenty-five days each calendar year.",
    ),
];

/// The last user message of a chat completions request body.
fn user_message(body: &str) -> String {
    let req: Value = serde_json::from_str(body).unwrap_or_default();
    req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Whether a prompt is RAFT's chain-of-thought prompt (`Question: … Context: …`), not
/// qa-gen's question-generation prompt (which asks for `{"pairs": …}`).
fn is_cot_prompt(user: &str) -> bool {
    user.starts_with("Question:") && user.contains("Context:") && !user.contains("{\"pairs\"")
}

/// An OpenAI-compatible chat endpoint for RAFT's two prompts: a question-generation prompt
/// gets one pair about the policy in its passage; a chain-of-thought prompt gets reasoning
/// that quotes the oracle's sentence and ends with the final answer: JSON steps when the
/// prompt asks for JSON (`{"reasoning": …}`), else the reference's free text
/// (`##begin_quote##…##end_quote##`, `<ANSWER>: …`).
async fn raft_completions(State(seen): State<Seen>, body: String) -> Json<Value> {
    seen.lock().unwrap().push(body.clone());
    let user = user_message(&body);
    let content = if is_cot_prompt(&user) {
        let context = user.split_once("Context:").map_or("", |(_, c)| c);
        match POLICIES.iter().find(|p| context.contains(p.2)) {
            Some((_, _, quote, _, answer)) if user.contains("\"reasoning\"") => json!({
                "reasoning": [{"thought": "The policy states it in one sentence.", "quote": quote}],
                "answer": answer
            })
            .to_string(),
            Some((_, _, quote, _, answer)) => {
                format!(
                    "The policy states it: ##begin_quote##{quote}##end_quote## So the answer follows.\n<ANSWER>: {answer}"
                )
            }
            None => "The context does not say. <ANSWER>: unknown".to_string(),
        }
    } else {
        let (question, answer) =
            POLICIES.iter().find(|p| user.contains(p.2)).map_or(("What does it say?", "Nothing."), |p| (p.3, p.2));
        json!({"pairs": [{"question": question, "answer": answer}]}).to_string()
    };
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "stand-in",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}
    }))
}

/// A file's content.
async fn file_text(server: &TestServer, key: &str, id: &str) -> String {
    let r = server.http.get(server.url(&format!("/v1/files/{id}/content"))).bearer_auth(key).send().await.unwrap();
    assert!(r.status().is_success(), "{id}: {}", r.status());
    r.text().await.unwrap()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn raft_dataset_job_over_an_endpoint_writes_chat_and_eval_files() {
    raft_dataset_job(common::fast_server(0).await).await;
}

/// The same on PostgreSQL: the collection's vectors are in pgvector, and the job's hard
/// distractors come from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn raft_dataset_job_on_postgres_takes_hard_distractors_from_pgvector() {
    raft_dataset_job(TestServer::start_pg(|c| common::fast(c, 0)).await).await;
}

async fn raft_dataset_job(server: TestServer) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(raft_completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key).await;
    let docs = format!("/v1/collections/{col}/documents");
    for (name, text, ..) in POLICIES {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name(name));
        ok(server.http.post(server.url(&docs)).bearer_auth(&key).multipart(form).send().await.unwrap()).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let list = ok(server.http.get(server.url(&docs)).bearer_auth(&key).send().await.unwrap()).await;
        let statuses: Vec<&str> =
            list["data"].as_array().unwrap().iter().filter_map(|d| d["status"].as_str()).collect();
        assert!(!statuses.contains(&"failed"), "{list}");
        if statuses.len() == POLICIES.len() && statuses.iter().all(|s| *s == "indexed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let t0 = std::time::Instant::now();
    let body = json!({"collection": col, "kind": "raft", "questions_per_chunk": 1, "formats": ["chat", "eval"],
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
    eprintln!("raft dataset job: {} in {:.1} s, counts {}", job["status"], t0.elapsed().as_secs_f64(), job["counts"]);
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["kind"], "raft");
    assert!(job["counts"]["accepted"].as_u64().unwrap() >= 1, "{job:#}");
    assert_eq!(job["counts"]["redacted"]["email"], 1, "{job:#}");

    // The endpoint got both of RAFT's prompts, and nothing personal.
    let bodies = seen.lock().unwrap().clone();
    let cot = bodies.iter().filter(|b| is_cot_prompt(&user_message(b))).count();
    assert!(cot >= 1 && cot < bodies.len(), "{cot} chain-of-thought prompts of {}", bodies.len());
    assert!(bodies.iter().all(|b| !b.contains("travel.desk@example.com")), "{bodies:?}");

    // Files: chat (fine-tune) for train, eval (user_data) beside it.
    let files = job["result_files"].as_array().unwrap();
    for f in files {
        let purpose = if f["format"] == "chat" { "fine-tune" } else { "user_data" };
        assert_eq!(f["purpose"], purpose, "{f}");
        assert!(["chat", "eval"].contains(&f["format"].as_str().unwrap()), "{f}");
        assert!(f["records"].as_u64().unwrap() >= 1, "{f}");
        assert_eq!(
            f["filename"],
            format!("{id}.{}.{}.jsonl", f["split"].as_str().unwrap(), f["format"].as_str().unwrap())
        );
    }
    let train =
        files.iter().find(|f| f["split"] == "train" && f["format"] == "chat").unwrap_or_else(|| panic!("{job:#}"));
    assert!(files.iter().any(|f| f["split"] == "train" && f["format"] == "eval"), "{job:#}");
    let chat = jsonl(&file_text(&server, &key, train["id"].as_str().unwrap()).await);
    assert_eq!(chat.len() as u64, train["records"].as_u64().unwrap());
    for line in &chat {
        let messages = line["messages"].as_array().unwrap();
        let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap()["content"].as_str().unwrap();
        assert!(assistant.contains("<ANSWER>:") && assistant.contains("##begin_quote##"), "{line}");
        let user = messages.iter().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap();
        assert!(POLICIES.iter().any(|p| user.contains(p.2)), "the oracle is not among the documents: {user}");
    }
    // Held-out records have distractors: documents of other policies beside the oracle, the
    // hard ones found by searching the collection's vectors (with the similarity recorded).
    let mut with_distractors = 0;
    let mut hard = 0;
    for f in files.iter().filter(|f| f["format"] == "eval") {
        for r in jsonl(&file_text(&server, &key, f["id"].as_str().unwrap()).await) {
            assert!(r["question"].is_string() && r["gold_final_answer"].is_string(), "{r}");
            hard += r["meta"]["documents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["role"] == "hard" && d["score"].as_f64().is_some())
                .count();
            let context = r["context"].as_str().unwrap();
            if POLICIES.iter().filter(|p| context.contains(p.2)).count() >= 2 {
                with_distractors += 1;
            }
        }
    }
    assert!(with_distractors >= 1, "no record has a distractor: {job:#}");
    assert!(hard >= 1, "no hard distractor: the collection's vectors were not searched: {job:#}");

    // Rejected records, if any, say why.
    if let Some(rejected) = job["rejected_file"].as_str() {
        for r in jsonl(&file_text(&server, &key, rejected).await) {
            let reason = r["reason"].as_str().unwrap_or_else(|| panic!("no reason: {r}"));
            assert!(job["counts"]["rejected"][reason].as_u64().is_some(), "{reason} is not counted: {job:#}");
        }
    }
    server.stop().await;
}

/// The same job with a local model of the registry (llama.cpp in the server's process): it
/// runs to the end, counting what it kept and what it rejected, with nothing redacted (nothing
/// leaves the machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_dataset_job_with_a_local_model_runs_to_the_end() {
    let server = common::fast_server(0).await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key).await;
    let text = "Travel policy\n\nThe travel policy requires approval from the manager before booking flights. \
                Employees keep receipts for thirty days and file them with the finance team.\n";
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("travel.txt"));
    let url = server.url(&format!("/v1/collections/{col}/documents"));
    ok(server.http.post(url).bearer_auth(&key).multipart(form).send().await.unwrap()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let url = server.url(&format!("/v1/collections/{col}/documents"));
        let docs = ok(server.http.get(url).bearer_auth(&key).send().await.unwrap()).await;
        if docs["data"][0]["status"] == "indexed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{docs}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let body = json!({"collection": col, "kind": "qa", "questions_per_chunk": 1, "generator": common::SMOLLM2});
    let id = ok(start(&server, &key, &body).await).await["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let job = loop {
        let url = server.url(&format!("/v1/datasets/jobs/{id}"));
        let j = ok(server.http.get(url).bearer_auth(&key).send().await.unwrap()).await;
        if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap()) {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let accepted = job["counts"]["accepted"].as_u64().unwrap();
    let rejected: u64 = job["counts"]["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(accepted + rejected >= 1, "the model produced nothing that was counted: {job:#}");
    assert_eq!(job["counts"]["redacted"], json!({}), "{job:#}");
    let url = server.url(&format!("/v1/datasets/jobs/{id}/events?limit=100"));
    let events = ok(server.http.get(url).bearer_auth(&key).send().await.unwrap()).await.to_string();
    assert!(!events.contains("Personal data redacted"), "{events}");
    server.stop().await;
}
