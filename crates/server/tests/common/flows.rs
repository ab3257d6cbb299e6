//! Test flows that run on both database backends: each takes a started server (SQLite from the
//! test file of its subject, PostgreSQL from tests/postgres.rs) and leaves it running.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use docraft_server::admin;
use serde_json::{Value, json};

use super::{TestServer, chat_jsonl, error_of, ok};

async fn upload_train(server: &TestServer, key: &str, n: usize) -> String {
    let r = server.upload(key, "train.jsonl", chat_jsonl(n).into_bytes(), "fine-tune").await;
    ok(r).await["id"].as_str().unwrap().to_string()
}

async fn create_job(server: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.url("/v1/fine_tuning/jobs")).bearer_auth(key).json(body).send().await.unwrap()
}

/// No key, a wrong one, one not `Bearer`, a revoked one: 401 (uploads before the body is read).
pub async fn missing_wrong_and_revoked_keys_get_401(server: &TestServer) {
    let (_, key) = server.org("acme").await;
    let files = server.url("/v1/files");
    let ok = server.http.get(&files).bearer_auth(&key).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let none = server.http.get(&files).send().await.unwrap();
    let body = error_of(none, 401).await;
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let wrong = server.http.get(&files).bearer_auth("dck_00000000000000000000000000000000").send().await.unwrap();
    error_of(wrong, 401).await;
    let not_bearer = server.http.get(&files).header("Authorization", format!("Basic {key}")).send().await.unwrap();
    error_of(not_bearer, 401).await;
    // Revoked by its listed prefix: the same key that worked now fails, the listing says when.
    let prefix = key[..12].to_string();
    let revoked = admin::revoke_key(server.state.db(), "acme", &prefix).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let after = server.http.get(&files).bearer_auth(&key).send().await.unwrap();
    error_of(after, 401).await;
    // Upload routes check the key before reading the body.
    let up = server.upload(&key, "x.jsonl", chat_jsonl(10).into_bytes(), "fine-tune").await;
    error_of(up, 401).await;
    assert_eq!(server.file_rows().await, 0);
    // No key needed for these two.
    assert_eq!(server.http.get(server.url("/health")).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(server.http.get(server.url("/openapi.json")).send().await.unwrap().status().as_u16(), 200);
    // Unknown keys of another organization or unknown organizations.
    let e = admin::revoke_key(server.state.db(), "nobody", &prefix).await.unwrap_err();
    assert_eq!(e.status().as_u16(), 404);
}

/// A file uploaded, retrieved, read, listed and deleted (row and bytes).
pub async fn upload_list_retrieve_content_delete(server: &TestServer) {
    let (org, key) = server.org("files").await;
    let body = chat_jsonl(12);
    let file = ok(server.upload(&key, "train.jsonl", body.clone().into_bytes(), "fine-tune").await).await;
    let id = file["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("file-") && id.len() == 29, "{id}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], body.len());
    assert_eq!(file["filename"], "train.jsonl");
    assert_eq!(file["purpose"], "fine-tune");
    assert_eq!(file["status"], "processed");
    assert!(file["expires_at"].is_null());
    // Stored under DATA/orgs/<org-id>/files/<file-id>, and nothing else is left there.
    let path = server.data().join("orgs").join(&org.id).join("files").join(&id);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), body);
    assert_eq!(server.stored_files(), vec![path.clone()]);

    let got = ok(server.http.get(server.url(&format!("/v1/files/{id}"))).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(got, file);
    let content =
        server.http.get(server.url(&format!("/v1/files/{id}/content"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(content.status().as_u16(), 200);
    assert_eq!(content.text().await.unwrap(), body);
    let list = ok(server.http.get(server.url("/v1/files")).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!((list["first_id"].as_str(), list["last_id"].as_str()), (Some(id.as_str()), Some(id.as_str())));
    assert_eq!(list["has_more"], false);

    let del =
        ok(server.http.delete(server.url(&format!("/v1/files/{id}"))).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(del, json!({"id": id, "object": "file", "deleted": true}));
    assert!(!path.exists());
    assert_eq!(server.file_rows().await, 0);
    let again = server.http.get(server.url(&format!("/v1/files/{id}"))).bearer_auth(&key).send().await.unwrap();
    error_of(again, 404).await;
}

/// Another organization's job and fine-tuned model: 404 on every route, 401 without a key,
/// never listed. The server has no workers and the base model `tiny` ([`super::tiny_models`]).
pub async fn another_organizations_jobs_and_models_are_404_and_never_listed(server: &TestServer) {
    let (org_a, a) = server.org("a").await;
    let (_, b) = server.org("b").await;
    let file = upload_train(server, &a, 10).await;
    let job =
        ok(create_job(server, &a, &json!({"model": "tiny", "training_file": file, "suffix": "policy"})).await).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["status"], "validating_files");
    assert_eq!(job["organization_id"], org_a.id.as_str());
    // A fine-tuned model of A, as a finished job leaves it.
    let model = docraft_server::models::ModelEntry {
        id: "ft:tiny:a:policy:x".into(),
        organization_id: Some(org_a.id.clone()),
        name: "policy".into(),
        kind: docraft_server::models::ModelKind::FineTuned,
        path: PathBuf::from("jobs/x/run/adapter"),
        base_model: Some("tiny".into()),
        job_id: Some(id.to_string()),
        training_file: Some(file.clone()),
        parameters: None,
        created_at: 1,
    };
    docraft_server::models::insert(server.state.db(), &model).await.unwrap();

    let routes: Vec<(&str, String)> = vec![
        ("GET", format!("/v1/fine_tuning/jobs/{id}")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/cancel")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/pause")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/resume")),
        ("GET", format!("/v1/fine_tuning/jobs/{id}/events")),
        ("GET", format!("/v1/fine_tuning/jobs/{id}/events?stream=true")),
        ("GET", format!("/v1/fine_tuning/jobs/{id}/checkpoints")),
        ("GET", format!("/fine_tuning/jobs/{id}")),
        ("GET", "/fine_tuning/jobs/policy".into()),
        ("DELETE", format!("/fine_tuning/jobs/{id}")),
        ("POST", format!("/fine_tuning/jobs/{id}/pause")),
        ("POST", format!("/fine_tuning/jobs/{id}/resume")),
        ("GET", format!("/v1/models/{}", model.id)),
        ("DELETE", format!("/v1/models/{}", model.id)),
        ("GET", "/hub/models/policy".into()),
        ("DELETE", "/hub/models/policy".into()),
        ("GET", "/hub/adapters/policy".into()),
        ("DELETE", "/hub/adapters/policy".into()),
        ("GET", "/hub/adapters/policy/download".into()),
    ];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = server.http.request(m.clone(), server.url(path)).bearer_auth(&b).send().await.unwrap();
        let body = error_of(r, 404).await;
        assert_eq!(body["error"]["code"], "not_found", "{method} {path}: {body}");
        // No key, and a wrong one: 401 before anything else.
        let r = server.http.request(m.clone(), server.url(path)).send().await.unwrap();
        error_of(r, 401).await;
        let r = server.http.request(m, server.url(path)).bearer_auth("dck_nope").send().await.unwrap();
        error_of(r, 401).await;
    }
    // Lists never show A's objects to B.
    for path in ["/v1/fine_tuning/jobs", "/fine_tuning/jobs", "/v1/models", "/hub/models", "/hub/adapters"] {
        let text = server.http.get(server.url(path)).bearer_auth(&b).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(id) && !text.contains(&model.id), "{path} shows A's objects to B: {text}");
    }
    let listed = ok(server.http.get(server.url("/v1/models")).bearer_auth(&b).send().await.unwrap()).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "B sees the base model only: {listed}");
    // B cannot train on A's file.
    let r = create_job(server, &b, &json!({"model": "tiny", "training_file": file})).await;
    assert_eq!(error_of(r, 400).await["error"]["param"], "training_file");
    // A sees everything, and the job is still there, untouched.
    let mine = ok(server.http.get(server.url("/hub/adapters")).bearer_auth(&a).send().await.unwrap()).await;
    assert_eq!(mine["data"][0]["name"], "policy");
    assert_eq!(mine["data"][0]["dataset"], file.as_str());
    let again =
        ok(server.http.get(server.url(&format!("/fine_tuning/jobs/{id}"))).bearer_auth(&a).send().await.unwrap()).await;
    assert_eq!(again["status"], "validating_files");
    // A base model is shared: not A's to delete.
    let r = server.http.delete(server.url("/v1/models/tiny")).bearer_auth(&a).send().await.unwrap();
    error_of(r, 403).await;
}

/// Pause, resume and cancel of a job no worker holds; jobs paged and filtered by metadata;
/// events paged and streamed. The server has no workers and the base model `tiny`.
pub async fn control_routes_pagination_and_metadata_without_a_worker(server: &TestServer) {
    let (_, key) = server.org("acme").await;
    let file = upload_train(server, &key, 10).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"model": "tiny", "training_file": file, "metadata": {"n": i.to_string()},
                          "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "lora_rank": 8}});
        let job = ok(create_job(server, &key, &body).await).await;
        assert_eq!(job["hyperparameters"]["n_epochs"], 2);
        assert_eq!(job["hyperparameters"]["batch_size"], "auto");
        assert_eq!(job["method"]["supervised"]["hyperparameters"]["lora_rank"], 8);
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let get = |path: String| server.http.get(server.url(&path)).bearer_auth(&key).send();
    let page = ok(get("/v1/fine_tuning/jobs?limit=2".into()).await.unwrap()).await;
    let first: Vec<&str> = page["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(page["has_more"], true);
    assert_eq!(first.len(), 2);
    let page2 = ok(get(format!("/v1/fine_tuning/jobs?limit=2&after={}", first[1])).await.unwrap()).await;
    let second: Vec<&str> = page2["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(page2["has_more"], false);
    let mut all: Vec<&str> = first.iter().chain(&second).copied().collect();
    all.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(all, want, "pages overlap or miss a job");
    let only = ok(get("/v1/fine_tuning/jobs?metadata[n]=1".into()).await.unwrap()).await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    assert_eq!(only["data"][0]["id"], ids[1].as_str());

    let post = |path: String| server.http.post(server.url(&path)).bearer_auth(&key).send();
    let id = &ids[0];
    assert_eq!(ok(post(format!("/v1/fine_tuning/jobs/{id}/pause")).await.unwrap()).await["status"], "paused");
    error_of(post(format!("/v1/fine_tuning/jobs/{id}/pause")).await.unwrap(), 409).await;
    assert_eq!(ok(post(format!("/v1/fine_tuning/jobs/{id}/resume")).await.unwrap()).await["status"], "queued");
    error_of(post(format!("/v1/fine_tuning/jobs/{id}/resume")).await.unwrap(), 409).await;
    let r = server.http.delete(server.url(&format!("/fine_tuning/jobs/{id}"))).bearer_auth(&key).send().await.unwrap();
    let cancelled = ok(r).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_i64());
    error_of(post(format!("/v1/fine_tuning/jobs/{id}/cancel")).await.unwrap(), 409).await;
    // Events, newest first, paged with `after`.
    let events = ok(get(format!("/v1/fine_tuning/jobs/{id}/events?limit=100")).await.unwrap()).await;
    let messages: Vec<&str> =
        events["data"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages.first(), Some(&"Fine-tuning job cancelled"), "{messages:?}");
    assert!(messages.last().unwrap().starts_with("Created fine-tuning job"), "{messages:?}");
    let newest = events["data"][0]["id"].as_str().unwrap();
    let older = ok(get(format!("/v1/fine_tuning/jobs/{id}/events?after={newest}&limit=1")).await.unwrap()).await;
    assert_eq!(older["data"][0]["id"], events["data"][1]["id"]);
    assert_eq!(older["has_more"], true);
    // The stream of an ended job replays its events and ends.
    let text = get(format!("/v1/fine_tuning/jobs/{id}/events?stream=true")).await.unwrap().text().await.unwrap();
    assert!(text.contains("Created fine-tuning job") && text.trim_end().ends_with("data: [DONE]"), "{text}");
    let checkpoints = ok(get(format!("/v1/fine_tuning/jobs/{id}/checkpoints")).await.unwrap()).await;
    assert_eq!(checkpoints["data"], json!([]));
}

/// Dataset requests refused before anything runs; remote endpoints only once allowed; another
/// organization's jobs 404; cancel and resume of a queued job. The server runs no workers.
pub async fn dataset_requests_are_checked_before_anything_runs(server: &TestServer) {
    let start =
        |key: &str, body: &Value| server.http.post(server.url("/v1/datasets/jobs")).bearer_auth(key).json(body).send();
    let (_, a) = server.org("a").await;
    let (_, b) = server.org("b").await;
    let r = server.http.post(server.url("/v1/collections")).bearer_auth(&a).json(&json!({"name": "docs"})).send();
    let col = ok(r.await.unwrap()).await["id"].as_str().unwrap().to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"collection": col, "kind": "poem", "generator": "x"}), 400, "kind"),
        (json!({"collection": col, "kind": "qa", "generator": "no-such-model"}), 400, "generator"),
        (json!({"collection": col, "kind": "qa", "generator": {"model": "m"}}), 400, "generator.base_url"),
        (
            json!({"collection": col, "kind": "qa", "generator": {"base_url": "file:///etc", "model": "m"}}),
            400,
            "generator.base_url",
        ),
        (
            json!({"collection": col, "kind": "qa", "generator": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}, "questions_per_chunk": 50}),
            422,
            "questions_per_chunk",
        ),
        (
            json!({"collection": col, "kind": "raft", "generator": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}, "formats": ["pdf"]}),
            400,
            "formats",
        ),
        (
            json!({"collection": col, "kind": "qa", "generator": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}, "split": "lots"}),
            400,
            "split",
        ),
        (json!({"collection": col, "kind": "qa", "generator": "x", "colour": 1}), 400, "colour"),
    ];
    for (body, status, param) in &cases {
        let e = error_of(start(&a, body).await.unwrap(), *status).await;
        assert_eq!(e["error"]["param"], *param, "{body}: {e}");
    }
    // An endpoint off this machine: refused until an administrator allows it.
    let remote =
        json!({"collection": col, "kind": "qa", "generator": {"base_url": "https://api.example.com/v1", "model": "m"}});
    let e = error_of(start(&a, &remote).await.unwrap(), 403).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("allow-remote"), "{e}");
    admin::set_allow_remote(server.state.db(), "a", true).await.unwrap();
    let job = ok(start(&a, &remote).await.unwrap()).await;
    assert_eq!(job["status"], "queued");
    // ... and never without redaction.
    let mut no_redact = remote.clone();
    no_redact["redact"] = json!(false);
    error_of(start(&a, &no_redact).await.unwrap(), 400).await;
    // Another organization's collection and jobs: 404.
    error_of(start(&b, &remote).await.unwrap(), 404).await;
    let id = job["id"].as_str().unwrap();
    for path in [format!("/v1/datasets/jobs/{id}"), format!("/v1/datasets/jobs/{id}/events")] {
        error_of(server.http.get(server.url(&path)).bearer_auth(&b).send().await.unwrap(), 404).await;
    }
    let post = |key: &str, path: String| server.http.post(server.url(&path)).bearer_auth(key).send();
    error_of(post(&b, format!("/v1/datasets/jobs/{id}/cancel")).await.unwrap(), 404).await;
    let theirs = ok(server.http.get(server.url("/v1/datasets/jobs")).bearer_auth(&b).send().await.unwrap()).await;
    assert_eq!(theirs["data"], json!([]));
    // Cancel a queued job at once; resume queues it again.
    let c = ok(post(&a, format!("/v1/datasets/jobs/{id}/cancel")).await.unwrap()).await;
    assert_eq!(c["status"], "cancelled");
    let r = ok(post(&a, format!("/v1/datasets/jobs/{id}/resume")).await.unwrap()).await;
    assert_eq!(r["status"], "queued");
}
