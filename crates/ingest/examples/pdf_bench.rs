//! PDF extraction benchmark: docraft against `pdftotext` (poppler) on the same files, in the
//! same run.
//!
//! ```text
//! cargo run --release -p docraft-ingest --example pdf_bench -- DIR [--reps N] [--verbose]
//! ```
//!
//! Takes every PDF under DIR that `pdftotext` reads (exit 0), as the peer figures do, and
//! reports:
//! - throughput: pages/s and MB/s of extracted text, docraft in-process one file after another
//!   (1 core) and over all cores (rayon), `pdftotext -layout` one process per file (1 core) and
//!   two at a time (2 cores); median of N repetitions;
//! - similarity of docraft's text to pdftotext's, per file, then the mean (docraft run with
//!   `keep_page_furniture`, since pdftotext keeps headers and page numbers): `ratio` is the Indel
//!   similarity 2·LCS/(|a|+|b|) over characters (what rapidfuzz's `fuzz.ratio` computes) and
//!   `token_f1` the F1 of the whitespace-token multisets, both after NFKC normalization (so
//!   `ﬁ`/`fi` and composed/decomposed accents compare equal) and collapsing whitespace runs
//!   to one space. Against `pdftotext -layout` (how the peer references were made) and against
//!   plain `pdftotext` (reading order).
//! - files that docraft could not read, with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use docraft_ingest::{AutoLoader, Loader};
use rayon::prelude::*;
use unicode_normalization::UnicodeNormalization;

fn pdfs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("pdf")))
        .collect();
    v.sort();
    v
}

fn pdftotext(path: &Path, layout: bool, out: &Path) -> Result<bool> {
    let mut cmd = Command::new("pdftotext");
    if layout {
        cmd.arg("-layout");
    }
    let status = cmd.arg(path).arg(out).stderr(std::process::Stdio::null()).status()?;
    Ok(status.success())
}

fn norm(s: &str) -> Vec<char> {
    let n: String = s.nfkc().collect();
    let mut out = Vec::with_capacity(n.len());
    for w in n.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars());
    }
    out
}

/// Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyrö).
fn lcs(a: &[char], b: &[char]) -> usize {
    let (a, b) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if a.is_empty() {
        return 0;
    }
    let words = a.len().div_ceil(64);
    let mut peq: HashMap<char, Vec<u64>> = HashMap::new();
    for (i, &c) in a.iter().enumerate() {
        peq.entry(c).or_insert_with(|| vec![0; words])[i / 64] |= 1 << (i % 64);
    }
    let mut v = vec![!0u64; words];
    for c in b {
        let Some(m) = peq.get(c) else { continue };
        let mut carry = 0u64;
        for (vi, &mi) in v.iter_mut().zip(m) {
            let u = *vi & mi;
            let (s1, c1) = vi.overflowing_add(u);
            let (s2, c2) = s1.overflowing_add(carry);
            carry = u64::from(c1 || c2);
            *vi = s2 | (*vi & !mi);
        }
    }
    let tail = a.len() % 64;
    let mut zeros = 0;
    for (i, w) in v.iter().enumerate() {
        let w = if i == words - 1 && tail != 0 { *w | (!0u64 << tail) } else { *w };
        zeros += w.count_zeros() as usize;
    }
    zeros
}

fn ratio(a: &[char], b: &[char]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * lcs(a, b) as f64 / (a.len() + b.len()) as f64
}

