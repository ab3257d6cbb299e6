//! `docraft index build --store postgres://…`, `search`, `ask`, `eval` and `index import` on a
//! real PostgreSQL with pgvector (started by the test harness as an unprivileged user on a
//! free port), against the same commands on an index directory: the same chunks, the same
//! citations, the same figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Result, ensure};
use serde_json::Value;

mod common;
#[path = "../../server/tests/common/pg.rs"]
mod pg;

use common::{docraft, fixtures, s};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> Result<Output> {
    let out = docraft(args)?;
    ensure!(out.status.success(), "docraft {args:?}: {}", stderr(&out));
    Ok(out)
}

/// Compared across stores by vector unless said otherwise (keyword and hybrid are compared
/// too: BM25 in SQL against the directory's in-memory keyword index).
const BY_VECTOR: [&str; 2] = ["--retrieval", "vector"];

fn search(index: &str, query: &str, extra: &[&str]) -> Result<Vec<Value>> {
    search_by(BY_VECTOR[1], index, query, extra)
}

fn search_by(mode: &str, index: &str, query: &str, extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["search", index, query, "--json", "--retrieval", mode];
    args.extend(extra);
    let out = ok(&args)?;
    String::from_utf8(out.stdout)?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn ids(hits: &[Value]) -> Vec<String> {
    hits.iter().map(|h| h["chunk_id"].as_str().unwrap_or_default().to_string()).collect()
}

/// Same scores, and the same chunks except among those tied with the last one (identical
/// texts in two files score the same; a graph scan may cut such a tie either way).
fn same_ranking(a: &[Value], b: &[Value], what: &str) {
    let scores = |h: &[Value]| h.iter().map(|h| h["score"].as_f64().unwrap()).collect::<Vec<_>>();
    let (sa, sb) = (scores(a), scores(b));
    assert_eq!(sa.len(), sb.len(), "{what}");
    for (x, y) in sa.iter().zip(&sb) {
        assert!((x - y).abs() < 1e-4, "{what}: {sa:?} vs {sb:?}");
    }
    let last = sa.last().copied().unwrap_or_default();
    let keep = |h: &[Value]| -> Vec<String> {
        h.iter()
            .filter(|h| (h["score"].as_f64().unwrap() - last).abs() >= 1e-4)
            .map(|h| h["chunk_id"].to_string())
            .collect()
    };
    assert_eq!(keep(a), keep(b), "{what}");
}

fn ingest(dir: &Path, name: &str, docs: &[PathBuf]) -> Result<PathBuf> {
    let chunks = dir.join(format!("{name}.jsonl"));
    let mut args = vec!["ingest".to_string(), "-q".into(), "-o".into(), s(&chunks).into()];
    args.extend(docs.iter().map(|d| s(d).to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(chunks)
}

const QUESTIONS: [&str; 6] = [
    "What torque should the flange bolts be tightened to?",
    "When will the office network be unavailable?",
    "Can service reports be completed without a network connection?",
    "¿Cada cuánto se revisa la política de documentos?",
    "¿Cómo recupero una versión anterior de un archivo?",
    "¿Dónde se guardan los documentos confidenciales en papel?",
];

#[test]
#[ignore = "needs scripts/setup.sh"]
fn a_pgvector_collection_answers_like_the_index_directory() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let pg = pg::PgServer::start();
    let db = pg.url_for_new_db();
    let store = format!("{db}?collection=fixtures");
    let chunks = ingest(tmp.path(), "all", &[fixtures().join("docs")])?;
    let n_chunks = std::fs::read_to_string(&chunks)?.lines().count();
    let dir = tmp.path().join("index");
    ok(&["index", "build", s(&chunks), "-o", s(&dir), "-q"])?;
    let out = ok(&["index", "build", s(&chunks), "--store", &store, "-q"])?;
    let summary = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    ensure!(summary.contains(&format!("indexed {n_chunks} chunks")), "{summary}");

    // The same chunks, in the same order, with the same scores.
    for q in QUESTIONS {
        let a = search(s(&dir), q, &["-k", "5"])?;
        let b = search(&store, q, &["-k", "5"])?;
        same_ranking(&a, &b, q);
        // Exact scans break ties the same way in both stores.
        assert_eq!(ids(&a), ids(&search(&store, q, &["-k", "5", "--exact"])?), "{q}: exact");
        // Keyword search (in SQL there, in memory here) and the two fused.
        for mode in ["keyword", "hybrid"] {
            let a = search_by(mode, s(&dir), q, &["-k", "5"])?;
            ensure!(!a.is_empty(), "{mode}: {q}: nothing found");
            same_ranking(&a, &search_by(mode, &store, q, &["-k", "5"])?, &format!("{mode}: {q}"));
        }
    }
    let filtered = ["--filter", "language=es", "-k", "8"];
    let a = search_by("keyword", s(&dir), "documentos archivo", &filtered)?;
    ensure!(!a.is_empty(), "nothing found in Spanish");
    same_ranking(&a, &search_by("keyword", &store, "documentos archivo", &filtered)?, "keyword, language=es");
    // Filters in the scan: only PDFs on page 2; only Spanish.
    let hits = search(&store, "calibration", &["--filter", "source=*.pdf", "--filter", "page=2", "-k", "10"])?;
    assert!(!hits.is_empty());
    for h in &hits {
        assert!(h["source"].as_str().unwrap().ends_with(".pdf"), "{h}");
        let p = h["pages"].as_array().unwrap();
        assert!(p[0].as_u64() <= Some(2) && p[1].as_u64() >= Some(2), "{h}");
    }
    let es = search(&store, "network", &["--filter", "language=es", "-k", "20"])?;
    same_ranking(&es, &search(s(&dir), "network", &["--filter", "language=es", "-k", "20"])?, "language=es");
    assert!(!es.is_empty());

    // Evaluation over either store gives the same figures (with the default retrieval, hybrid).
    let cases = tmp.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        [
            r#"{"question": "What torque should the flange bolts be tightened to?", "source": "handbook-en.pdf", "page": 2}"#,
            r#"{"question": "When will the office network be unavailable?", "source": "memo-utf16.txt"}"#,
            r#"{"question": "¿Dónde se guardan los documentos confidenciales en papel?", "source": "politica-es.pdf", "page": 2}"#,
            r#"{"question": "¿Cómo recupero una versión anterior de un archivo?", "source": "guia-es.md"}"#,
        ]
        .join("\n"),
    )?;
    let report = |index: &str, name: &str| -> Result<Value> {
        let out = tmp.path().join(name);
        ok(&["eval", "--index", index, "--questions", s(&cases), "-o", s(&out), "-q"])?;
        let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
        Ok(r["retrieval"].clone())
    };
    let (a, b) = (report(s(&dir), "eval-dir")?, report(&store, "eval-pg")?);
    assert!(!a.is_null(), "no retrieval section");
    assert_eq!(a.to_string().replace(s(&dir), "INDEX"), b.to_string().replace(&store, "INDEX"));

    // A missing collection, and a URL without one, are clear errors.
    let out = docraft(&["search", &format!("{db}?collection=nope"), "x"])?;
    assert!(!out.status.success() && stderr(&out).contains("no such collection"), "{}", stderr(&out));
    let out = docraft(&["search", &db, "x"])?;
    assert!(!out.status.success() && stderr(&out).contains("collection=NAME"), "{}", stderr(&out));

    // Re-building from fewer documents deletes the chunks of the others; an interrupted build
    // resumes: only what is missing is embedded.
    let fewer = ingest(tmp.path(), "fewer", &[fixtures().join("docs/guia-es.md")])?;
    let n_fewer = std::fs::read_to_string(&fewer)?.lines().count();
    assert!(n_fewer > 0 && n_fewer < n_chunks);
    let out = ok(&["index", "build", s(&fewer), "--store", &store, "-q"])?;
    let summary = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    ensure!(summary.contains(&format!("{} removed, {n_fewer} unchanged", n_chunks - n_fewer)), "{summary}");
    let left = search(&store, "calibration", &["--filter", "source=*.pdf"])?;
    assert!(left.is_empty(), "{:?}", left.iter().map(|h| (&h["source"], &h["chunk_id"])).collect::<Vec<_>>());
    assert_eq!(search(&store, "calibration", &["-k", "50"])?.len(), n_fewer);
    let out = ok(&["index", "build", s(&chunks), "--store", &store, "-q"])?;
    let summary = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    ensure!(summary.contains(&format!("embedded {} chunks", n_chunks - n_fewer)), "{summary}");
    same_ranking(&search(&store, QUESTIONS[0], &[])?, &search(s(&dir), QUESTIONS[0], &[])?, "after resuming");
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn an_index_moved_to_pgvector_answers_with_the_same_citations() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let pg = pg::PgServer::start();
    let store = format!("{}?collection=moved&organization=acme", pg.url_for_new_db());
    let chunks = ingest(tmp.path(), "all", &[fixtures().join("docs")])?;
    let dir = tmp.path().join("index");
    ok(&["index", "build", s(&chunks), "-o", s(&dir), "-q"])?;
    let out = ok(&["index", "import", s(&dir), "--store", &store, "-q"])?;
    let n = std::fs::read_to_string(&chunks)?.lines().count();
    let text = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains(&format!("copied {n} chunks")) && text.contains("\"moved\""), "{text}");
    // Importing again adds nothing.
    let out = ok(&["index", "import", s(&dir), "--store", &store, "-q"])?;
    let text = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("copied 0 chunks") && text.contains(&format!("holds {n}")), "{text}");
    for q in [QUESTIONS[0], QUESTIONS[5]] {
        let ask = |index: &str| -> Result<Value> {
            let out = ok(&["ask", index, q, "--json", "--max-tokens", "40", BY_VECTOR[0], BY_VECTOR[1]])?;
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        let (a, b) = (ask(s(&dir))?, ask(&store)?);
        assert_eq!(a["citations"], b["citations"], "{q}");
        assert_eq!(a["text"], b["text"], "{q}");
        assert_eq!(a["declined"], false, "{q}: {a:#}");
    }
    Ok(())
}

