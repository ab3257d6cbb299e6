//! `/openapi.json`: an OpenAPI 3.1 document that lists every route the router answers, and
//! only those.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use serde_json::Value;

/// Every route of this slice. A route added to the router but not documented fails the
/// second half of the test; one documented but not routed fails the first.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("post", "/v1/files"),
    ("get", "/v1/files"),
    ("get", "/v1/files/{file_id}"),
    ("delete", "/v1/files/{file_id}"),
    ("get", "/v1/files/{file_id}/content"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route() {
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let doc: Value = server.http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc, serde_json::to_value(docraft_server::openapi()).unwrap());
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .filter(|(m, _)| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> =
        ROUTES.iter().map(|(m, p)| ((*m).to_string(), (*p).to_string())).collect();
    expected.sort();
    assert_eq!(documented, expected);
    // Each documented route is answered by a handler, not by the router's fallback.
    for (method, path) in &documented {
        let url = server.url(&path.replace("{file_id}", "file-000000000000000000000000"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = server.http.request(method.clone(), &url).bearer_auth(&key).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(!text.contains("no route"), "{method} {path}: {status} {text}");
        assert_ne!(status, 405, "{method} {path}");
    }
    // Routes that need a key say so; /health and /openapi.json do not.
    for (method, path) in &documented {
        let secured = paths[path][method].get("security").is_some();
        assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    server.stop().await;
}
