//! The server on a real PostgreSQL 18 (with pgvector), started from the binaries scripts/setup.sh
//! unpacks (tests/common/pg.rs): the flows the SQLite tests run (keys, files, the isolation and
//! control routes of jobs, dataset requests), a fine-tuning job on SmolLM2 to `succeeded`, and a
//! collection indexed, searched and chatted with. Every test takes a fresh database.
//! `cargo test -p docraft-server --test postgres -- --include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::pg::PgServer;
use common::{SMOLLM2, TestServer, error_of, flows, ok, wait_job};
use serde_json::{Value, json};
use sqlx::Row;

#[test]
#[ignore = "needs scripts/setup.sh"]
fn the_harness_gives_a_fresh_database_with_pgvector() {
    let pg = PgServer::start();
    let (one, two) = (pg.url_for_new_db(), pg.url_for_new_db());
    assert_ne!(one, two);
    assert!(one.starts_with(&format!("postgres://postgres@127.0.0.1:{}/t_", pg.port())), "{one}");
    let db = one.rsplit('/').next().unwrap();
    assert_eq!(pg.psql(db, "SELECT extname FROM pg_extension WHERE extname = 'vector'"), "vector");
    let d: f64 = pg.psql(db, "SELECT '[1,0,0]'::vector <=> '[0,1,0]'").parse().unwrap();
    assert!((d - 1.0).abs() < 1e-9, "{d}");
    assert_eq!(pg.psql("postgres", "SHOW server_version_num")[..2], *"18");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn keys_on_postgres() {
    let server = TestServer::start_pg(|_| {}).await;
    assert_eq!(server.state.db().backend(), docraft_server::db::Backend::Postgres);
    flows::missing_wrong_and_revoked_keys_get_401(&server).await;
    // Names are unique (a unique violation, as on SQLite).
    let dup = docraft_server::admin::create_org(server.state.db(), "acme").await.unwrap_err();
    assert_eq!(dup.status().as_u16(), 409, "{dup}");
    let keys = docraft_server::admin::list_keys(server.state.db(), "acme").await.unwrap();
    assert_eq!(keys.len(), 1);
    let h: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!((h["status"].as_str(), h["database"].as_str()), (Some("ok"), Some("ok")), "{h}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn files_on_postgres() {
    let server = TestServer::start_pg(|_| {}).await;
    flows::upload_list_retrieve_content_delete(&server).await;
    // Pages in both orders.
    let (_, key) = server.org("pages").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let f =
            ok(server.upload(&key, &format!("{i}.jsonl"), common::chat_jsonl(10 + i).into_bytes(), "fine-tune").await)
                .await;
        ids.push(f["id"].as_str().unwrap().to_string());
    }
    let list = |q: String| server.http.get(server.url(&format!("/v1/files{q}"))).bearer_auth(&key).send();
    let page = ok(list("?limit=2&order=asc".into()).await.unwrap()).await;
    let got: Vec<&str> = page["data"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!((got.len(), page["has_more"].as_bool()), (2, Some(true)), "{page}");
    let rest = ok(list(format!("?limit=2&order=asc&after={}", got[1])).await.unwrap()).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    server.stop().await;
}

async fn api_only_pg() -> (TestServer, tempfile::TempDir) {
    let (models, path) = common::tiny_models();
    let server = TestServer::start_pg(|c| {
        c.workers = 0;
        c.models_dir = Some(path);
    })
    .await;
    (server, models)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn jobs_and_models_of_another_organization_on_postgres() {
    let (server, _models) = api_only_pg().await;
    flows::another_organizations_jobs_and_models_are_404_and_never_listed(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn job_control_routes_on_postgres() {
    let (server, _models) = api_only_pg().await;
    flows::control_routes_pagination_and_metadata_without_a_worker(&server).await;
    // The per-organization limit of active jobs counts on PostgreSQL too.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn dataset_requests_on_postgres() {
    let server = TestServer::start_pg(|c| {
        c.workers = 0;
        c.document_workers = 0;
        c.dataset_workers = 0;
    })
    .await;
    flows::dataset_requests_are_checked_before_anything_runs(&server).await;
    server.stop().await;
}

/// SmolLM2 on 10 chat examples, one epoch of batches of 5: `succeeded` with its events,
/// metrics, checkpoints, result files and model, all stored in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_fine_tuning_job_succeeds_on_postgres() {
    let server = TestServer::start_pg(|c| common::fast(c, 1)).await;
    let (_, key) = server.org("acme").await;
    let file = ok(server.upload(&key, "train.jsonl", common::chat_jsonl(10).into_bytes(), "fine-tune").await).await;
    let body = json!({"model": SMOLLM2, "training_file": file["id"], "suffix": "pg",
                      "hyperparameters": {"n_epochs": 1, "batch_size": 5}});
    let r = server.http.post(server.url("/v1/fine_tuning/jobs")).bearer_auth(&key).json(&body).send().await.unwrap();
    let id = ok(r).await["id"].as_str().unwrap().to_string();
    let done = wait_job(&server, &key, &id, 600, |j| j["status"] == "succeeded" || j["status"] == "failed").await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(done["fine_tuned_model"].as_str().unwrap().starts_with("ft:"), "{done}");
    assert_eq!(done["result_files"].as_array().unwrap().len(), 2, "{done}");
    assert!(done["trained_tokens"].as_i64().unwrap() > 0, "{done}");

    let get = |path: String| server.http.get(server.url(&path)).bearer_auth(&key).send();
    let events = ok(get(format!("/v1/fine_tuning/jobs/{id}/events?limit=1000")).await.unwrap()).await;
    let data = events["data"].as_array().unwrap();
    let mut steps: Vec<i64> =
        data.iter().filter(|e| e["type"] == "metrics").map(|e| e["data"]["step"].as_i64().unwrap()).collect();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2], "{events:#}");
    let messages: Vec<&str> = data.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages.first(), Some(&"The job has successfully completed"), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("Fine-tuning job started")), "{messages:?}");
    let cks = ok(get(format!("/v1/fine_tuning/jobs/{id}/checkpoints")).await.unwrap()).await;
    let ck: Vec<i64> = cks["data"].as_array().unwrap().iter().map(|c| c["step_number"].as_i64().unwrap()).collect();
    assert_eq!(ck.first(), Some(&2), "the last step is checkpointed: {cks}");
    // The model is in the hub, and the metrics file lists both steps.
    let models = ok(get("/v1/models".into()).await.unwrap()).await;
    assert!(models.to_string().contains(done["fine_tuned_model"].as_str().unwrap()), "{models}");
    let csv_id = done["result_files"][0].as_str().unwrap();
    let csv = get(format!("/v1/files/{csv_id}/content")).await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The worker's lease is gone and its attempts counted.
    let row = sqlx::query("SELECT lease_owner, attempts, cpu_seconds FROM jobs WHERE id = $1")
        .bind(&id)
        .fetch_one(server.state.db().pool())
        .await
        .unwrap();
    assert!(row.get::<Option<String>, _>("lease_owner").is_none());
    assert_eq!(row.get::<i64, _>("attempts"), 1);
    server.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name)).unwrap()
}

