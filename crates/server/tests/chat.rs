//! `POST /v1/chat/completions` and `/v1/conversations` over HTTP: hostile and malformed
//! requests, isolation between organizations; with the registry's models (scripts/setup.sh),
//! answers from a collection with citations, in English and Spanish, streamed and not, a
//! decline, a conversation with a follow-up, and the Python OpenAI SDK (which needs PyPI too):
//! `cargo test -p docraft-server --test chat -- --include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{SMOLLM2, TestServer, error_of};
use serde_json::{Value, json};

const TORQUE: &str = "What torque should the flange bolts be tightened to?";
const CONFIDENTIAL: &str = "¿Dónde se guardan los documentos en papel de nivel confidencial?";
const UNANSWERABLE: &str = "What is the CEO's favourite colour?";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name)).unwrap()
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn post(server: &TestServer, key: &str, path: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.url(path)).bearer_auth(key).json(body).send().await.unwrap()
}

async fn chat(server: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    post(server, key, "/v1/chat/completions", body).await
}

async fn collection(server: &TestServer, key: &str, name: &str) -> String {
    ok(post(server, key, "/v1/collections", &json!({"name": name})).await).await["id"].as_str().unwrap().to_string()
}

async fn conversation(server: &TestServer, key: &str, col: &str) -> reqwest::Response {
    post(server, key, "/v1/conversations", &json!({"collection": col})).await
}

