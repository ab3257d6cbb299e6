//! Hostile input, as a new user (or an upload from the network) gives it: text without any
//! separator, binary files named `.txt`, FIFOs, link loops and unreadable folders inside a
//! walked directory. Each must end in a named outcome, in time linear in its size, while the
//! other files are ingested.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use docraft_core::{Chunk, DocFormat, Document};
use docraft_ingest::{
    AutoLoader, ChunkSettings, FileFilter, FileStatus, Ingest, Loader, Report, SkipReason, SkippedPath, TextChunker,
    discover,
};
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "el",
    "equipo",
    "revisa",
    "los",
    "contratos",
    "cada",
    "lunes",
    "con",
    "la",
    "dirección",
    "según",
    "política",
    "interna",
    "año",
    "informe",
    "datos",
    "proveedor",
    "factura",
    "plazo",
    "acuerdo",
];

/// `n` bytes of letters and digits: no whitespace, no punctuation, no line break.
fn no_whitespace(n: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = Rng(7);
    (0..n).map(|_| char::from(alphabet[(rng.next() % alphabet.len() as u64) as usize])).collect()
}

/// About `n` bytes of words separated by spaces, in one line without a sentence end.
fn one_line_of_words(n: usize) -> String {
    let mut rng = Rng(11);
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}

/// About `n` bytes of prose: sentences, lines of `line` bytes or so, a blank line every
/// `para` lines.
fn prose(n: usize, line: usize, para: usize) -> String {
    prose_of(WORDS, n, line, para)
}

fn prose_of(words: &[&str], n: usize, line: usize, para: usize) -> String {
    let mut rng = Rng(13);
    let mut s = String::with_capacity(n + 128);
    let (mut col, mut lines, mut count) = (0, 0, 0);
    while s.len() < n {
        let w = rng.pick(words);
        s.push_str(w);
        col += w.len();
        count += 1;
        if count % 11 == 0 {
            s.push('.');
        }
        if col >= line {
            s.push('\n');
            col = 0;
            lines += 1;
            if lines % para == 0 {
                s.push('\n');
            }
        } else {
            s.push(' ');
            col += 1;
        }
    }
    s
}

fn doc(format: DocFormat, text: String) -> Document {
    let raw = text.clone().into_bytes();
    Document::new("hostile.txt", format, &raw, text)
}

/// Every chunk fits, rebuilds its text, and the chunks run over the whole text in order:
/// each starts after the previous one started and no later than it ended (no gap).
fn check_cover(doc: &Document, chunks: &[Chunk], settings: &ChunkSettings) {
    assert!(!chunks.is_empty());
    assert_eq!(chunks[0].span.start, 0);
    assert_eq!(chunks.last().unwrap().span.end, doc.text.len());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(doc.slice(c.span), Some(c.text.as_str()), "chunk {i} rebuilds its span");
        let size = settings.sizer().size(&c.text);
        assert!(size <= settings.max(), "chunk {i}: {size} chars, over {}", settings.max());
        assert_eq!((c.chunk_index, c.chunk_count), (i, chunks.len()));
    }
    for (i, w) in chunks.windows(2).enumerate() {
        let (a, b) = (w[0].span, w[1].span);
        assert!(b.start > a.start, "chunk {} starts after chunk {i}", i + 1);
        // Only whitespace may lie between two chunks (the splitter trims it).
        let gap = doc.text.get(a.end..b.start).unwrap_or_default();
        assert!(gap.trim().is_empty(), "text lost between chunks {i} and {}: {gap:?}", i + 1);
    }
}

/// Issue 15, item 7.1: 2 MB without any whitespace used to take a minute (time quadratic in
/// the length); the chunker now hands text-splitter windows of bounded size, so the text it
/// is handed in all is a small multiple of the document (the old chunker handed the whole
/// text, and text-splitter scanned the rest of it again for every chunk).
#[test]
fn two_megabytes_without_whitespace() {
    let settings = ChunkSettings::default();
    let doc = doc(DocFormat::Text, no_whitespace(2_000_000));
    let (chunks, work) = TextChunker::new(settings.clone()).chunk_with_work(&doc).unwrap();
    check_cover(&doc, &chunks, &settings);
    // Overlap as designed: each chunk starts 100 characters (here bytes) before the previous ends.
    assert!(chunks.windows(2).all(|w| w[0].span.end - w[1].span.start == settings.overlap()));
    assert!(work.windows > 100, "{work:?}");
    assert!(work.largest_window <= 8 * settings.max() * 4, "{work:?}");
    assert!(work.bytes < doc.text.len() * 3 / 2, "{work:?}");
}

