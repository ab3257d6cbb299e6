//! The `docraft` binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

mod common;

use common::{docraft, fixtures, s};

#[test]
fn extract_separates_pages_with_form_feeds() -> Result<()> {
    let pdf = fixtures().join("docs/handbook-en.pdf");
    let out = docraft(&["extract", s(&pdf)])?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert_eq!(text.matches('\x0c').count(), 4, "one form feed after each of the 4 pages");
    assert!(text.starts_with("Northwind Field Service Handbook"));

    let out = docraft(&["extract", "--json", s(&pdf)])?;
    let doc: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["pages"].as_array().map(Vec::len), Some(4));
    assert_eq!(doc["format"], "pdf");

    // Page numbers are removed unless asked for.
    let kept = String::from_utf8(docraft(&["extract", "--keep-page-furniture", s(&pdf)])?.stdout)?;
    let last_line =
        |t: &str, n: usize| t.split('\x0c').nth(n).and_then(|p| p.trim_end().lines().last()).map(str::to_string);
    assert_eq!(last_line(&kept, 0).as_deref(), Some("1"));
    assert_ne!(last_line(&text, 0).as_deref(), Some("1"));

    let md = docraft(&["extract", s(&fixtures().join("docs/guia-es.md"))])?;
    assert!(String::from_utf8(md.stdout)?.starts_with("# Guía rápida"));
    Ok(())
}

#[test]
fn extract_bad_file_fails_with_its_reason() -> Result<()> {
    let out = docraft(&["extract", s(&fixtures().join("bad/password.pdf"))])?;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("password.pdf") && err.contains("needs a password"), "{err}");
    Ok(())
}

#[test]
fn ingest_fixtures_writes_chunks_and_report() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let chunks = dir.path().join("chunks.jsonl");
    let report = dir.path().join("report.json");
    let out = docraft(&[
        "ingest",
        s(&fixtures()),
        "-o",
        s(&chunks),
        "--report",
        s(&report),
        "--chunk-size",
        "300..600",
        "--overlap",
        "50",
        "--quiet",
    ])?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("failed files:") && stderr.contains("truncated.pdf"), "{stderr}");
    assert!(stderr.contains("chunks") && stderr.contains("MB/s"), "{stderr}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let files = report["files"].as_array().context("files")?;
    for f in files {
        for key in ["path", "status", "chunks"] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
        match f["status"].as_str() {
            Some("failed") => assert!(f["reason"].as_str().is_some_and(|r| !r.is_empty())),
            Some("ok") => assert!(f["chunks"].as_u64() > Some(0)),
            other => panic!("unexpected status {other:?}"),
        }
    }
    let failed = files.iter().filter(|f| f["status"] == "failed").count();
    assert_eq!(failed, 5, "the five bad fixtures");
    assert_eq!(report["totals"]["failed"], 5);
    let handbook = files.iter().find(|f| f["path"].as_str().is_some_and(|p| p.ends_with("handbook-en.pdf")));
    assert_eq!(handbook.context("handbook")?["pages"], 4);

    let text = std::fs::read_to_string(&chunks)?;
    let records: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(records.len() as u64, report["totals"]["chunks"].as_u64().unwrap_or(0));
    for r in &records {
        for key in ["id", "doc_id", "source", "text", "span", "pages", "headings"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert!(r["text"].as_str().map_or(0, |t| t.chars().count()) <= 600);
    }
    let pdf_chunk =
        records.iter().find(|r| r["source"].as_str().is_some_and(|p| p.ends_with(".pdf"))).context("pdf")?;
    assert!(pdf_chunk["pages"].is_array());
    let md_chunk = records.iter().find(|r| r["source"].as_str().is_some_and(|p| p.ends_with(".md"))).context("md")?;
    assert!(md_chunk["pages"].is_null());

    // --strict turns the failures into a failed run; nothing is written twice.
    let strict = docraft(&[
        "ingest",
        s(&fixtures()),
        "-o",
        s(&chunks),
        "--quiet",
        "--strict",
        "--chunk-size",
        "300..600",
        "--overlap",
        "50",
    ])?;
    assert!(!strict.status.success());
    assert_eq!(std::fs::read_to_string(&chunks)?, text, "a re-run adds nothing");
    Ok(())
}

#[test]
fn ingest_with_nothing_readable_fails() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = docraft(&["ingest", s(&fixtures().join("bad")), "-o", s(&dir.path().join("c.jsonl")), "--quiet"])?;
    assert!(!out.status.success());
    let out = docraft(&["ingest", "no/such/dir", "-o", s(&dir.path().join("c.jsonl"))])?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("no/such/dir"));
    let out = docraft(&[
        "ingest",
        s(&fixtures()),
        "-o",
        s(&dir.path().join("c.jsonl")),
        "--chunk-size",
        "100",
        "--overlap",
        "100",
    ])?;
    assert!(!out.status.success(), "overlap must be below the chunk size");
    Ok(())
}