fn user(q: &str) -> Value {
    json!([{"role": "user", "content": q}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chat_requests_are_refused_in_openais_shape() {
    let server = TestServer::start_with(|c| {
        c.document_workers = 0;
        c.workers = 0;
    })
    .await;
    let (_, a) = server.org("a").await;
    let (_, b) = server.org("b").await;
    let col = collection(&server, &a, "manuals").await;

    // Not JSON, no messages, no user message, a tool message, too many and too long messages.
    let r = server
        .http
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 400).await["error"]["code"], "invalid_json");
    error_of(chat(&server, &a, &json!({"model": SMOLLM2})).await, 400).await;
    error_of(chat(&server, &a, &json!({"model": SMOLLM2, "messages": []})).await, 400).await;
    let only_system = json!({"model": SMOLLM2, "messages": [{"role": "system", "content": "hi"}]});
    assert_eq!(error_of(chat(&server, &a, &only_system).await, 400).await["error"]["param"], "messages");
    let tool = json!({"model": SMOLLM2, "messages": [{"role": "tool", "content": "x"}]});
    assert_eq!(error_of(chat(&server, &a, &tool).await, 400).await["error"]["param"], "messages[0].role");
    let many: Vec<Value> = (0..65).map(|i| json!({"role": "user", "content": format!("q{i}")})).collect();
    error_of(chat(&server, &a, &json!({"model": SMOLLM2, "messages": many})).await, 400).await;
    let long = json!({"model": SMOLLM2, "messages": user(&"a".repeat(32 * 1024 + 1))});
    assert_eq!(error_of(chat(&server, &a, &long).await, 400).await["error"]["param"], "messages[0].content");
    let parts = json!([{"type": "image_url", "image_url": {"url": "x"}}]);
    let image = json!({"model": SMOLLM2, "messages": [{"role": "user", "content": parts}]});
    error_of(chat(&server, &a, &image).await, 400).await;
    // A body over the JSON limit.
    let huge = json!({"model": SMOLLM2, "messages": user(&"a".repeat(2 << 20))});
    error_of(chat(&server, &a, &huge).await, 413).await;

    // Unknown models, including another organization's fine-tuned one.
    for model in ["no-such-model", "ft:smollm2-135m-instruct:b:x:ftjob-000000000000000000000000", ""] {
        let e = error_of(chat(&server, &a, &json!({"model": model, "messages": user("hi")})).await, 400).await;
        assert_eq!(
            (e["error"]["code"].as_str(), e["error"]["param"].as_str()),
            (Some("model_not_found"), Some("model"))
        );
    }

    // Out of range: 422 naming the parameter.
    for (field, value, param) in [
        ("max_tokens", json!(0), "max_tokens"),
        ("max_tokens", json!(2049), "max_tokens"),
        ("max_completion_tokens", json!(-1), "max_completion_tokens"),
        ("temperature", json!(3.5), "temperature"),
    ] {
        let mut body = json!({"model": SMOLLM2, "messages": user("hi")});
        body[field] = value;
        assert_eq!(error_of(chat(&server, &a, &body).await, 422).await["error"]["param"], param, "{field}");
    }
    for k in [0, 21] {
        let body = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"collection": col, "k": k}});
        assert_eq!(error_of(chat(&server, &a, &body).await, 422).await["error"]["param"], "docraft.k");
    }
    // The extension is docraft's own: a misspelt key, a filter that is no filter.
    let fuzzy = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"collection": col, "retrieval": "fuzzy"}});
    assert_eq!(error_of(chat(&server, &a, &fuzzy).await, 400).await["error"]["param"], "docraft.retrieval");
    let alone = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"retrieval": "keyword"}});
    assert_eq!(error_of(chat(&server, &a, &alone).await, 400).await["error"]["param"], "docraft.collection");
    let typo = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"colection": col}});
    error_of(chat(&server, &a, &typo).await, 400).await;
    let filter =
        json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"collection": col, "filter": {"team": {"x": 1}}}});
    error_of(chat(&server, &a, &filter).await, 400).await;

    // Another organization's collection and conversation do not exist for B; nor without a key.
    let conv = ok(conversation(&server, &a, &col).await).await["id"].as_str().unwrap().to_string();
    for docraft in [json!({"collection": col}), json!({"conversation": conv}), json!({"collection": "col-../../x"})] {
        let body = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": docraft});
        assert_eq!(error_of(chat(&server, &b, &body).await, 404).await["error"]["code"], "not_found", "{docraft}");
    }
    let r = server.http.post(server.url("/v1/chat/completions")).json(&json!({"model": SMOLLM2})).send().await.unwrap();
    error_of(r, 401).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_the_organizations_own() {
    let server = TestServer::start_with(|c| {
        c.document_workers = 0;
        c.workers = 0;
    })
    .await;
    let (_, a) = server.org("a").await;
    let (_, b) = server.org("b").await;
    let col = collection(&server, &a, "manuals").await;
    let other = collection(&server, &b, "theirs").await;

    let conv = ok(post(&server, &a, "/v1/conversations", &json!({"collection": col, "title": "Bolts"})).await).await;
    let id = conv["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("conv-"), "{conv}");
    assert_eq!((conv["object"].as_str(), conv["collection_id"].as_str()), (Some("conversation"), Some(col.as_str())));
    assert_eq!(conv["title"], "Bolts");
    // Refused: another organization's collection, no collection, unknown fields, a bad title.
    for body in [json!({"collection": other}), json!({"collection": "col-000000000000000000000000"})] {
        error_of(post(&server, &a, "/v1/conversations", &body).await, 404).await;
    }
    for body in [json!({}), json!({"collection": col, "tittle": "x"}), json!({"collection": col, "title": "a\u{7}b"})] {
        error_of(post(&server, &a, "/v1/conversations", &body).await, 400).await;
    }
    let long_title = json!({"collection": col, "title": "x".repeat(201)});
    error_of(post(&server, &a, "/v1/conversations", &long_title).await, 400).await;

    let got =
        ok(server.http.get(server.url(&format!("/v1/conversations/{id}"))).bearer_auth(&a).send().await.unwrap()).await;
    assert_eq!(got["turns"], json!([]));
    let listed = ok(server.http.get(server.url("/v1/conversations")).bearer_auth(&a).send().await.unwrap()).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["data"][0].get("turns").is_none(), "{listed}");

    // B sees nothing of A's: 404 for each route; 401 without a key.
    let routes = [("GET", format!("/v1/conversations/{id}")), ("DELETE", format!("/v1/conversations/{id}"))];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = server.http.request(m.clone(), server.url(path)).bearer_auth(&b).send().await.unwrap();
        assert_eq!(error_of(r, 404).await["error"]["code"], "not_found", "{method} {path}");
        error_of(server.http.request(m, server.url(path)).send().await.unwrap(), 401).await;
    }
    let theirs = ok(server.http.get(server.url("/v1/conversations")).bearer_auth(&b).send().await.unwrap()).await;
    assert_eq!(theirs["data"], json!([]));
    error_of(server.http.get(server.url("/v1/conversations")).send().await.unwrap(), 401).await;
    let r = server.http.post(server.url("/v1/conversations")).json(&json!({"collection": col})).send().await.unwrap();
    error_of(r, 401).await;
    // Ids that are not ids.
    for bad in ["conv-../../etc", "conv-x", "col-000000000000000000000000"] {
        let r = server.http.get(server.url(&format!("/v1/conversations/{bad}"))).bearer_auth(&a).send().await.unwrap();
        error_of(r, 404).await;
    }
    // A conversation and a collection that disagree.
    let col2 = collection(&server, &a, "other").await;
    let body = json!({"model": SMOLLM2, "messages": user("hi"), "docraft": {"collection": col2, "conversation": id}});
    assert_eq!(error_of(chat(&server, &a, &body).await, 400).await["error"]["param"], "docraft.collection");

    let gone =
        ok(server.http.delete(server.url(&format!("/v1/conversations/{id}"))).bearer_auth(&a).send().await.unwrap())
            .await;
    assert_eq!(gone, json!({"id": id, "object": "conversation", "deleted": true}));
    let r = server.http.get(server.url(&format!("/v1/conversations/{id}"))).bearer_auth(&a).send().await.unwrap();
    error_of(r, 404).await;

    // Deleting a collection takes its conversations with it.
    let conv2 = ok(conversation(&server, &a, &col2).await).await["id"].as_str().unwrap().to_string();
    ok(server.http.delete(server.url(&format!("/v1/collections/{col2}"))).bearer_auth(&a).send().await.unwrap()).await;
    let r = server.http.get(server.url(&format!("/v1/conversations/{conv2}"))).bearer_auth(&a).send().await.unwrap();
    error_of(r, 404).await;
    server.stop().await;
}