/// One line of words with no sentence end: windows are cut inside the line, but chunks still
/// break between words, as text-splitter does on the whole line.
#[test]
fn one_long_line_of_words() {
    let settings = ChunkSettings::default();
    let doc = doc(DocFormat::Text, one_line_of_words(1_000_000));
    let (chunks, work) = TextChunker::new(settings.clone()).chunk_with_work(&doc).unwrap();
    check_cover(&doc, &chunks, &settings);
    assert!(work.bytes < doc.text.len() * 3 / 2, "{work:?}");
    let text = doc.text.as_bytes();
    for c in &chunks {
        let (s, e) = (c.span.start, c.span.end);
        assert!(s == 0 || text[s - 1] == b' ', "chunk at {s} starts inside a word");
        assert!(e == text.len() || text[e] == b' ', "chunk ending at {e} ends inside a word");
        assert!(settings.sizer().size(&c.text) >= settings.min() || e == text.len(), "chunk at {s} is short");
    }
}

fn config(settings: &ChunkSettings) -> ChunkConfig<text_splitter::Characters> {
    ChunkConfig::new(settings.min()..settings.max() + 1).with_overlap(settings.overlap()).unwrap()
}

/// The spans text-splitter gives over the whole text in one piece.
fn whole(doc: &Document, settings: &ChunkSettings) -> Vec<(usize, usize)> {
    match doc.format {
        DocFormat::Markdown => {
            MarkdownSplitter::new(config(settings)).chunk_indices(&doc.text).map(|(i, s)| (i, i + s.len())).collect()
        }
        _ => TextSplitter::new(config(settings)).chunk_indices(&doc.text).map(|(i, s)| (i, i + s.len())).collect(),
    }
}

fn windowed(doc: &Document, settings: &ChunkSettings) -> (Vec<(usize, usize)>, docraft_ingest::SplitWork) {
    let (chunks, work) = TextChunker::new(settings.clone()).chunk_with_work(doc).unwrap();
    (chunks.iter().map(|c| (c.span.start, c.span.end)).collect(), work)
}

/// Ordinary documents get exactly the chunks text-splitter gives in one piece: small ones are
/// one window, and longer ones (here 400 kB of prose, and paragraphs of 20 kB on one line
/// each) are cut into windows without changing a chunk.
#[test]
fn ordinary_text_chunks_as_in_one_piece() {
    let settings = ChunkSettings::new(300..=600).and_then(|s| s.with_overlap(50)).unwrap();
    let small = doc(DocFormat::Text, prose(100_000, 80, 6));
    let (spans, work) = windowed(&small, &settings);
    assert_eq!(work.windows, 1);
    assert_eq!(spans, whole(&small, &settings));

    let greek = ["η", "ομάδα", "ελέγχει", "τις", "συμβάσεις", "κάθε", "Δευτέρα", "με", "διεύθυνση", "έκθεση"];
    for (text, what) in [
        (prose(400_000, 80, 6), "400 kB of prose"),
        (prose(200_000, 20_000, 1), "paragraphs of 20 kB on one line"),
        (prose_of(&greek, 200_000, 30_000, 1), "Greek (2 bytes a letter), paragraphs of 30 kB on one line"),
    ] {
        let d = doc(DocFormat::Text, text);
        let (spans, work) = windowed(&d, &settings);
        assert!(work.windows >= 2, "{what}: {work:?}");
        assert_eq!(spans, whole(&d, &settings), "{what}");
    }
    // Even text without whitespace, cut into many windows.
    let tight = ChunkSettings::new(100).unwrap();
    let blob = doc(DocFormat::Text, no_whitespace(60_000));
    let (spans, work) = windowed(&blob, &tight);
    assert!(work.windows > 10, "{work:?}");
    assert_eq!(spans, whole(&blob, &tight), "no whitespace");
    let md = doc(DocFormat::Markdown, format!("# Informe\n\n{}", prose(300_000, 80, 6)));
    let (spans, work) = windowed(&md, &settings);
    assert!(work.windows >= 2, "{work:?}");
    assert_eq!(spans, whole(&md, &settings), "Markdown");
}

