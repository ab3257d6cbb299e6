//! Fine-tuning jobs over HTTP: isolation between organizations, bad input refused with nothing
//! stored, the control routes, pagination; with the real SmolLM2, pause/resume/cancel of a
//! training job, two jobs at once, and a graceful restart that continues a job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{TestServer, chat_jsonl, error_of, wait_job};
use serde_json::{Value, json};
use sqlx::Row;

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// A models directory with one (empty) registry GGUF: a base model named `tiny`, enough for
/// every route that does not train.
fn tiny_models() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tiny")).unwrap();
    std::fs::write(dir.path().join("tiny/tiny.gguf"), b"").unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

async fn api_only() -> (TestServer, tempfile::TempDir) {
    let (models, path) = tiny_models();
    let server = TestServer::start_with(|c| {
        c.workers = 0;
        c.models_dir = Some(path);
    })
    .await;
    (server, models)
}

async fn upload_train(server: &TestServer, key: &str, n: usize) -> String {
    let r = server.upload(key, "train.jsonl", chat_jsonl(n).into_bytes(), "fine-tune").await;
    json_of(r).await["id"].as_str().unwrap().to_string()
}

async fn create(server: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.url("/v1/fine_tuning/jobs")).bearer_auth(key).json(body).send().await.unwrap()
}

async fn job_rows(server: &TestServer) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM jobs").fetch_one(server.state.db().pool()).await.unwrap().get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_jobs_and_models_are_404_and_never_listed() {
    let (server, _models) = api_only().await;
    common::flows::another_organizations_jobs_and_models_are_404_and_never_listed(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_are_refused_with_nothing_stored() {
    let (server, _models) = api_only().await;
    let (_, key) = server.org("acme").await;
    let file = upload_train(&server, &key, 10).await;
    let other = server.upload(&key, "notes.jsonl", b"{\"x\": 1}\n".to_vec(), "assistants").await;
    let other = json_of(other).await["id"].as_str().unwrap().to_string();
    let post_raw = |body: &'static str| {
        server
            .http
            .post(server.url("/v1/fine_tuning/jobs"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(error_of(post_raw("not json").await.unwrap(), 400).await["error"]["code"], "invalid_json");
    assert_eq!(error_of(post_raw("").await.unwrap(), 400).await["error"]["code"], "invalid_json");
    assert_eq!(error_of(post_raw("[1, 2]").await.unwrap(), 400).await["error"]["code"], "invalid_json");
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"model": "tiny"}), 400, "training_file"),
        (json!({"model": "tiny", "training_file": file, "colour": "red"}), 400, "colour"),
        (json!({"model": "gpt-9", "training_file": file}), 400, "model"),
        (json!({"model": "tiny", "training_file": "file-../../etc/passwd"}), 400, "training_file"),
        (json!({"model": "tiny", "training_file": other}), 400, "training_file"),
        (
            json!({"model": "tiny", "training_file": file, "validation_file": "file-000000000000000000000000"}),
            400,
            "validation_file",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"lora_rank": 1000}}),
            422,
            "hyperparameters.lora_rank",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"n_epochs": 0}}),
            422,
            "hyperparameters.n_epochs",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"learning_rate_multiplier": 1e6}}),
            422,
            "hyperparameters.learning_rate_multiplier",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"lora_dropout": 0.9}}),
            422,
            "hyperparameters.lora_dropout",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"quantization_bits": 4}}),
            422,
            "hyperparameters.quantization_bits",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"lora_rnak": 8}}),
            400,
            "hyperparameters.lora_rnak",
        ),
        (
            json!({"model": "tiny", "training_file": file, "hyperparameters": {"batch_size": "big"}}),
            400,
            "hyperparameters.batch_size",
        ),
        (json!({"model": "tiny", "training_file": file, "method": {"type": "dpo"}}), 400, "method.type"),
        (json!({"model": "tiny", "training_file": file, "suffix": "../../x"}), 400, "suffix"),
        (json!({"model": "tiny", "training_file": file, "seed": -1}), 422, "seed"),
        (json!({"model": "tiny", "training_file": file, "metadata": {"k": 1}}), 400, "metadata"),
    ];
    for (body, status, param) in &cases {
        let e = error_of(create(&server, &key, body).await, *status).await;
        assert_eq!(e["error"]["param"], *param, "{body}: {e}");
    }
    // A body over the JSON limit.
    let big =
        format!("{{\"model\": \"tiny\", \"training_file\": \"{file}\", \"suffix\": \"{}\"}}", "x".repeat(2 << 20));
    let r = server.http.post(server.url("/v1/fine_tuning/jobs")).bearer_auth(&key).body(big).send().await.unwrap();
    error_of(r, 413).await;
    assert_eq!(job_rows(&server).await, 0, "a refused request stored a job");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_routes_pagination_and_metadata_without_a_worker() {
    let (server, _models) = api_only().await;
    common::flows::control_routes_pagination_and_metadata_without_a_worker(&server).await;
    server.stop().await;
}

