//! Ingest throughput on hostile text: files without any whitespace, and one very long line of
//! words without newlines or sentence ends. Chunking such text used to take time quadratic in
//! its length (a 5 MB line took more than 30 s).
//!
//! ```text
//! cargo run --release -p docraft-ingest --example hostile_bench [-- --sizes 1,10,50 --words-mb 10 --prose-mb 10]
//! ```
//!
//! Writes the files to a temporary directory, ingests each one on its own through the library
//! (`Ingest::new(ChunkSettings::default()).run`, the CLI's default chunking) and prints MB/s of
//! input per file, then the time of loading and of chunking measured apart on the same file.
//! `--prose-mb N` adds a file of ordinary prose (short lines, sentences, paragraphs) for
//! comparison.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use docraft_ingest::{AutoLoader, ChunkSettings, Chunker, Ingest, Loader, TextChunker};

/// A tiny deterministic generator (xorshift64*), so every run writes the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `bytes` of letters and digits, no whitespace, no punctuation.
fn write_no_whitespace(path: &Path, bytes: usize) -> Result<()> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut left = bytes;
    while left > 0 {
        buf.clear();
        for _ in 0..left.min(1 << 16) {
            buf.push(ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]);
        }
        f.write_all(&buf)?;
        left -= buf.len();
    }
    f.flush()?;
    Ok(())
}

/// The vocabulary of the generated text.
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

/// `bytes` of Spanish-looking words separated by single spaces: one line, no sentence end.
fn write_one_line_of_words(path: &Path, bytes: usize) -> Result<()> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// `bytes` of ordinary prose for comparison: sentences, lines of about 80 bytes, a blank line
/// every 6 lines.
fn write_prose(path: &Path, bytes: usize) -> Result<()> {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let mut text = String::with_capacity(bytes + 128);
    let (mut line, mut lines, mut sentence) = (0usize, 0usize, 0usize);
    while text.len() < bytes {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        text.push_str(w);
        line += w.len();
        sentence += 1;
        if sentence >= 12 {
            text.push('.');
            sentence = 0;
        }
        if line >= 80 {
            text.push('\n');
            line = 0;
            lines += 1;
            if lines % 6 == 0 {
                text.push('\n');
            }
        } else {
            text.push(' ');
            line += 1;
        }
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mb = |name: &str, default: &str| -> Result<Vec<f64>> {
        arg_value(&args, name)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|s| s.trim().parse::<f64>().with_context(|| format!("{name}: megabytes, comma-separated")))
            .filter(|m| m.as_ref().map_or(true, |m| *m > 0.0))
            .collect()
    };
    let bytes = |mb: f64| (mb * 1e6) as usize;

    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    for m in mb("--sizes", "1,10,50")? {
        let p = dir.path().join(format!("no-whitespace-{m}MB.txt"));
        write_no_whitespace(&p, bytes(m))?;
        files.push(p);
    }
    for m in mb("--words-mb", "10")? {
        let p = dir.path().join(format!("one-line-of-words-{m}MB.txt"));
        write_one_line_of_words(&p, bytes(m))?;
        files.push(p);
    }
    for m in mb("--prose-mb", "0")? {
        let p = dir.path().join(format!("prose-{m}MB.txt"));
        write_prose(&p, bytes(m))?;
        files.push(p);
    }

    let settings = ChunkSettings::default();
    println!("chunking: {} (the CLI's default)", settings.describe());
    println!(
        "{:<32} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "file", "MB", "chunks", "run s", "MB/s", "load s", "chunk s"
    );
    for (i, path) in files.iter().enumerate() {
        let out = dir.path().join(format!("chunks-{i}.jsonl"));
        let report = Ingest::new(settings.clone()).run(&[path], &out, &docraft_core::NoProgress)?;
        let t = &report.totals;
        if t.ok != 1 {
            bail!("{}: not ingested: {:?}", path.display(), report.files);
        }
        // The two stages apart, on the same file.
        let t0 = Instant::now();
        let doc = AutoLoader::new().load_path(path)?;
        let load_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let chunks = TextChunker::new(settings.clone()).chunk(&doc)?;
        let chunk_s = t1.elapsed().as_secs_f64();
        assert_eq!(chunks.len(), t.chunks);
        println!(
            "{:<32} {:>8.1} {:>8} {:>9.2} {:>8.1} {:>9.2} {:>9.2}",
            path.file_name().unwrap().to_string_lossy(),
            t.bytes as f64 / 1e6,
            t.chunks,
            t.seconds,
            t.mb_per_s,
            load_s,
            chunk_s
        );
        std::fs::remove_file(&out)?;
    }
    Ok(())
}