// With the models.

/// A server with the handbook and the Spanish policy indexed in one collection.
async fn indexed_collection() -> (TestServer, String, String) {
    let t0 = Instant::now();
    let server = common::fast_server(0).await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "manuals").await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(fixture("docs/handbook-en.pdf")).file_name("handbook-en.pdf"))
        .part("file", reqwest::multipart::Part::bytes(fixture("docs/politica-es.pdf")).file_name("politica-es.pdf"));
    let r = server
        .http
        .post(server.url(&format!("/v1/collections/{col}/documents")))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    ok(r).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let listed = ok(server
            .http
            .get(server.url(&format!("/v1/collections/{col}/documents")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap())
        .await;
        let docs = listed["data"].as_array().unwrap();
        assert!(docs.iter().all(|d| d["status"] != "failed"), "{listed:#}");
        if docs.len() == 2 && docs.iter().all(|d| d["status"] == "indexed") {
            break;
        }
        assert!(Instant::now() < deadline, "not indexed: {listed:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!("indexed in {:.1} s", t0.elapsed().as_secs_f64());
    (server, key, col)
}

/// Whether a citation or a cited source names `file` with pages holding `page`.
fn cites(a: &Value, file: &str, page: u64) -> bool {
    let holds = |x: &Value| {
        x["filename"] == file
            && x["pages"].as_array().is_some_and(|p| p[0].as_u64().unwrap() <= page && page <= p[1].as_u64().unwrap())
    };
    a["citations"].as_array().unwrap().iter().any(holds)
        || a["sources"].as_array().unwrap().iter().any(|s| s["cited"] == true && holds(s))
}

fn content(a: &Value) -> &str {
    a["choices"][0]["message"]["content"].as_str().unwrap()
}

/// The `data:` payloads of an event stream.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn chat_answers_from_a_collection_with_citations() {
    let (server, key, col) = indexed_collection().await;
    let rag =
        |q: &str| json!({"model": SMOLLM2, "messages": user(q), "max_tokens": 60, "docraft": {"collection": col}});

    let t = Instant::now();
    let a = ok(chat(&server, &key, &rag(TORQUE)).await).await;
    eprintln!("torque in {:.1} s: {}", t.elapsed().as_secs_f64(), content(&a));
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"), "{a:#}");
    assert_eq!((a["object"].as_str(), a["model"].as_str()), (Some("chat.completion"), Some(SMOLLM2)));
    assert_eq!(a["choices"][0]["message"]["role"], "assistant");
    assert_eq!(a["choices"][0]["finish_reason"], "stop");
    assert_eq!(a["declined"], false, "{a:#}");
    assert!(!content(&a).trim().is_empty());
    assert!(cites(&a, "handbook-en.pdf", 2), "{a:#}");
    assert!(content(&a).contains("[handbook-en.pdf, p"), "{a:#}");
    let u = &a["usage"];
    assert!(u["completion_tokens"].as_u64().unwrap() > 0 && u["prompt_tokens"].as_u64().unwrap() > 0, "{u}");
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    let s = &a["sources"][0];
    assert!(s["document_id"].as_str().unwrap().starts_with("doc-"), "{s}");
    assert!(s["snippet"].as_str().unwrap().chars().count() <= 300 && s["score"].is_number(), "{s}");
    assert_eq!(a["conversation"], Value::Null);

    let t = Instant::now();
    let es = ok(chat(&server, &key, &rag(CONFIDENTIAL)).await).await;
    eprintln!("confidencial in {:.1} s: {}", t.elapsed().as_secs_f64(), content(&es));
    assert_eq!(es["declined"], false, "{es:#}");
    assert!(cites(&es, "politica-es.pdf", 2), "{es:#}");

    // Streamed: the role, the text in pieces, the sources with the last chunk, then [DONE];
    // the pieces join into the unstreamed answer (greedy decoding).
    let t = Instant::now();
    let mut body = rag(TORQUE);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = chat(&server, &key, &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    eprintln!("streamed in {:.1} s", t.elapsed().as_secs_f64());
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]), "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let pieces: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).filter(|p| !p.is_empty()).collect();
    assert!(pieces.len() >= 2, "{text}");
    assert_eq!(pieces.concat(), content(&a));
    let last = chunks.iter().rev().find(|c| c["choices"].as_array().is_some_and(|c| !c.is_empty())).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{last}");
    assert_eq!(last["sources"], a["sources"]);
    assert_eq!(last["citations"], a["citations"]);
    assert_eq!(last["declined"], false);
    let usage = chunks.last().unwrap();
    assert!(usage["choices"].as_array().unwrap().is_empty() && usage["usage"]["total_tokens"].as_u64() > Some(0));

    // What the documents do not say is declined, without citations.
    let no = ok(chat(&server, &key, &rag(UNANSWERABLE)).await).await;
    assert_eq!(no["declined"], true, "{no:#}");
    assert_eq!(no["citations"], json!([]));

    // A conversation: its turns are the history of the follow-up, which is rewritten.
    let conv = ok(conversation(&server, &key, &col).await).await["id"].as_str().unwrap().to_string();
    let in_conv =
        |q: &str| json!({"model": SMOLLM2, "messages": user(q), "max_tokens": 40, "docraft": {"conversation": conv}});
    let first = ok(chat(&server, &key, &in_conv(TORQUE)).await).await;
    assert_eq!(first["conversation"], conv.as_str());
    let t = Instant::now();
    let second = ok(chat(&server, &key, &in_conv("And in which sequence?")).await).await;
    eprintln!("follow-up in {:.1} s: {}", t.elapsed().as_secs_f64(), content(&second));
    assert!(cites(&second, "handbook-en.pdf", 2), "{second:#}");
    let got =
        ok(server.http.get(server.url(&format!("/v1/conversations/{conv}"))).bearer_auth(&key).send().await.unwrap())
            .await;
    let turns = got["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{got:#}");
    assert_eq!((turns[0]["seq"].as_i64(), turns[1]["seq"].as_i64()), (Some(1), Some(2)));
    assert_eq!(turns[0]["question"], TORQUE);
    assert_eq!(turns[1]["answer"].as_str(), Some(content(&second)));
    assert_eq!(turns[1]["sources"], second["sources"]);
    assert_eq!(got["title"], TORQUE);

    // A plain chat, without a collection: OpenAI's shape, no sources.
    let plain =
        ok(chat(&server, &key, &json!({"model": SMOLLM2, "messages": user("Say hello."), "max_tokens": 8})).await)
            .await;
    assert!(!content(&plain).is_empty(), "{plain:#}");
    assert_eq!(plain["sources"], json!([]));
    assert!(["stop", "length"].contains(&plain["choices"][0]["finish_reason"].as_str().unwrap()), "{plain:#}");
    assert_eq!(plain["usage"]["completion_tokens"].as_u64().map(|n| n <= 8), Some(true), "{plain:#}");
    assert_eq!(server.state.chat_models().loaded_ids(), vec![SMOLLM2.to_string()]);
    server.stop().await;
}

const SDK_SCRIPT: &str = r#"
import os
from openai import OpenAI

client = OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"])
question = "What torque should the flange bolts be tightened to?"
extra = {"docraft": {"collection": os.environ["COLLECTION"]}}
kw = dict(model=os.environ["MODEL"], messages=[{"role": "user", "content": question}], max_tokens=60, seed=42,
          temperature=0, extra_body=extra)

resp = client.chat.completions.create(**kw)
assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-"), resp
text = resp.choices[0].message.content
assert text and resp.choices[0].finish_reason == "stop", resp
d = resp.to_dict()
assert d["declined"] is False, d
assert any(s["filename"] == "handbook-en.pdf" and s["cited"] for s in resp.model_extra["sources"]), d
assert any(c["filename"] == "handbook-en.pdf" and c["pages"][0] <= 2 <= c["pages"][1] for c in d["citations"]), d
assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 0, resp.usage

pieces, last = [], None
for chunk in client.chat.completions.create(stream=True, **kw):
    assert chunk.object == "chat.completion.chunk", chunk
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    last = chunk
assert len(pieces) >= 2, pieces
assert "".join(pieces) == text, ("".join(pieces), text)
assert last.choices[0].finish_reason == "stop", last
assert last.model_extra["sources"] == d["sources"], last.model_extra

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("an unknown model should fail")
except Exception as e:
    assert type(e).__name__ == "BadRequestError" and e.code == "model_not_found", repr(e)
print("OK", len(pieces), "pieces:", text)
"#;

/// A virtual environment with `openai` from PyPI.
fn venv() -> tempfile::TempDir {
    let venv = tempfile::tempdir().unwrap();
    let status = Command::new("python3").args(["-m", "venv"]).arg(venv.path()).status().expect("python3");
    assert!(status.success(), "python3 -m venv failed");
    let pip = Command::new(venv.path().join("bin/pip")).args(["install", "--quiet", "openai"]).output().unwrap();
    assert!(
        pip.status.success(),
        "needs PyPI: `pip install openai` failed (no network?):\n{}",
        String::from_utf8_lossy(&pip.stderr)
    );
    venv
}

/// Runs `script` with the venv's Python off the runtime's threads; its standard output.
async fn run_python(venv: &Path, script: &'static str, env: Vec<(&'static str, OsString)>) -> String {
    let python = venv.join("bin/python");
    let out: Output =
        tokio::task::spawn_blocking(move || Command::new(python).args(["-c", script]).envs(env).output().unwrap())
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PyPI and scripts/setup.sh"]
async fn openai_python_sdk_chats_with_a_collection() {
    let venv = tokio::task::spawn_blocking(venv).await.unwrap();
    let (server, key, col) = indexed_collection().await;
    let env = vec![
        ("BASE_URL", server.url("/v1").into()),
        ("API_KEY", key.into()),
        ("MODEL", SMOLLM2.into()),
        ("COLLECTION", col.into()),
    ];
    let stdout = run_python(venv.path(), SDK_SCRIPT, env).await;
    eprintln!("{stdout}");
    assert!(stdout.starts_with("OK "), "{stdout}");
    server.stop().await;
}

/// A model the organization fine-tuned answers too (the base model's weights with the job's
/// adapter); another organization cannot use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_fine_tuned_model_answers_for_its_organization_only() {
    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let (_, other) = server.org("other").await;
    let f = ok(server.upload(&key, "train.jsonl", common::chat_jsonl(10).into_bytes(), "fine-tune").await).await;
    let job = json!({"model": SMOLLM2, "training_file": f["id"], "suffix": "chat",
                     "hyperparameters": {"n_epochs": 1, "batch_size": 5, "max_steps": 1}});
    let job = ok(post(&server, &key, "/v1/fine_tuning/jobs", &job).await).await;
    let t = Instant::now();
    let done = common::wait_job(&server, &key, job["id"].as_str().unwrap(), 600, |j| {
        assert!(!["failed", "cancelled"].contains(&j["status"].as_str().unwrap()), "{j:#}");
        j["status"] == "succeeded"
    })
    .await;
    eprintln!("trained in {:.1} s", t.elapsed().as_secs_f64());
    let model = done["fine_tuned_model"].as_str().unwrap().to_string();
    let body = json!({"model": model, "messages": user("How long is record 3 kept?"), "max_tokens": 12});
    let a = ok(chat(&server, &key, &body).await).await;
    assert_eq!(a["model"], model.as_str());
    assert!(!content(&a).is_empty(), "{a:#}");
    let e = error_of(chat(&server, &other, &body).await, 400).await;
    assert_eq!(e["error"]["code"], "model_not_found");
    // The base model too: both stay loaded; a third would push out the least recently used.
    let base = json!({"model": SMOLLM2, "messages": user("Say hello."), "max_tokens": 4});
    ok(chat(&server, &key, &base).await).await;
    assert_eq!(server.state.chat_models().loaded_ids(), vec![model, SMOLLM2.to_string()]);
    server.stop().await;
}