async fn metric_steps(server: &TestServer, id: &str) -> Vec<i64> {
    sqlx::query("SELECT step FROM job_events WHERE job_id = $1 AND kind = 'metrics' ORDER BY step")
        .bind(id)
        .fetch_all(server.state.db().pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>("step"))
        .collect()
}

fn step_of(job: &Value) -> i64 {
    job["docraft"]["step"].as_i64().unwrap_or(0)
}

/// Pause checkpoints then stops, resume continues from there, cancel stops within a step;
/// meanwhile a second job trains on the other worker and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn pause_resume_cancel_while_another_job_trains() {
    let server = common::fast_server(2).await;
    let (_, key) = server.org("acme").await;
    let file = upload_train(&server, &key, 10).await;
    let long = json!({"model": common::SMOLLM2, "training_file": file, "suffix": "long",
                      "hyperparameters": {"n_epochs": 10, "batch_size": 1, "max_steps": 60, "checkpoint_every": 50,
                                          "max_seq_len": 64}});
    let short = json!({"model": common::SMOLLM2, "training_file": file, "suffix": "short",
                       "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
    let a = json_of(create(&server, &key, &long).await).await["id"].as_str().unwrap().to_string();
    let b = json_of(create(&server, &key, &short).await).await["id"].as_str().unwrap().to_string();
    // Both train at once.
    let ja = wait_job(&server, &key, &a, 300, |j| step_of(j) >= 2).await;
    let jb = wait_job(&server, &key, &b, 300, |j| j["status"] != "validating_files").await;
    assert_eq!(ja["status"], "running");
    assert!(jb["status"] == "running" || jb["status"] == "succeeded", "{jb}");

    let post = |path: String| server.http.post(server.url(&path)).bearer_auth(&key).send();
    json_of(post(format!("/v1/fine_tuning/jobs/{a}/pause")).await.unwrap()).await;
    let paused = wait_job(&server, &key, &a, 120, |j| j["status"] == "paused").await;
    let at = step_of(&paused);
    let cks = json_of(
        server
            .http
            .get(server.url(&format!("/v1/fine_tuning/jobs/{a}/checkpoints")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cks["data"][0]["step_number"], at, "pause writes a checkpoint at the step reached: {cks}");
    assert_eq!(metric_steps(&server, &a).await, (1..=at).collect::<Vec<_>>());

    assert_eq!(json_of(post(format!("/v1/fine_tuning/jobs/{a}/resume")).await.unwrap()).await["status"], "queued");
    wait_job(&server, &key, &a, 300, |j| step_of(j) >= at + 2).await;
    json_of(post(format!("/v1/fine_tuning/jobs/{a}/cancel")).await.unwrap()).await;
    let cancelled = wait_job(&server, &key, &a, 60, |j| j["status"] == "cancelled").await;
    let end = step_of(&cancelled);
    assert!(end < 60, "cancel did not stop the run: {cancelled}");
    assert_eq!(metric_steps(&server, &a).await, (1..=end).collect::<Vec<_>>(), "steps missing or repeated");
    assert!(cancelled["fine_tuned_model"].is_null());

    let done = wait_job(&server, &key, &b, 600, |j| j["status"] == "succeeded" || j["status"] == "failed").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(metric_steps(&server, &b).await, [1, 2]);
    assert!(done["docraft"]["cpu_seconds"].as_i64().unwrap() >= 1, "{done}");
    assert_eq!(done["docraft"]["epoch_seconds"].as_array().unwrap().len(), 1, "{done}");
    server.stop().await;
}

/// A server stopped gracefully mid-training checkpoints the job and hands it back; the next
/// server continues it from there to the end, with every step's metrics once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn graceful_restart_continues_a_job_from_its_checkpoint() {
    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let file = upload_train(&server, &key, 10).await;
    let body = json!({"model": common::SMOLLM2, "training_file": file,
                      "hyperparameters": {"n_epochs": 2, "batch_size": 1, "max_steps": 12, "max_seq_len": 64}});
    let id = json_of(create(&server, &key, &body).await).await["id"].as_str().unwrap().to_string();
    wait_job(&server, &key, &id, 300, |j| step_of(j) >= 3).await;
    let data = server.data();
    let dir = server.stop_keep().await;
    // Handed back: queued, no lease, a checkpoint at the step reached.
    let state = docraft_server::AppState::open(docraft_server::ServerConfig::with_data_dir(&data)).await.unwrap();
    let row = sqlx::query("SELECT status, lease_owner FROM jobs WHERE id = $1")
        .bind(&id)
        .fetch_one(state.db().pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "queued");
    assert!(row.get::<Option<String>, _>("lease_owner").is_none());
    state.db().close().await;

    let server = TestServer::restart(dir, |c| {
        c.heartbeat = std::time::Duration::from_millis(200);
        c.poll = std::time::Duration::from_millis(200);
        c.train_threads = Some(1);
    })
    .await;
    let done = wait_job(&server, &key, &id, 600, |j| j["status"] == "succeeded" || j["status"] == "failed").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(metric_steps(&server, &id).await, (1..=12).collect::<Vec<_>>());
    let events = json_of(
        server
            .http
            .get(server.url(&format!("/v1/fine_tuning/jobs/{id}/events?limit=1000")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = events.to_string();
    assert!(
        text.contains("The server stopped at step") && text.contains("Resuming from the checkpoint at step"),
        "{text}"
    );
    server.stop().await;
}

/// A validation file of RAFT records gets an open-book QA evaluation of base and adapter,
/// listed with the model in the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn raft_validation_records_get_an_open_book_qa_evaluation() {
    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let raft: String = (0..10)
        .map(|i| {
            json!({"messages": [
                {"role": "system", "content": "Answer from the documents, quoting them."},
                {"role": "user", "content": format!("<DOCUMENT>Valve {i} is tightened to {} Nm.</DOCUMENT>\nHow tight is valve {i}?", 10 + i)},
                {"role": "assistant", "content": format!("##Reason: ##begin_quote##Valve {i} is tightened to {} Nm.##end_quote## <ANSWER>: {} Nm", 10 + i, 10 + i)}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let train = json_of(server.upload(&key, "train.jsonl", raft.clone().into_bytes(), "fine-tune").await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let valid = json_of(server.upload(&key, "valid.jsonl", raft.into_bytes(), "fine-tune").await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"model": common::SMOLLM2, "training_file": train, "validation_file": valid, "suffix": "valves",
                      "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
    let id = json_of(create(&server, &key, &body).await).await["id"].as_str().unwrap().to_string();
    let done = wait_job(&server, &key, &id, 900, |j| j["status"] == "succeeded" || j["status"] == "failed").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let model =
        json_of(server.http.get(server.url("/hub/models/valves")).bearer_auth(&key).send().await.unwrap()).await;
    let qa = &model["evaluation"]["open_book_qa"];
    assert_eq!(qa["base"]["questions"], 10, "{model:#}");
    assert_eq!(qa["adapter"]["questions"], 10, "{model:#}");
    for side in ["base", "adapter"] {
        let f1 = qa[side]["f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f1), "{model:#}");
    }
    assert!(model["evaluation"]["base"]["loss"].as_f64().unwrap() > 0.0);
    let events = json_of(
        server
            .http
            .get(server.url(&format!("/v1/fine_tuning/jobs/{id}/events?limit=100")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(events.to_string().contains("open-book QA on 10 RAFT records"), "{events}");
    server.stop().await;
}
