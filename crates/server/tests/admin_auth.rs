//! Organizations and keys: hashes only in the database, 401 for a missing, wrong or revoked
//! key, errors in OpenAI's shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestServer, error_of};
use docraft_server::admin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_as_hashes_only() {
    let server = TestServer::start().await;
    let (org, key) = server.org("acme").await;
    assert!(key.starts_with("dck_") && key.len() == 36, "{key}");
    let (second, key2) = admin::create_key(server.state.db(), "acme", "ci").await.unwrap();
    assert_ne!(key, key2.expose());
    assert_eq!(second.organization_id, org.id);
    let keys = admin::list_keys(server.state.db(), "acme").await.unwrap();
    let mut names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ci", "default"]);
    assert!(keys.iter().all(|k| key.starts_with(&k.prefix) || key2.expose().starts_with(&k.prefix)));
    // The database files (main + write-ahead log) hold the hashes, never the keys.
    let mut db_bytes = Vec::new();
    for f in common::walk(&server.data()) {
        if f.file_name().unwrap().to_string_lossy().starts_with("docraft.db") {
            db_bytes.extend(std::fs::read(&f).unwrap());
        }
    }
    let contains = |needle: &str| db_bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&admin::hash_key(&key)), "the hash should be in the database");
    assert!(!contains(&key) && !contains(key2.expose()), "a plain key is in the database");
    // Names are unique.
    let dup = admin::create_org(server.state.db(), "acme").await.unwrap_err();
    assert_eq!(dup.status().as_u16(), 409, "{dup}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_revoked_keys_get_401() {
    let server = TestServer::start().await;
    common::flows::missing_wrong_and_revoked_keys_get_401(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_database_and_disk() {
    let server = TestServer::start().await;
    let h: serde_json::Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "ok");
    assert!(h["disk_free_bytes"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (h["workers"].as_u64(), h["jobs_running"].as_i64(), h["jobs_queued"].as_i64()),
        (Some(1), Some(0), Some(0))
    );
    // Unknown routes and methods answer in OpenAI's shape too.
    let (_, key) = server.org("acme").await;
    let unknown = server.http.get(server.url("/v1/nothing")).bearer_auth(&key).send().await.unwrap();
    error_of(unknown, 404).await;
    let method = server.http.put(server.url("/v1/files")).bearer_auth(&key).send().await.unwrap();
    error_of(method, 405).await;
    server.stop().await;
}
