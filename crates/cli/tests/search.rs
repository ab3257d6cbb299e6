//! `docraft index build` and `docraft search` as a user runs them, with the real model, on
//! the fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

mod common;

use common::{docraft, fixtures, s};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Ingests `docs` and builds an index; returns (chunks file, index dir).
fn build(dir: &Path, docs: &[&Path]) -> Result<(PathBuf, PathBuf)> {
    let chunks = dir.join("chunks.jsonl");
    let index = dir.join("index");
    let mut args = vec!["ingest", "-q", "-o", s(&chunks)];
    args.extend(docs.iter().map(|d| s(d)));
    let out = docraft(&args)?;
    ensure!(out.status.success(), "ingest: {}", stderr(&out));
    let out = docraft(&["index", "build", s(&chunks), "-o", s(&index), "-q"])?;
    ensure!(out.status.success(), "index build: {}", stderr(&out));
    Ok((chunks, index))
}

fn search(index: &Path, query: &str, extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["search", s(index), query, "--json"];
    args.extend(extra);
    let out = docraft(&args)?;
    ensure!(out.status.success(), "search {query:?}: {}", stderr(&out));
    String::from_utf8(out.stdout)?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn search_answers_questions_with_the_right_source_and_page() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let (_, index) = build(tmp.path(), &[&fixtures().join("docs")])?;
    // (question, file, page (None: unpaged), text the source chunk holds)
    let cases: [(&str, &str, Option<u64>, &str); 9] = [
        ("What torque should the flange bolts be tightened to?", "handbook-en.pdf", Some(2), "18 Nm"),
        ("What does the calibration log record?", "handbook-en.pdf", Some(3), "serial number of the meter"),
        ("When will the office network be unavailable?", "memo-utf16.txt", None, "21 March 2026"),
        (
            "When will the pressure relief valve on pump station P4 be replaced?",
            "bulletin-gs.pdf",
            Some(1),
            "12 May 2026",
        ),
        ("Can service reports be completed without a network connection?", "release-notes.md", None, "Offline reports"),
        ("¿Cada cuánto se revisa la política de documentos?", "politica-es.pdf", Some(2), "cada dos años"),
        ("¿Cómo recupero una versión anterior de un archivo?", "guia-es.md", None, "Recuperar una versión anterior"),
        ("¿Quién asistió a la reunión del comité de seguridad?", "acta-latin1.txt", None, "Asistentes"),
        ("¿Dónde se guardan los documentos confidenciales en papel?", "politica-es.pdf", Some(2), "armarios con llave"),
    ];
    for (question, file, page, needle) in cases {
        let hits = search(&index, question, &[])?;
        assert_eq!(hits.len(), 5, "{question}");
        let found = hits.iter().any(|h| {
            let pages = h["pages"].as_array().map(|p| (p[0].as_u64(), p[1].as_u64()));
            let page_ok = match (page, pages) {
                (None, None) => true,
                (Some(p), Some((Some(a), Some(b)))) => a <= p && p <= b,
                _ => false,
            };
            h["source"].as_str().is_some_and(|s| s.ends_with(file))
                && page_ok
                && h["text"].as_str().is_some_and(|t| t.contains(needle))
        });
        assert!(found, "{question}: {file} p. {page:?} not in the top 5: {hits:#?}");
        for key in ["rank", "chunk_id", "doc_id", "source", "pages", "score", "text"] {
            assert!(hits[0].get(key).is_some(), "--json lacks {key}");
        }
        let scores: Vec<f64> = hits.iter().filter_map(|h| h["score"].as_f64()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }

    // Filters: only PDFs, only page 2, only Spanish.
    let hits = search(&index, "calibration", &["--filter", "source=*.pdf", "--filter", "page=2", "-k", "10"])?;
    assert!(!hits.is_empty());
    for h in &hits {
        assert!(h["source"].as_str().unwrap().ends_with(".pdf"));
        let p = h["pages"].as_array().unwrap();
        assert!(p[0].as_u64() <= Some(2) && p[1].as_u64() >= Some(2), "{h}");
    }
    let es = search(&index, "network", &["--filter", "language=es", "-k", "20"])?;
    assert!(!es.is_empty());
    for h in &es {
        let f = h["source"].as_str().unwrap();
        assert!(["politica-es.pdf", "guia-es.md", "acta-latin1.txt"].iter().any(|n| f.ends_with(n)), "{f}");
    }
    // The plain output names source and page.
    let out = docraft(&["search", s(&index), "What torque should the flange bolts be tightened to?", "-k", "1"])?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("1. ") && text.contains("handbook-en.pdf pp. 2-3"), "{text}");
    // A bad filter names itself.
    let out = docraft(&["search", s(&index), "x", "--filter", "page=zero"])?;
    assert!(!out.status.success() && stderr(&out).contains("page=zero"), "{}", stderr(&out));
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn retrieval_by_vectors_by_keywords_and_both_fused() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let (_, index) = build(tmp.path(), &[&fixtures().join("docs")])?;
    let text = |h: &Value| h["text"].as_str().unwrap_or_default().to_string();
    let scores = |hits: &[Value]| hits.iter().filter_map(|h| h["score"].as_f64()).collect::<Vec<_>>();

    // Keywords: BM25 over folded, stemmed words; an exact figure is found first.
    let hits = search(&index, "18 Nm flange", &["--retrieval", "keyword"])?;
    assert!(text(&hits[0]).contains("18 Nm"), "{hits:#?}");
    assert!(scores(&hits).iter().all(|s| *s > 1.0), "BM25 scores, not similarities: {:?}", scores(&hits));
    // Accents and case folded, Spanish verb forms stemmed: "conservan" meets "conservada".
    let hits = search(&index, "¿CUÁNTO TIEMPO SE CONSERVAN LOS DOCUMENTOS?", &["--retrieval", "keyword", "-k", "3"])?;
    assert!(hits[0]["source"].as_str().is_some_and(|s| s.ends_with("politica-es.pdf")), "{hits:#?}");
    let first = text(&hits[0]).to_lowercase();
    assert!(first.contains("conserva") && !first.contains("conservan"), "{hits:#?}");
    // Filters hold on the keyword side too.
    let hits = search(&index, "documentos papel", &["--retrieval", "keyword", "--filter", "source=*.md", "-k", "10"])?;
    assert!(hits.iter().all(|h| h["source"].as_str().is_some_and(|s| s.ends_with(".md"))), "{hits:#?}");
    // Only function words: nothing to match.
    let out = docraft(&["search", s(&index), "the of and", "--retrieval", "keyword", "--json"])?;
    assert!(out.status.success() && out.stdout.is_empty(), "{}", stderr(&out));

    // Hybrid: both lists fused by reciprocal rank (scores at most 2/61), best first; the
    // keyword-exact chunk and the vector side's best are both in the top 5.
    let vector = search(&index, "What torque should the flange bolts be tightened to?", &["--retrieval", "vector"])?;
    let hybrid = search(&index, "What torque should the flange bolts be tightened to?", &["--retrieval", "hybrid"])?;
    let fused = scores(&hybrid);
    assert!(fused.iter().all(|s| *s > 0.0 && *s <= 2.0 / 61.0 + 1e-6), "{fused:?}");
    assert!(fused.windows(2).all(|w| w[0] >= w[1]), "{fused:?}");
    assert!(hybrid.iter().any(|h| h["chunk_id"] == vector[0]["chunk_id"]), "{hybrid:#?}");
    assert!(hybrid.iter().any(|h| text(h).contains("18 Nm")), "{hybrid:#?}");
    // All weight on the vector list: the vector order.
    let weighted = search(
        &index,
        "What torque should the flange bolts be tightened to?",
        &["--retrieval", "hybrid", "--keyword-weight", "0"],
    )?;
    let ids = |hits: &[Value]| hits.iter().map(|h| h["chunk_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&weighted), ids(&vector));

    // Bad settings name themselves.
    let out = docraft(&["search", s(&index), "x", "--retrieval", "bm25"])?;
    assert!(!out.status.success() && stderr(&out).contains("bm25"), "{}", stderr(&out));
    let out = docraft(&["search", s(&index), "x", "--vector-weight", "0", "--keyword-weight", "0"])?;
    assert!(!out.status.success() && stderr(&out).contains("weight"), "{}", stderr(&out));
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn rebuilding_after_documents_change_updates_the_index() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs)?;
    for f in ["guia-es.md", "release-notes.md", "memo-utf16.txt"] {
        std::fs::copy(fixtures().join("docs").join(f), docs.join(f))?;
    }
    let (chunks, index) = build(tmp.path(), &[&docs])?;
    assert!(
        search(&index, "network maintenance", &["-k", "10"])?
            .iter()
            .any(|h| h["source"].as_str().unwrap().ends_with("memo-utf16.txt"))
    );

    // The memo goes away, the release notes change: ingest into a fresh chunks file and rebuild.
    std::fs::remove_file(docs.join("memo-utf16.txt"))?;
    let notes = std::fs::read_to_string(docs.join("release-notes.md"))?;
    std::fs::write(docs.join("release-notes.md"), notes.replace("Android", "Android, iOS"))?;
    std::fs::remove_file(&chunks)?;
    let out = docraft(&["ingest", "-q", "-o", s(&chunks), s(&docs)])?;
    assert!(out.status.success());
    let out = docraft(&["index", "build", s(&chunks), "-o", s(&index), "-q"])?;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("updating"), "{err}");
    // The guide's chunks were unchanged and nothing of it was embedded again.
    let guide_chunks = std::fs::read_to_string(&chunks)?.lines().filter(|l| l.contains("guia-es.md")).count();
    assert!(err.contains(&format!("{guide_chunks} unchanged")), "{err}");
    let hits = search(&index, "network maintenance", &["-k", "20"])?;
    assert!(
        hits.iter().all(|h| !h["source"].as_str().unwrap().ends_with("memo-utf16.txt")),
        "removed document still found"
    );
    let hits = search(&index, "Which tablets does the Field App run on?", &["-k", "1"])?;
    assert!(hits[0]["text"].as_str().unwrap().contains("iOS"), "{hits:?}");
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn bad_input_is_reported_and_a_failed_build_keeps_the_old_index() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let (chunks, index) = build(tmp.path(), &[&fixtures().join("docs/guia-es.md")])?;
    let before = std::fs::read(index.join("chunks.jsonl"))?;

    // A missing model directory: a clear error, and the previous index is untouched.
    let out = docraft(&["index", "build", s(&chunks), "-o", s(&index), "--model", "/no/such/model", "-q"])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/model"), "{}", stderr(&out));
    assert_eq!(std::fs::read(index.join("chunks.jsonl"))?, before);
    assert!(!search(&index, "copias de seguridad", &[])?.is_empty());

    // A missing ONNX Runtime library: an error that says how to get one.
    let out = Command::new(env!("CARGO_BIN_EXE_docraft"))
        .args(["index", "build", s(&chunks), "-o", s(&index), "-q"])
        .env("ORT_DYLIB_PATH", "/no/such/libonnxruntime.so")
        .output()?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ORT_DYLIB_PATH") && stderr(&out).contains("setup.sh"), "{}", stderr(&out));
    assert_eq!(std::fs::read(index.join("chunks.jsonl"))?, before);

    // A torn last line is reported and skipped; the other chunks are indexed.
    let torn = tmp.path().join("torn.jsonl");
    let mut bytes = std::fs::read(&chunks)?;
    bytes.extend_from_slice(b"{\"id\":\"abc\",\"doc_id\":");
    std::fs::write(&torn, bytes)?;
    let out = docraft(&["index", "build", s(&torn), "-o", s(&tmp.path().join("torn-index")), "-q"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("torn last line"), "{}", stderr(&out));

    // An empty chunks file, a directory that is not an index, an index of another version.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "")?;
    let out = docraft(&["index", "build", s(&empty), "-o", s(&tmp.path().join("e")), "-q"])?;
    assert!(!out.status.success() && stderr(&out).contains("no chunks"), "{}", stderr(&out));
    let out = docraft(&["search", s(&fixtures()), "x"])?;
    assert!(!out.status.success() && stderr(&out).contains("not a usable docraft index"), "{}", stderr(&out));
    let meta = std::fs::read_to_string(index.join("index.json"))?;
    std::fs::write(index.join("index.json"), meta.replace("\"version\": 1", "\"version\": 2"))?;
    let out = docraft(&["search", s(&index), "x"])?;
    assert!(!out.status.success() && stderr(&out).contains("format version 2"), "{}", stderr(&out));
    // Building into a directory of other files is refused, and they stay.
    let out = docraft(&["index", "build", s(&chunks), "-o", s(&fixtures().join("docs")), "-q"])?;
    assert!(!out.status.success() && stderr(&out).contains("not a docraft index"), "{}", stderr(&out));
    assert!(fixtures().join("docs/guia-es.md").is_file());
    Ok(())
}

#[test]
#[ignore = "needs scripts/setup.sh"]
fn an_index_built_with_another_model_is_refused_at_search() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let (_, index) = build(tmp.path(), &[&fixtures().join("docs/guia-es.md")])?;
    let path = index.join("index.json");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let model = meta["model_id"].as_str().context("model_id")?.to_string();
    // Searched with another backend (all-MiniLM on ONNX Runtime) than it was built with (the
    // default, USE-m3): that model is refused.
    assert!(model.starts_with("use-m3:"), "{model}");
    let out = docraft(&["search", s(&index), "copias", "--backend", "onnx"])?;
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains(&model) && err.contains("onnx:all-minilm") && err.contains("rebuild"),
        "{err}"
    );
    std::fs::write(&path, serde_json::to_string(&meta)?.replace(&model, "onnx:some-other-model:0000"))?;
    let out = docraft(&["search", s(&index), "copias"])?;
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("some-other-model") && err.contains("rebuild"), "{err}");
    Ok(())
}