/// The subcommands a `--help` text lists under "Commands:", without clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two spaces; wrapped descriptions by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_describes_every_command() -> Result<()> {
    // Every subcommand clap lists, nested ones included, is walked: new ones are covered
    // without touching this test.
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen: Vec<String> = Vec::new();
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = docraft(&args)?;
        let help = String::from_utf8(out.stdout)?;
        let name = std::iter::once("docraft").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        assert!(out.status.success(), "`{name} --help` failed: {}", String::from_utf8_lossy(&out.stderr));
        let usage = help.lines().find(|l| l.starts_with("Usage: ")).unwrap_or_default();
        let usage_names_it = usage
            .strip_prefix("Usage: ")
            .and_then(|u| u.strip_prefix(&name))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
        assert!(usage_names_it, "`{name} --help` usage line: {usage:?}");
        let description = help.lines().next().unwrap_or_default();
        assert!(
            !description.trim().is_empty() && !description.starts_with("Usage"),
            "`{name} --help` has no description"
        );
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(name);
    }
    for known in [
        "docraft ingest",
        "docraft extract",
        "docraft index build",
        "docraft search",
        "docraft generate",
        "docraft raft",
        "docraft train",
        "docraft run",
        "docraft ask",
        "docraft eval",
    ] {
        assert!(seen.iter().any(|s| s == known), "{known} not among {seen:?}");
    }
    let help = String::from_utf8(docraft(&["ingest", "--help"])?.stdout)?;
    for flag in ["--report", "--chunk-size", "--overlap", "--tokenizer", "--include", "--exclude", "--strict"] {
        assert!(help.contains(flag), "{flag} missing from ingest --help");
    }
    Ok(())
}

