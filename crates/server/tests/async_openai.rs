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