/// The pgvector table of a collection, from the catalog, and its rows; `None` without a
/// catalog row.
async fn vector_rows(server: &TestServer, org: &str, col: &str) -> Option<(String, i64)> {
    let pool = server.state.db().pool();
    let row =
        sqlx::query("SELECT table_name FROM docraft_vector_collections WHERE organization = $1 AND collection = $2")
            .bind(org)
            .bind(col)
            .fetch_optional(pool)
            .await
            .unwrap()?;
    let table: String = row.get("table_name");
    assert!(table.starts_with("docraft_vec_"), "{table}");
    let n = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<i64, _>("n");
    Some((table, n))
}

/// Whether a table of this name exists in the server's database.
async fn table_exists(server: &TestServer, table: &str) -> bool {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM pg_class WHERE relname = $1")
        .bind(table)
        .fetch_one(server.state.db().pool())
        .await
        .unwrap()
        .get("n");
    n > 0
}

/// The collection's directory under the data directory has no HNSW index, lock or stamp.
fn assert_no_index_on_disk(server: &TestServer, org: &str, col: &str) {
    let dir = server.data().join("orgs").join(org).join("collections").join(col);
    for name in ["index", "index.lock", "index.stamp"] {
        assert!(!dir.join(name).exists(), "{} exists: the vectors belong in pgvector", dir.join(name).display());
    }
}

fn chunks_of(docs: &[Value]) -> i64 {
    docs.iter().map(|d| d["chunks"].as_i64().unwrap()).sum()
}

