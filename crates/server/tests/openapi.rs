//! `/openapi.json`: an OpenAPI 3.1 document that lists every route the router answers, and
//! only those.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::Value;

/// Every route the router serves. The document must list exactly these: a route added to
/// the router belongs here, and the test fails until it is annotated too; an annotation
/// without an entry here fails as well. Each route of the document is then called on a real
/// server, so an annotation without a handler fails (the router's fallback answers
/// `unknown_url`, or 405 for a method the path lacks).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/openapi.json"),
    // Files.
    ("post", "/v1/files"),
    ("get", "/v1/files"),
    ("get", "/v1/files/{file_id}"),
    ("delete", "/v1/files/{file_id}"),
    ("get", "/v1/files/{file_id}/content"),
    // Fine-tuning jobs.
    ("post", "/v1/fine_tuning/jobs"),
    ("get", "/v1/fine_tuning/jobs"),
    ("get", "/v1/fine_tuning/jobs/{id}"),
    ("post", "/v1/fine_tuning/jobs/{id}/cancel"),
    ("post", "/v1/fine_tuning/jobs/{id}/pause"),
    ("post", "/v1/fine_tuning/jobs/{id}/resume"),
    ("get", "/v1/fine_tuning/jobs/{id}/events"),
    ("get", "/v1/fine_tuning/jobs/{id}/checkpoints"),
    // Models.
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("delete", "/v1/models/{model}"),
    // The hub.
    ("get", "/hub/models"),
    ("get", "/hub/models/{name}"),
    ("delete", "/hub/models/{name}"),
    ("get", "/hub/adapters"),
    ("get", "/hub/adapters/{name}"),
    ("delete", "/hub/adapters/{name}"),
    ("get", "/hub/adapters/{name}/download"),
    ("get", "/hub/files"),
    // Collections.
    ("post", "/v1/collections"),
    ("get", "/v1/collections"),
    ("get", "/v1/collections/{id}"),
    ("delete", "/v1/collections/{id}"),
    ("post", "/v1/collections/{id}/documents"),
    ("get", "/v1/collections/{id}/documents"),
    ("get", "/v1/collections/{id}/documents/{doc}"),
    ("delete", "/v1/collections/{id}/documents/{doc}"),
    ("get", "/v1/collections/{id}/documents/{doc}/content"),
    ("get", "/v1/collections/{id}/documents/{doc}/pages/{n}"),
    ("post", "/v1/collections/{id}/search"),
    ("post", "/v1/collections/{id}/sql"),
    ("get", "/v1/collections/{id}/events"),
    // Dataset jobs.
    ("post", "/v1/datasets/jobs"),
    ("get", "/v1/datasets/jobs"),
    ("get", "/v1/datasets/jobs/{id}"),
    ("post", "/v1/datasets/jobs/{id}/cancel"),
    ("post", "/v1/datasets/jobs/{id}/resume"),
    ("get", "/v1/datasets/jobs/{id}/events"),
    // Chat and conversations.
    ("post", "/v1/chat/completions"),
    ("post", "/v1/conversations"),
    ("get", "/v1/conversations"),
    ("get", "/v1/conversations/{id}"),
    ("delete", "/v1/conversations/{id}"),
    // The users' spec's job routes.
    ("post", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs/{name}"),
    ("delete", "/fine_tuning/jobs/{name}"),
    ("post", "/fine_tuning/jobs/{name}/pause"),
    ("post", "/fine_tuning/jobs/{name}/resume"),
];

/// Routes answered without an API key (every other one needs `Authorization: Bearer`).
const PUBLIC: &[&str] = &["/health", "/openapi.json"];