fn token_f1(a: &str, b: &str) -> f64 {
    let count = |s: &str| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for t in s.nfkc().collect::<String>().split_whitespace() {
            *m.entry(t.to_string()).or_default() += 1;
        }
        m
    };
    let (r, h) = (count(a), count(b));
    let (nr, nh): (usize, usize) = (r.values().sum(), h.values().sum());
    if nr == 0 && nh == 0 {
        return 1.0;
    }
    let common: usize = r.iter().map(|(t, n)| (*n).min(h.get(t).copied().unwrap_or(0))).sum();
    if common == 0 {
        return 0.0;
    }
    let (p, rc) = (common as f64 / nh as f64, common as f64 / nr as f64);
    2.0 * p * rc / (p + rc)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut reps = 3usize;
    let mut verbose = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().context("--reps N")?.parse()?,
            "--verbose" => verbose = true,
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let dir = dir.context("usage: pdf_bench DIR [--reps N] [--verbose]")?;
    if Command::new("pdftotext").arg("-v").output().is_err() {
        bail!("pdftotext not found: apt-get install poppler-utils (scripts/setup.sh does)");
    }
    let tmp = tempfile::tempdir()?;
    let all = pdfs(&dir);

    // The set: files pdftotext reads. References from both pdftotext modes.
    let mut files = Vec::new();
    let mut refs = Vec::new();
    for (i, p) in all.iter().enumerate() {
        let (lay, raw) = (tmp.path().join(format!("{i}.layout.txt")), tmp.path().join(format!("{i}.txt")));
        if pdftotext(p, true, &lay)? && pdftotext(p, false, &raw)? {
            let read = |f: &Path| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
            refs.push((read(&lay), read(&raw)));
            files.push(p.clone());
        }
    }
    let pages: usize = files.iter().map(|p| lopdf::Document::load(p).map(|d| d.get_pages().len()).unwrap_or(0)).sum();
    let bytes: u64 = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    eprintln!(
        "{} PDFs under {}, {} read by pdftotext: {pages} pages, {:.1} MB",
        all.len(),
        dir.display(),
        files.len(),
        bytes as f64 / 1e6
    );

    let extract = |p: &PathBuf| AutoLoader::new().load_path(p);
    // pdftotext keeps running headers, footers and page numbers; compare like with like.
    let extract_kept = |p: &PathBuf| AutoLoader::new().keep_page_furniture(true).load_path(p);
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    // Warm-up (page cache), then timed repetitions.
    let docs: Vec<_> = files.iter().map(extract).collect();
    let kept: Vec<_> = files.iter().map(extract_kept).collect();
    let text_bytes: usize = docs.iter().filter_map(|d| d.as_ref().ok()).map(|d| d.text.len()).sum();
    let ours_seq = median((0..reps).map(|_| time(&|| files.iter().for_each(|p| drop(extract(p))))).collect());
    let ours_par = median((0..reps).map(|_| time(&|| files.par_iter().for_each(|p| drop(extract(p))))).collect());
    let out = tmp.path().join("out.txt");
    let ptt_seq =
        median((0..reps).map(|_| time(&|| files.iter().for_each(|p| drop(pdftotext(p, true, &out))))).collect());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let ptt_par = median(
        (0..reps)
            .map(|_| {
                time(&|| {
                    pool.install(|| {
                        files.par_iter().enumerate().for_each(|(i, p)| {
                            drop(pdftotext(p, true, &tmp.path().join(format!("par{i}.txt"))));
                        });
                    });
                })
            })
            .collect(),
    );

    // Similarity over the files both read.
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (((p, d), k), (lay, raw)) in files.iter().zip(&docs).zip(&kept).zip(&refs) {
        match (d, k) {
            (Ok(doc), Ok(kept)) => {
                let ours = norm(&kept.text);
                let r_lay = ratio(&norm(lay), &ours);
                let r_raw = ratio(&norm(raw), &ours);
                let f1 = token_f1(lay, &kept.text);
                let f1_default = token_f1(lay, &doc.text);
                if verbose {
                    println!("{r_lay:.3} {r_raw:.3} {f1:.3} {f1_default:.3} {}", p.display());
                }
                rows.push((r_lay, r_raw, f1, f1_default));
            }
            (Err(e), _) | (_, Err(e)) => failures.push(format!("{}: {e}", p.display())),
        }
    }
    let col = |k: usize| -> Vec<f64> { rows.iter().map(|r| [r.0, r.1, r.2, r.3][k]).collect() };
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    println!(
        "files {} (pdftotext exit 0), pages {pages}, input {:.1} MB, docraft text {:.1} MB",
        files.len(),
        bytes as f64 / 1e6,
        text_bytes as f64 / 1e6
    );
    println!("{:<34} {:>9} {:>10} {:>12}", "", "seconds", "pages/s", "text MB/s");
    let line = |name: &str, s: f64| {
        println!("{name:<34} {s:>9.2} {:>10.0} {:>12.1}", pages as f64 / s, text_bytes as f64 / 1e6 / s)
    };
    line("docraft, 1 core", ours_seq);
    line(&format!("docraft, {cpus} threads"), ours_par);
    line("pdftotext -layout, 1 process", ptt_seq);
    line("pdftotext -layout, 2 processes", ptt_par);
    println!(
        "similarity to pdftotext over {} files (page furniture kept, as pdftotext does): ratio (-layout) {:.4}, \
         ratio (reading order) {:.4}, token F1 {:.4}; token F1 with docraft's default cleaning {:.4}",
        rows.len(),
        mean(&col(0)),
        mean(&col(1)),
        mean(&col(2)),
        mean(&col(3))
    );
    println!("docraft could not read {} of them:", failures.len());
    for f in &failures {
        println!("  {f}");
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "pdf_extract", "files": files.len(), "pages": pages, "reps": reps,
            "docraft_seq_pages_per_s": pages as f64 / ours_seq, "docraft_par_pages_per_s": pages as f64 / ours_par,
            "pdftotext_seq_pages_per_s": pages as f64 / ptt_seq, "pdftotext_par2_pages_per_s": pages as f64 / ptt_par,
            "ratio_layout": mean(&col(0)), "ratio_reading_order": mean(&col(1)), "token_f1": mean(&col(2)), "token_f1_default": mean(&col(3)),
            "failed": failures.len(),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_matches_the_textbook_algorithm() {
        fn slow(a: &[char], b: &[char]) -> usize {
            let mut dp = vec![vec![0usize; b.len() + 1]; a.len() + 1];
            for i in 1..=a.len() {
                for j in 1..=b.len() {
                    dp[i][j] = if a[i - 1] == b[j - 1] { dp[i - 1][j - 1] + 1 } else { dp[i - 1][j].max(dp[i][j - 1]) };
                }
            }
            dp[a.len()][b.len()]
        }
        let cases = [("", "abc"), ("kitten", "sitting"), ("año señor", "ano senor"), ("abc", "abc")];
        for (a, b) in cases {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            assert_eq!(lcs(&a, &b), slow(&a, &b));
        }
        // Across several 64-bit words.
        let a: Vec<char> = "the quick brown fox jumps over the lazy dog ".repeat(5).chars().collect();
        let b: Vec<char> = "a quick brown dog jumps over the lazy fox! ".repeat(5).chars().collect();
        assert_eq!(lcs(&a, &b), slow(&a, &b));
        assert!((ratio(&a, &a) - 1.0).abs() < 1e-12);
    }
}