#[test]
fn ingest_killed_mid_run_resumes_without_loss_or_duplicates() -> Result<()> {
    // Enough distinct documents that the run is still writing when it is killed.
    let dir = tempfile::tempdir()?;
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs)?;
    let base = std::fs::read_to_string(fixtures().join("docs/guia-es.md"))?;
    for i in 0..1500 {
        std::fs::write(docs.join(format!("doc-{i:04}.md")), format!("{base}\n\nDocumento número {i}.\n"))?;
    }
    let args = |out: &Path| {
        vec![
            "ingest".to_string(),
            s(&docs).into(),
            "-o".into(),
            s(out).into(),
            "--quiet".into(),
            "--chunk-size".into(),
            "200..400".into(),
        ]
    };
    let clean = dir.path().join("clean.jsonl");
    assert!(docraft(&args(&clean).iter().map(String::as_str).collect::<Vec<_>>())?.status.success());
    let clean_lines: std::collections::BTreeSet<String> =
        std::fs::read_to_string(&clean)?.lines().map(str::to_string).collect();

    let out = dir.path().join("killed.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_docraft")).args(args(&out)).spawn()?;
    // Kill (SIGKILL) as soon as some chunks are on disk.
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 20_000 && t0.elapsed().as_secs() < 60 {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().ok();
    child.wait()?;
    let partial = std::fs::read_to_string(&out)?.lines().count();
    assert!(partial > 0 && partial < clean_lines.len(), "killed mid-run: {partial} of {} lines", clean_lines.len());

    let resumed = docraft(&args(&out).iter().map(String::as_str).collect::<Vec<_>>())?;
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let text = std::fs::read_to_string(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    let unique: std::collections::BTreeSet<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(unique.len(), lines.len(), "no duplicate chunk after the resume");
    assert_eq!(unique, clean_lines, "the resumed output holds exactly the chunks of an uninterrupted run");
    Ok(())
}

/// Ctrl-C stops ingest after the file at hand, keeps what is written, and the same command
/// completes it to exactly the output of an uninterrupted run.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_ingest_cleanly_and_the_rerun_completes_it() -> anyhow::Result<()> {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir()?;
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs)?;
    for i in 0..1500 {
        let body: String =
            (0..60).map(|j| format!("Line {j} of file {i}: invoices are kept for ten years.\n\n")).collect();
        std::fs::write(docs.join(format!("f{i:04}.md")), format!("# File {i}\n\n{body}"))?;
    }
    let bin = env!("CARGO_BIN_EXE_docraft");
    let full = tmp.path().join("full.jsonl");
    let o = Command::new(bin).args(["ingest", "-q", "--threads", "1", "-o"]).arg(&full).arg(&docs).output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = tmp.path().join("chunks.jsonl");
    let child = Command::new(bin)
        .args(["ingest", "-q", "--threads", "1", "-o"])
        .arg(&out)
        .arg(&docs)
        .stderr(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    while std::fs::metadata(&out).map_or(0, |m| m.len()) == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    let o = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted") && err.contains("run the same command again"), "{err}");
    let partial = std::fs::read_to_string(&out)?;
    let whole = std::fs::read_to_string(&full)?;
    assert!(!partial.is_empty() && partial.len() < whole.len(), "not stopped part-way");
    assert!(partial.ends_with('\n'), "a torn line was left");

    let o = Command::new(bin).args(["ingest", "-q", "--threads", "1", "-o"]).arg(&out).arg(&docs).output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out)?, whole);
    Ok(())
}

#[test]
fn ingest_reads_database_rows_as_documents() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("tickets.db");
    let made = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
                c.execute('CREATE TABLE t (id INTEGER, body TEXT, team TEXT)'); \
                c.executemany('INSERT INTO t VALUES (?,?,?)', [(1,'The printer on floor 2 jams every morning.','it'), \
                (2,'Las vacaciones se piden con un mes de antelación.','rrhh')]); c.commit()",
        ])
        .arg(&db)
        .status()?;
    assert!(made.success(), "python3 could not make the test database");
    let out = dir.path().join("chunks.jsonl");
    let url = format!("sqlite://{}", db.display());
    let args = [
        "ingest",
        "--sql",
        &url,
        "--query",
        "SELECT id, body, team FROM t",
        "--id-column",
        "id",
        "--text-columns",
        "body",
        "--metadata-columns",
        "team",
        "-o",
        s(&out),
    ];
    let run = docraft(&args)?;
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let chunks: Vec<Value> =
        std::fs::read_to_string(&out)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["metadata"]["team"], "rrhh");
    assert_eq!(chunks[1]["metadata"]["language"], "es");
    assert!(chunks[1]["text"].as_str().context("text")?.contains("vacaciones"));
    // Again: nothing new.
    let again = docraft(&args)?;
    assert!(String::from_utf8_lossy(&again.stdout).contains("2 rows unchanged"));
    assert_eq!(std::fs::read_to_string(&out)?.lines().count(), 2);
    // A write is refused by name.
    let bad = docraft(&["ingest", "--sql", &url, "--query", "DELETE FROM t", "-o", s(&out)])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("only a SELECT"));
    Ok(())
}