/// The whole run on a file without whitespace: ingested, every chunk within the capacity.
#[test]
fn ingest_run_on_a_file_without_whitespace() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("blob.txt");
    std::fs::write(&path, no_whitespace(500_000))?;
    let settings = ChunkSettings::default();
    let out = dir.path().join("chunks.jsonl");
    let report = Ingest::new(settings.clone()).run(&[&path], &out, &docraft_core::NoProgress)?;
    assert_eq!(report.totals.ok, 1, "{:?}", report.files);
    let (chunks, _) = docraft_core::jsonl::read_all::<Chunk>(&out)?;
    assert_eq!(chunks.len(), report.totals.chunks);
    let doc = AutoLoader::new().load_path(&path)?;
    check_cover(&doc, &chunks, &settings);
    Ok(())
}

fn good_file(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("ok.txt");
    std::fs::write(&p, "El equipo revisa los contratos cada lunes. La dirección firma el acuerdo.\n")?;
    Ok(p)
}

fn run(dir: &Path) -> Result<Report> {
    let out = dir.join("out").join("chunks.jsonl");
    Ok(Ingest::new(ChunkSettings::new(100..=200)?).run(&[dir], &out, &docraft_core::NoProgress)?)
}

/// Issue 15, item 7.2: random bytes named `.txt` used to be "ok" with hundreds of chunks of
/// mojibake; binary content is now a typed failure naming the file, and the run goes on.
#[test]
fn random_bytes_are_binary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    good_file(dir.path())?;
    let mut rng = Rng(17);
    let garbage: Vec<u8> = (0..200_000).map(|_| (rng.next() >> 24) as u8).collect();
    std::fs::write(dir.path().join("garbage.txt"), &garbage)?;
    // Without NUL bytes: control characters give it away.
    let no_nul: Vec<u8> = garbage.iter().map(|&b| b.max(1)).collect();
    std::fs::write(dir.path().join("noise.md"), &no_nul)?;

    let report = run(dir.path())?;
    for (name, why) in [("garbage.txt", "NUL character"), ("noise.md", "control characters")] {
        let f = report.files.iter().find(|f| f.path.ends_with(name)).context("in the report")?;
        assert_eq!(f.status, FileStatus::Failed, "{name}");
        assert_eq!(f.kind.as_deref(), Some("binary"), "{name}");
        let reason = f.reason.as_deref().unwrap_or_default();
        assert!(reason.contains(name) && reason.contains("binary content") && reason.contains(why), "{reason}");
        assert_eq!(f.chunks, 0);
    }
    assert_eq!((report.totals.ok, report.totals.failed), (1, 2));
    Ok(())
}

/// Real Latin-1 / Windows-1252 Spanish (é, ñ, ¿ as single bytes) still loads.
#[test]
fn latin1_spanish_still_loads() -> Result<()> {
    let text = "\u{bf}Qu\u{e9} a\u{f1}o es? La se\u{f1}ora Pe\u{f1}a lleg\u{f3} el mi\u{e9}rcoles.\r\n".repeat(50);
    let bytes: Vec<u8> = text.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect();
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8: the Windows-1252 fallback reads it");
    let doc = AutoLoader::new().load(Path::new("acta.txt"), &bytes)?;
    assert!(doc.text.starts_with("¿Qué año es? La señora Peña llegó el miércoles.\n"));
    assert_eq!(doc.metadata.fields.get("encoding").and_then(|v| v.as_str()), Some("windows-1252"));
    let md = AutoLoader::new().load(Path::new("acta.md"), &bytes)?;
    assert!(md.text.contains("señora Peña"));
    Ok(())
}

fn mkfifo(path: &Path) -> Result<()> {
    let status = std::process::Command::new("mkfifo").arg(path).status().context("running mkfifo")?;
    anyhow::ensure!(status.success(), "mkfifo {} failed", path.display());
    Ok(())
}

fn reason_of<'a>(skipped: &'a [SkippedPath], path: &Path) -> Option<&'a SkipReason> {
    skipped.iter().find(|s| s.path == path).map(|s| &s.reason)
}