/// The candle backend builds an index without ONNX Runtime, and search picks the backend the
/// index was built with.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn the_candle_backend_indexes_and_searches_without_onnx_runtime() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let chunks = tmp.path().join("chunks.jsonl");
    let index = tmp.path().join("index");
    let out = docraft(&["ingest", "-q", "-o", s(&chunks), s(&fixtures().join("docs/handbook-en.pdf"))])?;
    assert!(out.status.success());
    let no_ort = |args: &[&str]| -> Result<Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_docraft")).args(args).env("ORT_DYLIB_PATH", "/no/such/lib.so").output()?)
    };
    let out = no_ort(&["index", "build", s(&chunks), "-o", s(&index), "--backend", "candle", "-q"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = no_ort(&["search", s(&index), "What does the calibration log record?", "-k", "1", "--json"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let hit: Value = serde_json::from_slice(&out.stdout)?;
    assert!(hit["text"].as_str().unwrap().contains("serial number of the meter"), "{hit}");
    assert_eq!(hit["pages"], serde_json::json!([3, 3]));
    Ok(())
}

/// The USE-m3 backend builds an index that search then opens with USE-m3 (from the model id it
/// records), and questions find their passage across English and Spanish.
#[test]
#[ignore = "needs scripts/setup.sh"]
fn the_use_m3_backend_indexes_and_searches_across_languages() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let chunks = tmp.path().join("chunks.jsonl");
    let index = tmp.path().join("index");
    let out = docraft(&["ingest", "-q", "-o", s(&chunks), s(&fixtures().join("docs"))])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = docraft(&["index", "build", s(&chunks), "-o", s(&index), "--backend", "use-m3", "-q"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(index.join("index.json"))?)?;
    assert!(meta["model_id"].as_str().is_some_and(|m| m.starts_with("use-m3:use-m3:")), "{meta}");
    // (question, file, text the source chunk holds): Spanish questions of English documents and
    // the other way round, then one of each language in its own.
    let cases = [
        ("¿Cuándo no estará disponible la red de la oficina?", "memo-utf16.txt", "21 March 2026"),
        ("Where are confidential paper documents kept?", "politica-es.pdf", "armarios con llave"),
        ("Can service reports be completed without a network connection?", "release-notes.md", "Offline reports"),
        ("¿Cómo recupero una versión anterior de un archivo?", "guia-es.md", "Recuperar una versión anterior"),
    ];
    for (question, file, needle) in cases {
        let hits = search(&index, question, &[])?;
        let found = hits.iter().any(|h| {
            h["source"].as_str().is_some_and(|s| s.ends_with(file))
                && h["text"].as_str().is_some_and(|t| t.contains(needle))
        });
        assert!(found, "{question}: {file} not in the top 5: {hits:#?}");
    }
    Ok(())
}

/// `docraft ingest` of one fixture, run as any other test does: no models needed.
fn fixture_chunks(dir: &Path) -> Result<PathBuf> {
    let chunks = dir.join("chunks.jsonl");
    let out = docraft(&["ingest", "-q", "-o", s(&chunks), s(&fixtures().join("docs/guia-es.md"))])?;
    ensure!(out.status.success(), "ingest: {}", stderr(&out));
    Ok(chunks)
}

/// The binary with `HOME` set to `home` and none of the variables that name the models or the
/// runtime: what a new user has right after `scripts/setup.sh`, without sourcing env.sh.
fn docraft_at_home(home: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docraft"));
    cmd.args(args).env("HOME", home);
    for var in common::MODEL_VARS {
        cmd.env_remove(var);
    }
    Ok(cmd.output()?)
}

/// Without env.sh the binary finds the models and ONNX Runtime in the default cache,
/// `~/.cache/docraft/models` (here a temporary home whose cache links to the real models).
#[test]
#[ignore = "needs scripts/setup.sh"]
fn index_build_finds_models_and_runtime_in_the_default_cache_without_env_vars() -> Result<()> {
    common::require_models();
    let tmp = tempfile::tempdir()?;
    let chunks = fixture_chunks(tmp.path())?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".cache/docraft"))?;
    std::os::unix::fs::symlink(docraft_core::models_dir(), home.join(".cache/docraft/models"))?;
    let index = tmp.path().join("index");
    let out = docraft_at_home(&home, &["index", "build", s(&chunks), "-o", s(&index), "-q"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        docraft_at_home(&home, &["search", s(&index), "¿Cómo recupero una versión anterior?", "-k", "1", "--json"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let hit: Value = serde_json::from_slice(&out.stdout)?;
    assert!(hit["source"].as_str().is_some_and(|f| f.ends_with("guia-es.md")), "{hit}");
    Ok(())
}

/// With nothing in the default cache and no variables, the errors say where the binary looked
/// and that scripts/setup.sh fetches what is missing: first the model, then (model files in
/// place) ONNX Runtime.
#[test]
fn without_setup_the_errors_name_the_places_searched_and_setup_sh() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let chunks = fixture_chunks(tmp.path())?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let models = home.join(".cache/docraft/models");
    let index = tmp.path().join("index");
    let args = ["index", "build", s(&chunks), "-o", s(&index), "-q"];

    let out = docraft_at_home(&home, &args)?;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(s(&models.join("use-m3"))) && err.contains("scripts/setup.sh"), "{err}");

    // The model directory is complete (placeholder files: the runtime is looked for before they
    // are parsed), ONNX Runtime is not.
    let model = models.join("use-m3");
    std::fs::create_dir_all(&model)?;
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        std::fs::write(model.join(f), "{}")?;
    }
    let out = docraft_at_home(&home, &args)?;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("ORT_DYLIB_PATH is not set")
            && err.contains(s(&models))
            && err.contains("onnxruntime-*/libonnxruntime.so*")
            && err.contains("scripts/setup.sh"),
        "{err}"
    );
    assert!(!index.join("index.json").exists());
    Ok(())
}