/// A collection on PostgreSQL, its vectors in a pgvector table of the same database: a
/// Markdown guide uploaded (twice: one document) with release notes, indexed (one catalog row,
/// a row per chunk, no index directory), searched with and without filters, chatted with in
/// a conversation, and deleted (the document's rows, then the table and its catalog row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_collection_is_indexed_searched_and_chatted_with_on_postgres() {
    let server = TestServer::start_pg(|c| {
        common::fast(c, 0);
        c.max_org_document_bytes = 1 << 20;
    })
    .await;
    let (org, key) = server.org("acme").await;
    let (_, other) = server.org("other").await;
    let post =
        |key: &str, path: &str, body: Value| server.http.post(server.url(path)).bearer_auth(key).json(&body).send();
    let col = ok(post(&key, "/v1/collections", json!({"name": "guias"})).await.unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    error_of(post(&key, "/v1/collections", json!({"name": "guias"})).await.unwrap(), 409).await;
    let upload = |name: &str, bytes: Vec<u8>, team: &str| {
        let form = reqwest::multipart::Form::new()
            .text("metadata", json!({"team": team}).to_string())
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
        server
            .http
            .post(server.url(&format!("/v1/collections/{col}/documents")))
            .bearer_auth(&key)
            .multipart(form)
            .send()
    };
    let md = fixture("docs/guia-es.md");
    let notes = fixture("docs/release-notes.md");
    let first = ok(upload("guia-es.md", md.clone(), "sistemas").await.unwrap()).await;
    let again = ok(upload("copia.md", md.clone(), "sistemas").await.unwrap()).await;
    assert_eq!(again["data"][0]["id"], first["data"][0]["id"], "the same bytes are the same document");
    // Over the organization's quota (the sum of its documents' bytes).
    let big = vec![b'a'; (1 << 20) - md.len() + 1];
    error_of(upload("big.txt", big, "sistemas").await.unwrap(), 429).await;
    ok(upload("release-notes.md", notes, "producto").await.unwrap()).await;

    let docs = wait_indexed(&server, &key, &col, 2).await;
    assert!(docs.iter().all(|d| d["chunks"].as_i64().unwrap() > 0), "{docs:#?}");
    let c = ok(server.http.get(server.url(&format!("/v1/collections/{col}"))).bearer_auth(&key).send().await.unwrap())
        .await;
    assert_eq!(c["documents"], json!({"indexed": 2}), "{c}");
    // The vectors are in pgvector: a catalog row for (organization, collection) naming a table
    // with a row per chunk; nothing on disk.
    let (table, rows) = vector_rows(&server, &org.id, &col).await.expect("a catalog row for the collection");
    assert_eq!(rows, chunks_of(&docs), "{docs:#?}");
    assert_no_index_on_disk(&server, &org.id, &col);

    let search = |key: &str, body: Value| post(key, &format!("/v1/collections/{col}/search"), body);
    let files = |hits: &Value| -> Vec<String> {
        hits["data"].as_array().unwrap().iter().map(|h| h["filename"].as_str().unwrap().to_string()).collect()
    };
    let hits =
        ok(search(&key, json!({"query": "¿Cómo recupero una versión anterior de un archivo?", "k": 3})).await.unwrap())
            .await;
    let hits = hits["data"].as_array().unwrap();
    assert!(!hits.is_empty() && hits[0]["filename"] == "guia-es.md", "{hits:#?}");
    assert!(hits.iter().any(|h| h["text"].as_str().unwrap_or_default().contains("Restaurar")), "{hits:#?}");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0, "{hits:#?}");
    // Filters apply inside the search: only matching chunks, as many as asked for.
    let q = "offline service reports";
    let all = ok(search(&key, json!({"query": q, "k": 20})).await.unwrap()).await;
    let mut both = files(&all);
    both.sort();
    both.dedup();
    assert_eq!(both, ["guia-es.md", "release-notes.md"], "{all:#}");
    let by_meta = ok(search(&key, json!({"query": q, "k": 20, "filter": {"team": "sistemas"}})).await.unwrap()).await;
    let guia_chunks = docs.iter().find(|d| d["filename"] == "guia-es.md").unwrap()["chunks"].as_i64().unwrap();
    assert_eq!(files(&by_meta).len(), usize::try_from(guia_chunks.min(20)).unwrap(), "{by_meta:#}");
    assert!(files(&by_meta).iter().all(|f| f == "guia-es.md"), "{by_meta:#}");
    assert!(by_meta["data"].as_array().unwrap().iter().all(|h| h["metadata"]["team"] == "sistemas"), "{by_meta:#}");
    let by_name =
        ok(search(&key, json!({"query": "copias", "k": 5, "filter": {"filename": "release-notes.md"}})).await.unwrap())
            .await;
    assert!(!files(&by_name).is_empty(), "{by_name:#}");
    assert!(files(&by_name).iter().all(|f| f == "release-notes.md"), "{by_name:#}");
    let either = json!({"query": q, "k": 20, "filter": {"team": ["sistemas", "producto"]}});
    assert_eq!(ok(search(&key, either).await.unwrap()).await["data"].as_array().unwrap().len(), 20.min(rows as usize));
    let none = ok(search(&key, json!({"query": "copias", "k": 3, "filter": {"team": "legal"}})).await.unwrap()).await;
    assert_eq!(none["data"], json!([]));
    error_of(search(&other, json!({"query": "copias"})).await.unwrap(), 404).await;
    // Keyword search runs in PostgreSQL too (BM25 over the collection's terms table): every hit
    // holds a word of the query, and the filter applies.
    let kw = json!({"query": "Restaurar versión", "k": 5, "retrieval": "keyword"});
    let by_words = ok(search(&key, kw).await.unwrap()).await;
    let texts: Vec<String> =
        by_words["data"].as_array().unwrap().iter().map(|h| h["text"].as_str().unwrap().to_lowercase()).collect();
    assert!(!texts.is_empty() && texts.iter().all(|t| t.contains("restaur") || t.contains("versi")), "{by_words:#}");
    assert_eq!(files(&by_words)[0], "guia-es.md", "{by_words:#}");
    let kw = json!({"query": "copias", "k": 5, "retrieval": "keyword", "filter": {"filename": "release-notes.md"}});
    let by_words = ok(search(&key, kw).await.unwrap()).await;
    assert!(files(&by_words).iter().all(|f| f == "release-notes.md"), "{by_words:#}");

    // A conversation: its turn is stored with the next sequence number.
    let conv = ok(post(&key, "/v1/conversations", json!({"collection": col})).await.unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ask = json!({"model": SMOLLM2, "max_tokens": 24, "docraft": {"conversation": conv},
                     "messages": [{"role": "user", "content": "¿Cada cuánto se hacen las copias de seguridad?"}]});
    let answer = ok(post(&key, "/v1/chat/completions", ask).await.unwrap()).await;
    assert_eq!(answer["conversation"], conv.as_str(), "{answer}");
    let sources = answer["sources"].as_array().unwrap();
    assert!(sources.iter().any(|s| s["filename"] == "guia-es.md"), "retrieved from pgvector: {answer:#}");
    let turns =
        ok(server.http.get(server.url(&format!("/v1/conversations/{conv}"))).bearer_auth(&key).send().await.unwrap())
            .await;
    assert_eq!(turns["turns"][0]["seq"], 1, "{turns:#}");
    assert!(!turns["title"].as_str().unwrap().is_empty(), "{turns:#}");
    // Chat's retrieval filters in the store too.
    let ask = json!({"model": SMOLLM2, "max_tokens": 8,
                     "docraft": {"collection": col, "filter": {"filename": "release-notes.md"}},
                     "messages": [{"role": "user", "content": "¿Cada cuánto se hacen las copias de seguridad?"}]});
    let answer = ok(post(&key, "/v1/chat/completions", ask).await.unwrap()).await;
    let sources = answer["sources"].as_array().unwrap();
    assert!(!sources.is_empty() && sources.iter().all(|s| s["filename"] == "release-notes.md"), "{answer:#}");

    // Deleting a document takes its rows out of the table and it out of search; deleting the
    // collection drops the table and its catalog row.
    let guia = docs.iter().find(|d| d["filename"] == "guia-es.md").unwrap();
    let doc_id = guia["id"].as_str().unwrap();
    let r = server.http.delete(server.url(&format!("/v1/collections/{col}/documents/{doc_id}"))).bearer_auth(&key);
    ok(r.send().await.unwrap()).await;
    let (_, left) = vector_rows(&server, &org.id, &col).await.unwrap();
    assert_eq!(left, rows - guia_chunks);
    let hits = ok(search(&key, json!({"query": "copias de seguridad", "k": 3})).await.unwrap()).await;
    assert!(!files(&hits).is_empty() && files(&hits).iter().all(|f| f == "release-notes.md"), "{hits:#}");
    let kw = json!({"query": "Restaurar versión", "k": 5, "retrieval": "keyword"});
    let by_words = ok(search(&key, kw).await.unwrap()).await;
    assert!(files(&by_words).iter().all(|f| f != "guia-es.md"), "a deleted document's words are gone: {by_words:#}");
    let r = server.http.delete(server.url(&format!("/v1/collections/{col}"))).bearer_auth(&key);
    ok(r.send().await.unwrap()).await;
    assert!(vector_rows(&server, &org.id, &col).await.is_none(), "the catalog row is gone");
    assert!(!table_exists(&server, &table).await, "{table} is dropped");
    assert!(!table_exists(&server, &format!("{table}_terms")).await, "its keyword table too");
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM conversations")
        .fetch_one(server.state.db().pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0);
    server.stop().await;
}