/// Issue 15, item 7.3: a FIFO, symbolic link loops, a broken link and an unreadable folder in
/// a walked directory are listed with the reason, and the other files are ingested. Hidden
/// entries and files the filter leaves out are not listed.
#[test]
fn discover_lists_what_it_cannot_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("in");
    std::fs::create_dir(&root)?;
    let ok = good_file(&root)?;
    let fifo = root.join("pipe.txt");
    mkfifo(&fifo)?;
    mkfifo(&root.join("pipe.bin"))?; // not a name the filter takes: not listed
    mkfifo(&root.join(".hidden.txt"))?; // hidden: not listed
    let dir_loop = root.join("sub").join("back");
    std::fs::create_dir(root.join("sub"))?;
    std::os::unix::fs::symlink("..", &dir_loop)?;
    let self_loop = root.join("self.md");
    std::os::unix::fs::symlink("self.md", &self_loop)?;
    let broken = root.join("gone.md");
    std::os::unix::fs::symlink("nowhere.md", &broken)?;
    let locked = root.join("locked");
    std::fs::create_dir(&locked)?;
    std::fs::write(locked.join("secret.txt"), "no se puede leer")?;
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))?;
    // Root (as in CI containers) reads any folder whatever its permission bits.
    let privileged = std::fs::read_dir(&locked).is_ok();

    let found = discover(&[&root], &FileFilter::default())?;
    let listed: Vec<String> = found.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(reason_of(&found.skipped, &fifo), Some(&SkipReason::NotRegularFile("a FIFO (named pipe)".into())));
    assert_eq!(reason_of(&found.skipped, &dir_loop), Some(&SkipReason::SymlinkLoop), "{listed:?}");
    assert_eq!(reason_of(&found.skipped, &self_loop), Some(&SkipReason::SymlinkLoop), "{listed:?}");
    assert_eq!(reason_of(&found.skipped, &broken), Some(&SkipReason::BrokenSymlink), "{listed:?}");
    if privileged {
        eprintln!("note: running with privileges that read a chmod 000 folder; its check is left out");
        assert!(found.files.contains(&locked.join("secret.txt")));
    } else {
        assert_eq!(reason_of(&found.skipped, &locked), Some(&SkipReason::PermissionDenied), "{listed:?}");
    }
    assert_eq!(found.skipped.len(), if privileged { 4 } else { 5 }, "nothing else is listed: {listed:?}");
    assert!(found.files.contains(&ok));
    assert!(listed.iter().any(|l| l.ends_with("pipe.txt: not a regular file (a FIFO (named pipe))")), "{listed:?}");

    // The run completes (nothing blocks on the FIFO), ingests the good file and reports the rest.
    let report = run(&root)?;
    assert_eq!(report.skipped_paths, found.skipped);
    assert_eq!(report.totals.failed, 0);
    assert_eq!(report.totals.ok, if privileged { 2 } else { 1 });
    let json = serde_json::to_string(&report)?;
    assert!(json.contains(r#""reason":{"not_regular_file":"a FIFO (named pipe)"}"#), "{json}");
    assert!(json.contains(r#""reason":"symlink_loop""#), "{json}");
    let back: Report = serde_json::from_str(&json)?;
    assert_eq!(back.skipped_paths, report.skipped_paths);

    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// A FIFO given by name fails with a clear error instead of blocking the run forever.
#[test]
fn fifo_given_by_name_fails() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ok = good_file(dir.path())?;
    let fifo = dir.path().join("pipe.txt");
    mkfifo(&fifo)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (f, o) = (fifo.clone(), ok.clone());
    std::thread::spawn(move || {
        let out = f.with_file_name("chunks.jsonl");
        let _ = tx.send(Ingest::new(ChunkSettings::new(100..=200).unwrap()).run(
            &[&f, &o],
            &out,
            &docraft_core::NoProgress,
        ));
    });
    // A guard against hanging, not a measure of speed: reading a FIFO blocks until a writer comes.
    let report = rx.recv_timeout(std::time::Duration::from_secs(120)).context("the run blocked on the FIFO")??;
    let f = report.files.iter().find(|f| f.path.ends_with("pipe.txt")).context("the FIFO is reported")?;
    assert_eq!(f.status, FileStatus::Failed);
    assert_eq!(f.kind.as_deref(), Some("not_regular_file"));
    assert!(f.reason.as_deref().unwrap_or_default().contains("pipe.txt: not a regular file (a FIFO"), "{f:?}");
    assert_eq!(report.totals.ok, 1);
    // The loader refuses it the same way.
    let err = AutoLoader::new().load_path(&fifo).unwrap_err();
    assert_eq!(err.kind(), "not_regular_file");
    Ok(())
}

/// Reports written before `skipped_paths` existed still parse.
#[test]
fn old_reports_parse() -> Result<()> {
    let mut v = serde_json::to_value(Report::default())?;
    v.as_object_mut().context("object")?.remove("skipped_paths");
    let r: Report = serde_json::from_value(v)?;
    assert!(r.skipped_paths.is_empty());
    Ok(())
}
