//! Document collections over HTTP: isolation, hostile uploads, deduplication by content; with
//! the registry's embedder, ingest and indexing in the background, search with filters,
//! page previews and deletion that takes chunks out of search at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{TestServer, error_of};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name)).unwrap()
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn collection(server: &TestServer, key: &str, name: &str) -> String {
    let r = server.http.post(server.url("/v1/collections")).bearer_auth(key).json(&json!({"name": name})).send().await;
    ok(r.unwrap()).await["id"].as_str().unwrap().to_string()
}

fn form(files: &[(&str, Vec<u8>)], metadata: Option<Value>) -> reqwest::multipart::Form {
    let mut f = reqwest::multipart::Form::new();
    if let Some(m) = metadata {
        f = f.text("metadata", m.to_string());
    }
    for (name, bytes) in files {
        f = f.part("file", reqwest::multipart::Part::bytes(bytes.clone()).file_name((*name).to_string()));
    }
    f
}

async fn upload(
    server: &TestServer,
    key: &str,
    col: &str,
    files: &[(&str, Vec<u8>)],
    meta: Option<Value>,
) -> reqwest::Response {
    server
        .http
        .post(server.url(&format!("/v1/collections/{col}/documents")))
        .bearer_auth(key)
        .multipart(form(files, meta))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_are_isolated_and_hostile_uploads_refused() {
    let server = TestServer::start_with(|c| {
        c.document_workers = 0;
        c.max_document_bytes = 64 * 1024;
        c.max_org_document_bytes = 100 * 1024;
    })
    .await;
    let (_, a) = server.org("a").await;
    let (_, b) = server.org("b").await;
    let col = collection(&server, &a, "policies").await;
    let r = server
        .http
        .post(server.url("/v1/collections"))
        .bearer_auth(&a)
        .json(&json!({"name": "policies"}))
        .send()
        .await
        .unwrap();
    error_of(r, 409).await;

    let md = fixture("docs/guia-es.md");
    let docs = ok(upload(
        &server,
        &a,
        &col,
        &[("guia-es.md", md.clone()), ("bundle.zip", b"PK\x03\x04 zipped".to_vec()), ("blob.txt", vec![0u8, 1, 2, 3])],
        Some(json!({"team": "legal"})),
    )
    .await)
    .await;
    let data = docs["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!((data[0]["status"].as_str(), data[0]["media_type"].as_str()), (Some("queued"), Some("text/markdown")));
    assert_eq!(data[0]["metadata"]["team"], "legal");
    assert_eq!(data[1]["status"], "failed");
    assert!(data[1]["error"].as_str().unwrap().contains("archive"), "{}", data[1]);
    assert_eq!(data[2]["status"], "failed");
    assert!(data[2]["error"].as_str().unwrap().contains("binary"), "{}", data[2]);
    // The same bytes again: the same document, nothing new.
    let again = ok(upload(&server, &a, &col, &[("copy.md", md.clone())], None).await).await;
    assert_eq!(again["data"][0]["id"], data[0]["id"]);
    let listed = ok(server
        .http
        .get(server.url(&format!("/v1/collections/{col}/documents")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let c =
        ok(server.http.get(server.url(&format!("/v1/collections/{col}"))).bearer_auth(&a).send().await.unwrap()).await;
    assert_eq!(c["documents"], json!({"failed": 2, "queued": 1}));

    // Over the per-file limit: 413, nothing stored.
    let big = vec![b'a'; 65 * 1024];
    error_of(upload(&server, &a, &col, &[("big.txt", big)], None).await, 413).await;
    // Over the organization's quota: 429 with a clear message.
    let mut fill = Vec::new();
    for i in 0..2 {
        fill.push((format!("fill{i}.txt"), format!("{i}{}", "x".repeat(60 * 1024)).into_bytes()));
    }
    let files: Vec<(&str, Vec<u8>)> = fill.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let e = error_of(upload(&server, &a, &col, &files, None).await, 429).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("quota"), "{e}");
    // A name that is a path, metadata that is not an object.
    error_of(upload(&server, &a, &col, &[("../x.md", b"# x".to_vec())], None).await, 400).await;
    error_of(upload(&server, &a, &col, &[("x.md", b"# x".to_vec())], Some(json!(["no"]))).await, 400).await;

    let doc = data[0]["id"].as_str().unwrap();
    let content = server
        .http
        .get(server.url(&format!("/v1/collections/{col}/documents/{doc}/content")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(content.bytes().await.unwrap().as_ref(), md.as_slice());

    // Organization B sees none of it.
    let routes = [
        ("GET", format!("/v1/collections/{col}")),
        ("DELETE", format!("/v1/collections/{col}")),
        ("GET", format!("/v1/collections/{col}/documents")),
        ("GET", format!("/v1/collections/{col}/documents/{doc}")),
        ("DELETE", format!("/v1/collections/{col}/documents/{doc}")),
        ("GET", format!("/v1/collections/{col}/documents/{doc}/content")),
        ("GET", format!("/v1/collections/{col}/documents/{doc}/pages/1")),
        ("POST", format!("/v1/collections/{col}/search")),
    ];
    for (method, path) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = server
            .http
            .request(m.clone(), server.url(path))
            .bearer_auth(&b)
            .json(&json!({"query": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r, 404).await["error"]["code"], "not_found", "{method} {path}");
        error_of(server.http.request(m, server.url(path)).send().await.unwrap(), 401).await;
    }
    let up = upload(&server, &b, &col, &[("x.md", b"# x".to_vec())], None).await;
    error_of(up, 404).await;
    let theirs = ok(server.http.get(server.url("/v1/collections")).bearer_auth(&b).send().await.unwrap()).await;
    assert_eq!(theirs["data"], json!([]));

    let gone =
        ok(server.http.delete(server.url(&format!("/v1/collections/{col}"))).bearer_auth(&a).send().await.unwrap())
            .await;
    assert_eq!(gone["deleted"], true);
    let r =
        server.http.get(server.url(&format!("/v1/collections/{col}/documents"))).bearer_auth(&a).send().await.unwrap();
    error_of(r, 404).await;
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
    server.stop().await;
}

async fn wait_indexed(server: &TestServer, key: &str, col: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let listed = ok(server
            .http
            .get(server.url(&format!("/v1/collections/{col}/documents")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap())
        .await;
        let docs = listed["data"].as_array().unwrap().clone();
        let done = docs.iter().filter(|d| d["status"] == "indexed" || d["status"] == "failed").count();
        if done == n {
            return docs;
        }
        assert!(std::time::Instant::now() < deadline, "not indexed: {listed:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn search(server: &TestServer, key: &str, col: &str, body: Value) -> Vec<Value> {
    let r = server
        .http
        .post(server.url(&format!("/v1/collections/{col}/search")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    ok(r).await["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn documents_are_indexed_searched_previewed_and_deleted() {
    let server = common::fast_server(0).await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "manuals").await;
    ok(upload(
        &server,
        &key,
        &col,
        &[("handbook-en.pdf", fixture("docs/handbook-en.pdf"))],
        Some(json!({"team": "ops"})),
    )
    .await)
    .await;
    ok(upload(
        &server,
        &key,
        &col,
        &[("politica-es.pdf", fixture("docs/politica-es.pdf")), ("truncated.pdf", fixture("bad/truncated.pdf"))],
        Some(json!({"team": "legal"})),
    )
    .await)
    .await;
    let docs = wait_indexed(&server, &key, &col, 3).await;
    let by_name = |n: &str| docs.iter().find(|d| d["filename"] == n).unwrap().clone();
    let handbook = by_name("handbook-en.pdf");
    assert_eq!(handbook["status"], "indexed", "{handbook}");
    assert_eq!(handbook["pages"], 4);
    assert!(handbook["chunks"].as_i64().unwrap() > 0);
    let bad = by_name("truncated.pdf");
    assert_eq!(bad["status"], "failed");
    assert!(!bad["error"].as_str().unwrap().is_empty());
    // Progress events: each document queued, ingesting, then indexed or failed, in order.
    let events = ok(server
        .http
        .get(server.url(&format!("/v1/collections/{col}/events?limit=100")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap())
    .await;
    let of = |doc: &Value| -> Vec<String> {
        let mut v: Vec<String> = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["document_id"] == doc["id"])
            .map(|e| e["data"]["status"].as_str().unwrap().to_string())
            .collect();
        v.reverse();
        v
    };
    assert_eq!(of(&handbook), ["queued", "ingesting", "indexed"], "{events:#}");
    assert_eq!(of(&bad), ["queued", "ingesting", "failed"], "{events:#}");
    let first = events["data"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let later = ok(server
        .http
        .get(server.url(&format!("/v1/collections/{col}/events?after={first}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(later["data"].as_array().unwrap().len() + 1, events["data"].as_array().unwrap().len());

    let hits =
        search(&server, &key, &col, json!({"query": "What torque should the flange bolts be tightened to?", "k": 3}))
            .await;
    assert_eq!(hits[0]["filename"], "handbook-en.pdf", "{hits:#?}");
    let pages = hits[0]["pages"].as_array().unwrap();
    assert!(pages[0].as_u64().unwrap() <= 2 && 2 <= pages[1].as_u64().unwrap(), "{hits:#?}");
    // Filters: only the legal team's documents.
    let legal =
        search(&server, &key, &col, json!({"query": "flange bolts torque", "k": 5, "filter": {"team": "legal"}})).await;
    assert!(!legal.is_empty() && legal.iter().all(|h| h["filename"] == "politica-es.pdf"), "{legal:#?}");
    // Each retrieval mode (hybrid is the default); keyword search is BM25 over the chunks, with
    // the filter applied too.
    for mode in ["vector", "keyword", "hybrid"] {
        let q = json!({"query": "flange bolts torque", "k": 3, "retrieval": mode});
        let hits = search(&server, &key, &col, q).await;
        assert_eq!(hits[0]["filename"], "handbook-en.pdf", "{mode}: {hits:#?}");
    }
    let q = json!({"query": "flange bolts torque", "k": 5, "retrieval": "keyword", "filter": {"team": "legal"}});
    assert!(search(&server, &key, &col, q).await.is_empty(), "no legal document mentions flange bolts");
    let r = server
        .http
        .post(server.url(&format!("/v1/collections/{col}/search")))
        .bearer_auth(&key)
        .json(&json!({"query": "x", "retrieval": "fuzzy"}))
        .send()
        .await
        .unwrap();
    let e = error_of(r, 400).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("fuzzy") && e["error"]["param"] == "retrieval", "{e}");

    // The cited page's text, with the chunk's span inside it.
    let doc = handbook["id"].as_str().unwrap();
    let page = ok(server
        .http
        .get(server.url(&format!("/v1/collections/{col}/documents/{doc}/pages/2")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(page["pages"], 4);
    let text = page["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("torque"), "{text}");
    let c = &page["chunks"][0];
    assert!(c["end"].as_u64().unwrap() as usize <= text.len() && c["start"].as_u64() < c["end"].as_u64());
    let r = server
        .http
        .get(server.url(&format!("/v1/collections/{col}/documents/{doc}/pages/9")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    error_of(r, 404).await;

    // Deleting the document takes its chunks out of search at once.
    ok(server
        .http
        .delete(server.url(&format!("/v1/collections/{col}/documents/{doc}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap())
    .await;
    let hits =
        search(&server, &key, &col, json!({"query": "What torque should the flange bolts be tightened to?", "k": 10}))
            .await;
    assert!(hits.iter().all(|h| h["filename"] != "handbook-en.pdf"), "{hits:#?}");
    // The keyword index follows: the deleted document's words are gone from it too.
    let q = json!({"query": "flange bolts torque", "k": 10, "retrieval": "keyword"});
    let hits = search(&server, &key, &col, q).await;
    assert!(hits.iter().all(|h| h["filename"] != "handbook-en.pdf"), "{hits:#?}");

    // A restarted server reads the saved index.
    let dir = server.stop_keep().await;
    let server = TestServer::restart(dir, |c| c.workers = 0).await;
    let hits = search(
        &server,
        &key,
        &col,
        json!({"query": "¿Dónde se guardan los documentos en papel confidenciales?", "k": 3}),
    )
    .await;
    assert_eq!(hits[0]["filename"], "politica-es.pdf", "{hits:#?}");
    server.stop().await;
}

/// A document that takes too long to read is given up and marked failed; the next one goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_document_over_the_time_limit_fails_and_the_rest_go_on() {
    let server = TestServer::start_with(|c| {
        c.workers = 0;
        c.poll = std::time::Duration::from_millis(200);
        c.document_timeout = std::time::Duration::from_millis(300);
        c.max_document_bytes = 60 << 20;
    })
    .await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "c").await;
    // 50 MB on one line: more than 300 ms to chunk.
    let line = "palabra ".repeat(50 << 17).into_bytes();
    ok(upload(&server, &key, &col, &[("one-line.txt", line)], None).await).await;
    ok(upload(&server, &key, &col, &[("guia-es.md", fixture("docs/guia-es.md"))], None).await).await;
    let docs = wait_indexed(&server, &key, &col, 2).await;
    let slow = docs.iter().find(|d| d["filename"] == "one-line.txt").unwrap();
    assert_eq!(slow["status"], "failed", "{slow}");
    assert!(slow["error"].as_str().unwrap().contains("longer than"), "{slow}");
    let ok_doc = docs.iter().find(|d| d["filename"] == "guia-es.md").unwrap();
    assert_eq!(ok_doc["status"], "indexed", "{ok_doc}");
    // The API answered all along.
    let h: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok");
    server.stop().await;
}

fn tickets_db(dir: &std::path::Path) -> String {
    let path = dir.join("tickets.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    std::thread::spawn(move || {
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            for q in [
                "CREATE TABLE tickets (id INTEGER PRIMARY KEY, title TEXT, body TEXT, team TEXT)",
                "INSERT INTO tickets VALUES (1, 'Printer', 'The printer on floor 2 jams every Monday morning.', 'it')",
                "INSERT INTO tickets VALUES (2, 'Vacaciones', 'Las vacaciones se piden con un mes de antelación al responsable.', 'rrhh')",
                "INSERT INTO tickets VALUES (3, 'Badge', 'Lost badges are replaced at reception on the ground floor.', 'it')",
            ] {
                sqlx::query(q).execute(&pool).await.unwrap();
            }
            pool.close().await;
        });
    })
    .join()
    .unwrap();
    format!("sqlite://{}", path.display())
}

async fn add_sql(server: &TestServer, key: &str, col: &str, sql: Value) -> reqwest::Response {
    let url = server.url(&format!("/v1/collections/{col}/sql"));
    server.http.post(url).bearer_auth(key).json(&json!({"sql": sql})).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_rows_become_documents_from_allowed_sources_only() {
    let sql_dir = tempfile::tempdir().unwrap();
    let url = tickets_db(sql_dir.path());
    let outside = tempfile::tempdir().unwrap();
    let outside_url = tickets_db(outside.path());
    let dir = sql_dir.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.document_workers = 0;
        c.sql_dir = Some(dir);
    })
    .await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "tickets").await;
    let spec = json!({"url": url, "query": "SELECT id, title, body, team FROM tickets ORDER BY id", "id_column": "id",
                      "text_columns": ["title", "body"], "metadata_columns": ["team"]});
    let docs = ok(add_sql(&server, &key, &col, spec.clone()).await).await;
    let data = docs["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["metadata"]["team"], "rrhh");
    assert_eq!(data[1]["metadata"]["row_id"], "2");
    assert_eq!(data[1]["filename"], "row-2.txt");
    assert_eq!(data[1]["status"], "queued");
    // Unchanged rows cost nothing the second time.
    let again = ok(add_sql(&server, &key, &col, spec.clone()).await).await;
    assert_eq!(again["data"][1]["id"], data[1]["id"]);
    // A database outside the server's SQL directory, another file, a write: refused.
    let mut other = spec.clone();
    other["url"] = json!(outside_url);
    error_of(add_sql(&server, &key, &col, other).await, 403).await;
    let mut etc = spec.clone();
    etc["url"] = json!(format!("sqlite://{}/../../../etc/passwd", sql_dir.path().display()));
    assert!([400, 403].contains(&add_sql(&server, &key, &col, etc).await.status().as_u16()));
    let mut write = spec.clone();
    write["query"] = json!("DELETE FROM tickets");
    error_of(add_sql(&server, &key, &col, write).await, 400).await;
    let mut remote = spec.clone();
    remote["url"] = json!("postgres://u:p@db.example.com/x");
    let e = error_of(add_sql(&server, &key, &col, remote).await, 403).await;
    assert!(!e.to_string().contains(":p@"), "the password leaked: {e}");
    let mut missing = spec;
    missing["text_columns"] = json!(["nope"]);
    error_of(add_sql(&server, &key, &col, missing).await, 400).await;
    server.stop().await;

    // Without --sql-dir, SQLite sources are off.
    let server = TestServer::start_with(|c| c.document_workers = 0).await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "tickets").await;
    let e =
        error_of(add_sql(&server, &key, &col, json!({"url": url, "query": "SELECT * FROM tickets"})).await, 403).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("--sql-dir"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn database_rows_are_searched_and_filtered_by_their_columns() {
    let sql_dir = tempfile::tempdir().unwrap();
    let url = tickets_db(sql_dir.path());
    let dir = sql_dir.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.workers = 0;
        c.poll = std::time::Duration::from_millis(200);
        c.sql_dir = Some(dir);
    })
    .await;
    let (_, key) = server.org("acme").await;
    let col = collection(&server, &key, "tickets").await;
    let spec = json!({"url": url, "query": "SELECT id, title, body, team FROM tickets", "id_column": "id",
                      "text_columns": ["title", "body"], "metadata_columns": ["team"]});
    ok(add_sql(&server, &key, &col, spec).await).await;
    wait_indexed(&server, &key, &col, 3).await;
    let hits = search(&server, &key, &col, json!({"query": "¿Cómo se piden las vacaciones?", "k": 1})).await;
    assert_eq!(hits[0]["filename"], "row-2.txt", "{hits:#?}");
    let it = search(&server, &key, &col, json!({"query": "vacaciones", "k": 5, "filter": {"team": "it"}})).await;
    assert!(!it.is_empty() && it.iter().all(|h| h["metadata"]["team"] == "it"), "{it:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_collection_keeps_the_embedder_it_was_built_with() {
    // Built by a server configured with all-MiniLM-L6-v2 (as servers were before USE-m3 became
    // the default)...
    let minilm = docraft_index::minilm_model_dir();
    let server = TestServer::start_with(|c| {
        common::fast(c, 0);
        c.embedder = Some(minilm);
    })
    .await;
    let (org, key) = server.org("acme").await;
    let old = collection(&server, &key, "before").await;
    ok(upload(&server, &key, &old, &[("handbook-en.pdf", fixture("docs/handbook-en.pdf"))], None).await).await;
    assert_eq!(wait_indexed(&server, &key, &old, 1).await[0]["status"], "indexed");
    let dir = server.stop_keep().await;
    // ... then served with the default (USE-m3): the old collection is still searched with its
    // own model, and a new document joins it with that model too.
    let server = TestServer::restart(dir, |c| common::fast(c, 0)).await;
    let q = json!({"query": "What torque should the flange bolts be tightened to?", "k": 3});
    let hits = search(&server, &key, &old, q.clone()).await;
    assert!(!hits.is_empty() && hits.iter().all(|h| h["filename"] == "handbook-en.pdf"), "{hits:#?}");
    ok(upload(&server, &key, &old, &[("politica-es.pdf", fixture("docs/politica-es.pdf"))], None).await).await;
    let docs = wait_indexed(&server, &key, &old, 2).await;
    assert!(docs.iter().all(|d| d["status"] == "indexed"), "{docs:#?}");
    let q_es = json!({"query": "Clasificación de la información: niveles de confidencialidad", "k": 10});
    let hits = search(&server, &key, &old, q_es.clone()).await;
    assert!(hits.iter().any(|h| h["filename"] == "politica-es.pdf"), "{hits:#?}");
    // A new collection is built with the default model; both answer side by side.
    let new = collection(&server, &key, "after").await;
    ok(upload(&server, &key, &new, &[("politica-es.pdf", fixture("docs/politica-es.pdf"))], None).await).await;
    assert_eq!(wait_indexed(&server, &key, &new, 1).await[0]["status"], "indexed");
    let hits = search(&server, &key, &new, q_es).await;
    assert!(hits.iter().any(|h| h["filename"] == "politica-es.pdf"), "{hits:#?}");
    // Each collection's index records its own model.
    let model_of = |col: &str| {
        let dir = server.state.org_dir(&org.id).join("collections").join(col).join("index");
        docraft_index::VectorIndex::load(&dir).unwrap().model_id().to_string()
    };
    assert!(model_of(&old).starts_with("onnx:all-minilm-l6-v2"), "{}", model_of(&old));
    assert!(model_of(&new).starts_with("use-m3:"), "{}", model_of(&new));
    server.stop().await;
}