/// Two processes on one database and data directory, as `docraft serve --workers 0` and
/// `docraft worker` run (two servers here, each with its own connections): what one indexes
/// into pgvector, the other searches (with filters too); what one deletes leaves the other's
/// additions in place. No process keeps an index on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn an_index_one_process_writes_is_read_by_another() {
    let api = TestServer::start_pg(|c| {
        common::fast(c, 0);
        c.document_workers = 0;
    })
    .await;
    let (url, data) = (api.state.config().database_url.clone(), api.data());
    let worker = TestServer::start_with(|c| {
        common::fast(c, 0);
        c.database_url = url;
        c.data_dir = data;
    })
    .await;
    let (org, key) = api.org("acme").await;
    let post = |s: &TestServer, path: &str, body: Value| s.http.post(s.url(path)).bearer_auth(&key).json(&body).send();
    let col = ok(post(&api, "/v1/collections", json!({"name": "docs"})).await.unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let search =
        |s: &TestServer, q: &str| post(s, &format!("/v1/collections/{col}/search"), json!({"query": q, "k": 10}));
    let files_of = |hits: &Value| -> Vec<String> {
        let mut f: Vec<String> =
            hits["data"].as_array().unwrap().iter().map(|h| h["filename"].as_str().unwrap().to_string()).collect();
        f.sort();
        f.dedup();
        f
    };
    // Both search the (empty) collection before anything is indexed.
    assert_eq!(ok(search(&api, "copias").await.unwrap()).await["data"], json!([]));
    assert_eq!(ok(search(&worker, "copias").await.unwrap()).await["data"], json!([]));
    let upload = |name: &str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
        api.http.post(api.url(&format!("/v1/collections/{col}/documents"))).bearer_auth(&key).multipart(form).send()
    };
    ok(upload("guia-es.md", fixture("docs/guia-es.md")).await.unwrap()).await;
    let docs = wait_indexed(&api, &key, &col, 1).await;
    // Indexed by the worker's process, found by the API's.
    let hits = ok(search(&api, "copias de seguridad").await.unwrap()).await;
    assert_eq!(files_of(&hits), ["guia-es.md"], "{hits:#}");
    assert_eq!(vector_rows(&api, &org.id, &col).await.unwrap().1, chunks_of(&docs));
    ok(upload("release-notes.md", fixture("docs/release-notes.md")).await.unwrap()).await;
    let docs = wait_indexed(&api, &key, &col, 2).await;
    let hits = ok(search(&api, "offline service reports").await.unwrap()).await;
    assert_eq!(files_of(&hits), ["guia-es.md", "release-notes.md"], "{hits:#}");
    // Both processes see the same results.
    let (a, w) = (search(&api, "offline service reports"), search(&worker, "offline service reports"));
    let (a, w) = (ok(a.await.unwrap()).await, ok(w.await.unwrap()).await);
    let ids = |hits: &Value| -> Vec<(String, String)> {
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["document_id"].as_str().unwrap().to_string(), h["text"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(ids(&a), ids(&w));
    let only_notes = json!({"query": "copias de seguridad", "k": 10, "filter": {"filename": "release-notes.md"}});
    let hits = ok(post(&api, &format!("/v1/collections/{col}/search"), only_notes).await.unwrap()).await;
    assert_eq!(files_of(&hits), ["release-notes.md"], "{hits:#}");
    assert_eq!(vector_rows(&worker, &org.id, &col).await.unwrap().1, chunks_of(&docs));
    // The API's process deletes one: the other loses it, and keeps the rest.
    let guia = docs.iter().find(|d| d["filename"] == "guia-es.md").unwrap();
    let guia_id = guia["id"].as_str().unwrap().to_string();
    let r = api.http.delete(api.url(&format!("/v1/collections/{col}/documents/{guia_id}"))).bearer_auth(&key);
    ok(r.send().await.unwrap()).await;
    let hits = ok(search(&worker, "copias de seguridad").await.unwrap()).await;
    assert_eq!(files_of(&hits), ["release-notes.md"], "{hits:#}");
    let notes = docs.iter().find(|d| d["filename"] == "release-notes.md").unwrap();
    assert_eq!(vector_rows(&api, &org.id, &col).await.unwrap().1, notes["chunks"].as_i64().unwrap());
    assert_no_index_on_disk(&api, &org.id, &col);
    worker.stop().await;
    api.stop().await;
}

/// The collection's documents once `n` are indexed.
async fn wait_indexed(server: &TestServer, key: &str, col: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let r = server.http.get(server.url(&format!("/v1/collections/{col}/documents"))).bearer_auth(key).send();
        let listed = ok(r.await.unwrap()).await;
        let docs = listed["data"].as_array().unwrap().clone();
        if docs.iter().filter(|d| d["status"] == "indexed").count() == n {
            return docs;
        }
        assert!(std::time::Instant::now() < deadline, "not indexed: {listed:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A collection filled from PostgreSQL rows: each row a document with its columns as metadata;
/// a data-modifying query is stopped by the read-only transaction and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn rows_of_a_postgres_table_become_documents() {
    let pg = PgServer::start();
    let url = pg.url_for_new_db();
    let db = url.rsplit('/').next().unwrap().to_string();
    pg.psql(&db, "CREATE TABLE tickets (id INT PRIMARY KEY, body TEXT, team TEXT, hours DOUBLE PRECISION)");
    pg.psql(
        &db,
        "INSERT INTO tickets VALUES (1, 'The printer on floor 2 jams every morning.', 'it', 1.5), \
         (2, 'Las vacaciones se piden con un mes de antelación.', 'rrhh', 0.5)",
    );
    let server = TestServer::start_with(|c| c.document_workers = 0).await;
    let (_, key) = server.org("acme").await;
    let col = server
        .http
        .post(server.url("/v1/collections"))
        .bearer_auth(&key)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    let col = col.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let add = |query: &str| {
        let body = json!({"sql": {"url": url, "query": query, "id_column": "id", "text_columns": ["body"],
                                  "metadata_columns": ["team", "hours"]}});
        server.http.post(server.url(&format!("/v1/collections/{col}/sql"))).bearer_auth(&key).json(&body).send()
    };
    let r = add("SELECT id, body, team, hours FROM tickets ORDER BY id").await.unwrap();
    assert_eq!(r.status(), 200);
    let docs: Value = r.json().await.unwrap();
    assert_eq!(docs["data"].as_array().unwrap().len(), 2, "{docs}");
    assert_eq!(docs["data"][1]["metadata"]["team"], "rrhh");
    assert_eq!(docs["data"][1]["metadata"]["hours"], 0.5);
    assert_eq!(docs["data"][0]["filename"], "row-1.txt");
    let r = add("WITH gone AS (DELETE FROM tickets RETURNING *) SELECT id, body, team, hours FROM gone").await.unwrap();
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
    assert_eq!(pg.psql(&db, "SELECT COUNT(*) FROM tickets"), "2", "a row was deleted");
    server.stop().await;
}

/// Processes wake each other's workers through PostgreSQL (`NOTIFY docraft_wake`): a worker
/// process polling only once an hour still ingests a document uploaded to another process's
/// API straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/setup.sh"]
async fn a_worker_elsewhere_is_woken_through_postgres() {
    let api = TestServer::start_pg(|c| {
        common::fast(c, 0);
        c.document_workers = 0;
        c.dataset_workers = 0;
    })
    .await;
    let (url, data) = (api.state.config().database_url.clone(), api.data());
    let worker = TestServer::start_with(|c| {
        common::fast(c, 0);
        c.poll = std::time::Duration::from_secs(3600);
        c.database_url = url;
        c.data_dir = data;
    })
    .await;
    // Let the worker's first look for work pass: from now on it only wakes when told.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, key) = api.org("acme").await;
    let col = ok(api
        .http
        .post(api.url("/v1/collections"))
        .bearer_auth(&key)
        .json(&json!({"name": "d"}))
        .send()
        .await
        .unwrap())
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(fixture("docs/guia-es.md")).file_name("guia-es.md"));
    let url = api.url(&format!("/v1/collections/{col}/documents"));
    ok(api.http.post(url).bearer_auth(&key).multipart(form).send().await.unwrap()).await;
    // wait_indexed gives up long before the worker's next poll.
    let docs = wait_indexed(&api, &key, &col, 1).await;
    assert_eq!(docs[0]["status"], "indexed");
    worker.stop().await;
    api.stop().await;
}