/// The methods probed on every path (HEAD and OPTIONS are axum's own).
const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// `path` with each `{param}` replaced by a well-formed id that names nothing.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e).unwrap_or_else(|| panic!("unclosed {{ in {path}"));
        out.push_str(&rest[..start]);
        out.push_str(match &rest[start + 1..end] {
            "file_id" => "file-000000000000000000000000",
            "id" => "ftjob-000000000000000000000000",
            "model" => "ft:smollm2-135m-instruct:acme:nothing:ftjob-000000000000000000000000",
            "name" => "no-such-name",
            "doc" => "doc-000000000000000000000000",
            "n" => "1",
            other => panic!("{path}: give the test a dummy value for {{{other}}}"),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the concrete `path` is one the template `route` matches.
fn matches(route: &str, path: &str) -> bool {
    let (r, p): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    r.len() == p.len() && r.iter().zip(&p).all(|(r, p)| r == p || (r.starts_with('{') && r.ends_with('}')))
}

/// Status, error `code` (a 4xx or 5xx must carry OpenAI's error object) and body text.
async fn call(server: &TestServer, method: &str, path: &str, key: Option<&str>) -> (u16, Option<String>, String) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = server.http.request(method, server.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let code = if status >= 400 {
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: a {status} whose body is not JSON ({e}): {text}"));
        assert!(body["error"]["message"].is_string(), "{path}: {status} {text}");
        body["error"]["code"].as_str().map(str::to_string)
    } else {
        None
    };
    (status, code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route() {
    let server = TestServer::start().await;
    let (_, key) = server.org("acme").await;
    let doc: Value = server.http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc, serde_json::to_value(docraft_server::openapi()).unwrap());
    let paths = doc["paths"].as_object().unwrap();

    // The document's routes are exactly the table's.
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            } else {
                assert_eq!(method, "parameters", "{path}: {method} is not probed by this test");
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> =
        ROUTES.iter().map(|(m, p)| ((*m).to_string(), (*p).to_string())).collect();
    expected.sort();
    let missing: Vec<_> = expected.iter().filter(|r| !documented.contains(r)).collect();
    let extra: Vec<_> = documented.iter().filter(|r| !expected.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without an OpenAPI annotation: {missing:?}; documented routes missing from ROUTES: {extra:?}"
    );
    assert_eq!(documented.len(), ROUTES.len(), "ROUTES lists a route twice");

    let tags: Vec<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for (method, path) in &documented {
        let op = &paths[path][method];
        // Each operation is described, tagged with a declared tag, and declares its path
        // parameters.
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
        let tag = op["tags"][0].as_str().unwrap_or_else(|| panic!("{method} {path}: no tag"));
        assert!(tags.contains(&tag), "{method} {path}: tag {tag} is not declared in {tags:?}");
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let in_path: Vec<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        // Routes that need a key say so; /health and /openapi.json do not.
        let secured = op.get("security").is_some();
        assert_eq!(secured, !PUBLIC.contains(&path.as_str()), "{method} {path}: security");
    }

    // Each documented route is answered by its handler, not by the router's fallback: with a
    // valid key and ids that name nothing, a success, a refusal of the (empty) body, or the
    // handler's own 404.
    for (method, path) in &documented {
        let url = concrete(path);
        let (status, code, text) = call(&server, method, &url, Some(&key)).await;
        let ok = match status {
            200..=299 | 400 | 422 => true,
            404 => code.as_deref() == Some("not_found"),
            _ => false,
        };
        assert!(ok, "{method} {path} ({url}): {status} {text}");
        assert!(!matches!(code.as_deref(), Some("unknown_url" | "method_not_allowed")), "{method} {path}: {text}");
        // Without a key: 401 where the document says a key is needed, an answer otherwise.
        let (status, code, text) = call(&server, method, &url, None).await;
        if PUBLIC.contains(&path.as_str()) {
            assert_eq!(status, 200, "{method} {path} without a key: {text}");
        } else {
            assert_eq!((status, code.as_deref()), (401, Some("invalid_api_key")), "{method} {path}: {text}");
        }
    }

    // A method the document does not list for a path is one the router does not take.
    for path in paths.keys() {
        for method in METHODS {
            if paths[path].get(*method).is_some() {
                continue;
            }
            let (status, code, text) = call(&server, method, &concrete(path), Some(&key)).await;
            assert_eq!(
                (status, code.as_deref()),
                (405, Some("method_not_allowed")),
                "{method} {path} answers but is not documented: {text}"
            );
        }
    }

    // Nor does the router answer paths next to the documented ones: their parents (`/v1`,
    // `/hub`, …) and one segment more.
    let mut near: Vec<String> = Vec::new();
    for path in paths.keys() {
        let segments: Vec<&str> = path.split('/').collect();
        for n in 2..segments.len() {
            let parent = segments[..n].join("/");
            if !paths.contains_key(&parent) {
                near.push(parent);
            }
        }
        near.push(format!("{path}/no-such-route"));
    }
    let mut near: Vec<String> = near.iter().map(|p| concrete(p)).collect();
    near.retain(|p| !paths.keys().any(|route| matches(route, p)));
    near.sort();
    near.dedup();
    assert!(["/v1", "/hub", "/fine_tuning"].iter().all(|p| near.iter().any(|n| n == p)), "{near:?}");
    for path in &near {
        for method in METHODS {
            let (status, code, text) = call(&server, method, path, Some(&key)).await;
            assert_eq!((status, code.as_deref()), (404, Some("unknown_url")), "{method} {path}: {text}");
        }
    }
    server.stop().await;
}
