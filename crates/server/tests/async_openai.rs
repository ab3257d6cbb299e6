//! The Rust OpenAI SDK (async-openai), unmodified, against a local server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::files::{CreateFileRequest, FileInput, FilePurpose, OpenAIFilePurpose};
use common::{TestServer, chat_jsonl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_files_round_trip() {
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let client = Client::with_config(OpenAIConfig::new().with_api_base(server.url("/v1")).with_api_key(key.clone()));
    let body = chat_jsonl(10);
    let request = CreateFileRequest {
        file: FileInput::from_vec_u8("train.jsonl".into(), body.clone().into_bytes()),
        purpose: FilePurpose::FineTune,
        expires_after: None,
    };
    let file = client.files().create(request).await.unwrap();
    assert!(file.id.starts_with("file-"));
    assert_eq!(file.filename, "train.jsonl");
    assert_eq!(file.purpose, OpenAIFilePurpose::FineTune);
    assert_eq!(file.bytes, Some(u32::try_from(body.len()).unwrap()));
    let list = client.files().list().await.unwrap();
    assert_eq!(list.data.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [file.id.as_str()]);
    assert!(!list.has_more);
    let got = client.files().retrieve(&file.id).await.unwrap();
    assert_eq!(got.id, file.id);
    let content = client.files().content(&file.id).await.unwrap();
    assert_eq!(content.as_ref(), body.as_bytes());
    let deleted = client.files().delete(&file.id).await.unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.id, file.id);
    // The SDK surfaces the server's OpenAI-shaped error.
    let err = client.files().retrieve(&file.id).await.unwrap_err();
    assert!(err.to_string().contains("no file"), "{err}");
    server.stop().await;
}

/// The fine-tuning flow of OpenAI's docs, with the SDK's own types: upload, create, poll to
/// `succeeded`, events, checkpoints, the model in `/v1/models`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn async_openai_fine_tunes_smollm2() {
    use async_openai::traits::RequestOptionsBuilder;
    use async_openai::types::finetuning::{
        BatchSize, CreateFineTuningJobRequestArgs, FineTuneMethod, FineTuneSupervisedHyperparameters,
        FineTuneSupervisedMethod, FineTuningJobEventType, FineTuningJobStatus, NEpochs,
    };

    let server = common::fast_server(1).await;
    let (_, key) = server.org("acme").await;
    let client = Client::with_config(OpenAIConfig::new().with_api_base(server.url("/v1")).with_api_key(key.clone()));
    let upload = |name: &str, n: usize| CreateFileRequest {
        file: FileInput::from_vec_u8(name.into(), chat_jsonl(n).into_bytes()),
        purpose: FilePurpose::FineTune,
        expires_after: None,
    };
    let train = client.files().create(upload("train.jsonl", 10)).await.unwrap();
    let valid = client.files().create(upload("valid.jsonl", 10)).await.unwrap();
    let request = CreateFineTuningJobRequestArgs::default()
        .model(common::SMOLLM2)
        .training_file(train.id.clone())
        .validation_file(valid.id.clone())
        .suffix("policy")
        .seed(7u32)
        .method(FineTuneMethod::Supervised {
            supervised: FineTuneSupervisedMethod {
                hyperparameters: FineTuneSupervisedHyperparameters {
                    n_epochs: NEpochs::NEpochs(1),
                    batch_size: BatchSize::BatchSize(5),
                    ..Default::default()
                },
            },
        })
        .build()
        .unwrap();
    let job = client.fine_tuning().create(request).await.unwrap();
    assert!(job.id.starts_with("ftjob-"), "{}", job.id);
    assert_eq!(job.status, FineTuningJobStatus::ValidatingFiles);
    assert_eq!(job.seed, Some(7));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let job = loop {
        let j = client.fine_tuning().retrieve(&job.id).await.unwrap();
        match j.status {
            FineTuningJobStatus::Succeeded => break j,
            FineTuningJobStatus::Failed | FineTuningJobStatus::Cancelled => panic!("job ended: {j:?}"),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "job still {:?}", j.status);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let model = job.fine_tuned_model.clone().unwrap();
    assert!(model.starts_with("ft:smollm2-135m-instruct:acme:policy:"), "{model}");
    assert_eq!(job.result_files.len(), 2);
    assert!(job.trained_tokens.unwrap() > 0);
    assert!(job.finished_at.is_some());

    let events = client.fine_tuning().query(&[("limit", "100")]).unwrap().list_events(&job.id).await.unwrap();
    let mut steps: Vec<u64> = events
        .data
        .iter()
        .filter(|e| e.r#type == Some(FineTuningJobEventType::Metrics))
        .map(|e| e.data.as_ref().unwrap()["step"].as_u64().unwrap())
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2], "two steps of 5 examples: {events:#?}");
    assert!(events.data.iter().any(|e| e.message == "The job has successfully completed"));
    assert!(events.data.iter().any(|e| e.message.starts_with("Evaluation on the validation file")));
    // Newest first.
    assert!(events.data.windows(2).all(|w| w[0].created_at >= w[1].created_at));

    let checkpoints = client.fine_tuning().list_checkpoints(&job.id).await.unwrap();
    assert_eq!(checkpoints.data.len(), 1, "{checkpoints:#?}");
    let c = &checkpoints.data[0];
    assert_eq!((c.step_number, c.metrics.step), (2, 2));
    assert!(c.metrics.train_loss > 0.0 && c.metrics.full_valid_loss > 0.0, "{c:?}");
    assert_eq!(c.fine_tuned_model_checkpoint, format!("{model}:ckpt-step-2"));

    let models = client.models().list().await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&model.as_str()) && ids.contains(&common::SMOLLM2), "{ids:?}");
    assert_eq!(client.models().retrieve(&model).await.unwrap().owned_by, "acme");

    let csv = client.files().content(&job.result_files[0]).await.unwrap();
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    assert!(csv.starts_with("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // The adapter, as one zip archive.
    let zip = server.http.get(server.url("/hub/adapters/policy/download")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK"));
    let names = String::from_utf8_lossy(&bytes);
    assert!(names.contains("adapter_config.json") && names.contains("adapter_model.safetensors"));

    let deleted = client.models().delete(&model).await.unwrap();
    assert!(deleted.deleted);
    let err = client.models().delete(common::SMOLLM2).await.unwrap_err();
    assert!(err.to_string().contains("base model"), "{err}");
    server.stop().await;
}