/// The README's scale-out recipe starts its database with `scripts/postgres.sh` (from what
/// setup unpacked): it starts, is idempotent, gives a database with pgvector that a store URL
/// works on, and stops.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn scripts_postgres_sh_gives_a_database_with_pgvector() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let script = common::fixtures().join("../scripts/postgres.sh");
    let run = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("DOCRAFT_PGDATA", tmp.path().join("pg"))
            .output()?;
        ensure!(out.status.success(), "postgres.sh {args:?}: {}", stderr(&out));
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    let url = run(&["start", &port])?;
    assert_eq!(url, format!("postgres://postgres@127.0.0.1:{port}/docraft"));
    assert_eq!(run(&["start", &port])?, url, "a second start is a no-op");
    let chunks = ingest(tmp.path(), "guia", &[fixtures().join("docs/guia-es.md")])?;
    let store = format!("{url}?collection=guia");
    let built = ok(&["index", "build", s(&chunks), "--store", &store, "-q"]);
    let hits = built.and_then(|_| search(&store, "¿Cómo recupero una versión anterior de un archivo?", &["-k", "1"]));
    run(&["stop"])?;
    let hits = hits?;
    assert!(hits[0]["source"].as_str().unwrap().ends_with("guia-es.md"), "{hits:?}");
    Ok(())
}
