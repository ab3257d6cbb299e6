//! `/v1/files`: upload, list, retrieve, content, delete; the isolation matrix between
//! organizations; bad input refused with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestServer, chat_jsonl, error_of};
use serde_json::Value;

async fn json(r: reqwest::Response) -> Value {
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_retrieve_content_delete() {
    let server = TestServer::start().await;
    common::flows::upload_list_retrieve_content_delete(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_order_and_purpose() {
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i == 4 { "fine-tune" } else { "batch" };
        let bytes = if i == 4 { chat_jsonl(10).into_bytes() } else { format!("batch {i}\n").into_bytes() };
        let f = json(server.upload(&key, &format!("f{i}"), bytes, purpose).await).await;
        ids.push(f["id"].as_str().unwrap().to_string());
    }
    let list = |q: String| {
        let server = &server;
        let key = &key;
        async move {
            json(server.http.get(server.url(&format!("/v1/files{q}"))).bearer_auth(key).send().await.unwrap()).await
        }
    };
    let ids_of = |v: &Value| {
        v["data"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let all_desc = ids_of(&list(String::new()).await);
    let all_asc = ids_of(&list("?order=asc".into()).await);
    assert_eq!(all_desc.len(), 5);
    assert_eq!(all_desc.iter().rev().cloned().collect::<Vec<_>>(), all_asc);
    let mut sorted = ids.clone();
    sorted.sort();
    let mut seen = all_asc.clone();
    seen.sort();
    assert_eq!(seen, sorted);
    // Pages of 2 walk the same order without gaps or repeats.
    let mut walked = Vec::new();
    let mut after = String::new();
    loop {
        let page = list(format!("?limit=2&order=asc{after}")).await;
        walked.extend(ids_of(&page));
        if page["has_more"] == false {
            break;
        }
        after = format!("&after={}", page["last_id"].as_str().unwrap());
    }
    assert_eq!(walked, all_asc);
    let batch = list("?purpose=batch".into()).await;
    assert_eq!(ids_of(&batch).len(), 4);
    assert!(batch["data"].as_array().unwrap().iter().all(|f| f["purpose"] == "batch"));
    for bad in ["?limit=0", "?limit=10001", "?order=sideways"] {
        let r = server.http.get(server.url(&format!("/v1/files{bad}"))).bearer_auth(&key).send().await.unwrap();
        error_of(r, 422).await;
    }
    let r = server.http.get(server.url("/v1/files?limit=abc")).bearer_auth(&key).send().await.unwrap();
    error_of(r, 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_files_are_404_and_never_listed() {
    let server = TestServer::start().await;
    let (_, key_a) = server.org("a").await;
    let (_, key_b) = server.org("b").await;
    let a = json(server.upload(&key_a, "a.jsonl", chat_jsonl(10).into_bytes(), "fine-tune").await).await;
    let id = a["id"].as_str().unwrap();
    let b_own = json(server.upload(&key_b, "b.jsonl", chat_jsonl(11).into_bytes(), "fine-tune").await).await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/files/{id}")),
        (reqwest::Method::GET, format!("/v1/files/{id}/content")),
        (reqwest::Method::DELETE, format!("/v1/files/{id}")),
    ] {
        let r = server.http.request(method.clone(), server.url(&path)).bearer_auth(&key_b).send().await.unwrap();
        let body = error_of(r, 404).await;
        assert!(!body.to_string().contains("forbidden"), "{method} {path}: {body}");
    }
    for q in ["", "?order=asc", "?purpose=fine-tune"] {
        let list =
            json(server.http.get(server.url(&format!("/v1/files{q}"))).bearer_auth(&key_b).send().await.unwrap()).await;
        let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [b_own["id"].as_str().unwrap()], "{q}");
    }
    // A's id as B's cursor is refused like any unknown id.
    let r = server.http.get(server.url(&format!("/v1/files?after={id}"))).bearer_auth(&key_b).send().await.unwrap();
    error_of(r, 400).await;
    // A's file survived B's delete, and A still sees it.
    let got =
        json(server.http.get(server.url(&format!("/v1/files/{id}"))).bearer_auth(&key_a).send().await.unwrap()).await;
    assert_eq!(got, a);
    assert_eq!(server.file_rows().await, 2);
    server.stop().await;
}

/// Each refused upload: the status, a part of the message, and nothing stored (no row, no
/// file, no temporary file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_nothing_stored() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 512 * 1024).await;
    let (_, key) = server.org("acme").await;
    let mut wrong_schema = chat_jsonl(12);
    wrong_schema = wrong_schema
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 6 {
                r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}"#.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut not_json = chat_jsonl(12);
    not_json.push_str("{\"messages\": [\n");
    let mut long_line = chat_jsonl(3);
    long_line.push_str(&format!("{{\"text\": \"{}\", \"label\": \"x\"}}\n", "a".repeat(2 << 20)));
    let long_line_body = long_line;
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("not JSON", not_json.into_bytes(), "fine-tune", 400, "line 13: not JSON"),
        ("wrong schema", wrong_schema.into_bytes(), "fine-tune", 400, "line 7: message 2"),
        ("plain text", b"just some words\nand more\n".to_vec(), "fine-tune", 400, "line 1:"),
        ("too few", chat_jsonl(3).into_bytes(), "fine-tune", 400, "too_few_examples"),
        ("empty", Vec::new(), "fine-tune", 400, "empty"),
        ("blank", b"  \n\n".to_vec(), "fine-tune", 400, "empty"),
        ("empty batch", Vec::new(), "batch", 400, "empty"),
        ("unknown purpose", chat_jsonl(10).into_bytes(), "pretraining", 400, "unknown purpose"),
        ("bad CSV", b"prompt,completion\na,b\nc\n".to_vec(), "fine-tune", 400, "line 3:"),
        ("bad array", b"[{\"prompt\": \"a\", \"completion\": \"b\"},".to_vec(), "fine-tune", 400, "not a JSON array"),
    ];
    for (name, bytes, purpose, status, needle) in cases {
        let r = server.upload(&key, &format!("{name}.jsonl"), bytes, purpose).await;
        let body = error_of(r, status).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
        assert_eq!(server.file_rows().await, 0, "{name}");
        assert!(server.stored_files().is_empty(), "{name}: {:?}", server.stored_files());
    }
    // A line over the limit (1 MiB by default) is refused by number, over the 512 KiB body
    // limit it is refused as too large: both store nothing.
    let r = server.upload(&key, "long.jsonl", long_line_body.into_bytes(), "fine-tune").await;
    let body = error_of(r, 413).await;
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(server.file_rows().await, 0);
    assert!(server.stored_files().is_empty());
    server.stop().await;

    let server = TestServer::start_with(|c| c.max_line_bytes = 1000).await;
    let (_, key) = server.org("acme").await;
    let mut long_line = chat_jsonl(11);
    long_line.push_str(&format!("{{\"text\": \"{}\", \"label\": \"x\"}}\n", "a".repeat(2000)));
    let body = error_of(server.upload(&key, "long.jsonl", long_line.into_bytes(), "fine-tune").await, 400).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("line 12: longer than the limit"), "{body}");
    assert_eq!(server.file_rows().await, 0);
    assert!(server.stored_files().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_streamed_or_declared() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 100_000).await;
    let (_, key) = server.org("acme").await;
    // Declared: Content-Length over the limit, refused before the body is read.
    let r = server.upload(&key, "big.bin", vec![b'x'; 300_000], "batch").await;
    let body = error_of(r, 413).await;
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    // Streamed: no Content-Length, the count while streaming stops it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..30).map(|_| Ok(vec![b'y'; 10_000])).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part("file", reqwest::multipart::Part::stream(stream).file_name("big.bin"));
    let r = server.http.post(server.url("/v1/files")).bearer_auth(&key).multipart(form).send().await.unwrap();
    let body = error_of(r, 413).await;
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(server.file_rows().await, 0);
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
    // Just under the limit is fine.
    let ok = server.upload(&key, "ok.bin", vec![b'z'; 99_000], "batch").await;
    assert_eq!(ok.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrays_and_csv_are_converted_to_jsonl_and_path_names_refused() {
    let server = TestServer::start().await;
    let (org, key) = server.org("acme").await;
    let records: Vec<Value> = (0..10)
        .map(|i| serde_json::json!({"prompt": format!("Question {i}?"), "completion": format!("Answer {i}.")}))
        .collect();
    let array = serde_json::to_string_pretty(&records).unwrap();
    let f = json(server.upload(&key, "data.json", array.into_bytes(), "fine-tune").await).await;
    assert_eq!(f["filename"], "data.json");
    let content = server
        .http
        .get(server.url(&format!("/v1/files/{}/content", f["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let back: Vec<Value> = content.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, records);
    assert_eq!(f["bytes"], content.len());

    let mut csv = String::from("text,label\n");
    for i in 0..10 {
        csv.push_str(&format!("\"Invoice {i}, paid\",\"label {i}\"\n"));
    }
    // A name that is a path is refused, with nothing stored.
    let e =
        common::error_of(server.upload(&key, "../../../escape.csv", csv.clone().into_bytes(), "fine-tune").await, 400)
            .await;
    assert_eq!(e["error"]["code"], "invalid_filename", "{e}");
    assert_eq!(server.stored_files().len(), 1);
    let f = json(server.upload(&key, "escape.csv", csv.into_bytes(), "fine-tune").await).await;
    assert_eq!(f["filename"], "escape.csv");
    let id = f["id"].as_str().unwrap();
    let content =
        server.http.get(server.url(&format!("/v1/files/{id}/content"))).bearer_auth(&key).send().await.unwrap();
    let lines: Vec<Value> = content.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[3], serde_json::json!({"text": "Invoice 3, paid", "label": "label 3"}));
    // Nothing was written outside the organization's folder.
    let all = common::walk(server.dir.path());
    let files_dir = server.data().join("orgs").join(&org.id).join("files");
    for p in &all {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(p.starts_with(&files_dir) || name.starts_with("docraft.db"), "unexpected file {}", p.display());
    }
    assert_eq!(server.stored_files().len(), 2);
    server.stop().await;
}
