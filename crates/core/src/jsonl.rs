//! Append-only JSONL files that survive crashes.
//!
//! A record is one line of JSON ending in `\n`. Writers append whole lines and flush them
//! to the operating system after every write, so a process killed at any moment leaves at
//! most one incomplete *last* line (a "torn" line). Readers report a torn last line instead
//! of failing; [`JsonlWriter::append`] cuts it off (keeping its bytes in `<file>.torn`) so
//! the next run continues from the last complete record. [`scan`] collects the keys of what
//! is already written so a resumed run can skip it.
//!
//! ```
//! # fn main() -> Result<(), docraft_core::Error> {
//! use docraft_core::jsonl::{JsonlWriter, read_all};
//! let dir = std::env::temp_dir().join(format!("jsonl-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).ok();
//! let path = dir.join("out.jsonl");
//! let mut w = JsonlWriter::create(&path)?;
//! w.write(&serde_json::json!({"id": 1}))?;
//! drop(w);
//! let (mut w, torn) = JsonlWriter::<serde_json::Value>::append(&path)?;
//! assert!(torn.is_none());
//! w.write(&serde_json::json!({"id": 2}))?;
//! let (records, torn) = read_all::<serde_json::Value>(&path)?;
//! assert_eq!(records.len(), 2);
//! assert!(torn.is_none());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::hash::Hash;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The file beside `out` for one part of its output: `dir/qa.jsonl` and `rejected` give
/// `dir/qa.rejected.jsonl`. Every stage names its side files this way.
#[must_use]
pub fn sibling(out: &Path, part: &str) -> PathBuf {
    let stem = out.file_stem().map_or_else(|| "out".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.{part}.jsonl"))
}

/// An incomplete last line found in a JSONL file (the trace of a run that was killed
/// while writing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// The file.
    pub path: PathBuf,
    /// Its 1-based line number.
    pub line: usize,
    /// How many bytes it had.
    pub bytes: usize,
    /// Where its bytes were saved when a writer cut it off (`<file>.torn`).
    pub saved_to: Option<PathBuf>,
}

impl std::fmt::Display for TornLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: incomplete last line ({} bytes) ignored", self.path.display(), self.line, self.bytes)?;
        if let Some(s) = &self.saved_to {
            write!(f, "; its bytes were kept in {}", s.display())?;
        }
        Ok(())
    }
}

/// Writes records as JSON lines, one `write` (and flush) per call.
#[derive(Debug)]
pub struct JsonlWriter<T> {
    file: File,
    path: PathBuf,
    records: u64,
    buf: Vec<u8>,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize> JsonlWriter<T> {
    /// Creates (or truncates) `path`, creating its parent directories.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        create_parent(path)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::from_file(file, path))
    }

    /// Opens `path` for appending (creating it if missing). An incomplete last line left by
    /// a killed run is cut off, its bytes kept in `<path>.torn`, and reported; a complete
    /// last record that only lacks its newline gets one.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn append(path: impl AsRef<Path>) -> Result<(Self, Option<TornLine>)> {
        let path = path.as_ref();
        create_parent(path)?;
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(path).map_err(|e| Error::io(path, e))?;
        let torn = repair_tail(&mut file, path)?;
        Ok((Self::from_file(file, path), torn))
    }

    fn from_file(file: File, path: &Path) -> Self {
        Self { file, path: path.to_path_buf(), records: 0, buf: Vec::new(), _record: PhantomData }
    }

    /// Appends one record and flushes it to the operating system.
    ///
    /// # Errors
    /// [`Error::Serialize`] if the record cannot be turned into JSON, [`Error::Io`] if the
    /// write fails.
    pub fn write(&mut self, record: &T) -> Result<()> {
        self.write_all(std::iter::once(record))
    }

    /// Appends several records with a single write, so they land together or (if the process
    /// dies mid-write) leave at most one torn line.
    ///
    /// # Errors
    /// As [`JsonlWriter::write`].
    pub fn write_all<'a>(&mut self, records: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        self.buf.clear();
        let mut n = 0;
        for r in records {
            serde_json::to_writer(&mut self.buf, r)
                .map_err(|e| Error::Serialize { path: self.path.clone(), source: e })?;
            self.buf.push(b'\n');
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.records += n;
        Ok(())
    }

    /// Forces written records to disk (fsync).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Records written through this writer.
    #[must_use]
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// The file written to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// Cuts an incomplete last line off `file`; returns what was cut.
fn repair_tail(file: &mut File, path: &Path) -> Result<Option<TornLine>> {
    let io = |e| Error::io(path, e);
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(None);
    }
    // Find the last newline, reading backwards in blocks.
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut last_nl: Option<u64> = None;
    let mut block = Vec::new();
    while end > 0 && last_nl.is_none() {
        let start = end.saturating_sub(BLOCK);
        block.resize(usize::try_from(end - start).unwrap_or(0), 0);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.read_exact(&mut block).map_err(io)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            last_nl = Some(start + i as u64);
        }
        end = start;
    }
    let tail_start = last_nl.map_or(0, |i| i + 1);
    if tail_start == len {
        return Ok(None);
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(tail_start)).map_err(io)?;
    file.read_to_end(&mut tail).map_err(io)?;
    if tail.iter().all(u8::is_ascii_whitespace) {
        file.set_len(tail_start).map_err(io)?;
        return Ok(None);
    }
    if serde_json::from_slice::<serde_json::Value>(&tail).is_ok() {
        // A whole record missing only its newline: complete it.
        file.write_all(b"\n").map_err(io)?;
        return Ok(None);
    }
    let saved =
        path.with_file_name(format!("{}.torn", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let mut keep = OpenOptions::new().create(true).append(true).open(&saved).map_err(|e| Error::io(&saved, e))?;
    keep.write_all(&tail).and_then(|()| keep.write_all(b"\n")).map_err(|e| Error::io(&saved, e))?;
    file.set_len(tail_start).map_err(io)?;
    let line = count_lines(file, tail_start).map_err(io)? + 1;
    Ok(Some(TornLine { path: path.to_path_buf(), line, bytes: tail.len(), saved_to: Some(saved) }))
}

fn count_lines(file: &mut File, upto: u64) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::new(file.take(upto));
    let mut n = 0;
    let mut buf = Vec::new();
    while r.read_until(b'\n', &mut buf)? > 0 {
        n += 1;
        buf.clear();
    }
    Ok(n)
}

/// Reads records from a JSONL file, one per line; blank lines are skipped.
///
/// Iterating yields each record or the error of a malformed line (naming file and line).
/// An incomplete last line (no newline at the end and not valid JSON) ends the iteration
/// and is reported by [`JsonlReader::torn`] instead.
#[derive(Debug)]
pub struct JsonlReader<T> {
    reader: BufReader<File>,
    path: PathBuf,
    line: usize,
    buf: Vec<u8>,
    torn: Option<TornLine>,
    done: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, file),
            path: path.to_path_buf(),
            line: 0,
            buf: Vec::new(),
            torn: None,
            done: false,
            _record: PhantomData,
        })
    }

    /// The torn last line, once iteration has reached it.
    #[must_use]
    pub fn torn(&self) -> Option<&TornLine> {
        self.torn.as_ref()
    }

    /// The file being read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: DeserializeOwned> Iterator for JsonlReader<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            let n = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::io(&self.path, e)));
                }
            };
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<T>(&self.buf) {
                Ok(r) => return Some(Ok(r)),
                Err(e) if complete || serde_json::from_slice::<serde_json::Value>(&self.buf).is_ok() => {
                    return Some(Err(Error::Record { path: self.path.clone(), line: self.line, source: e }));
                }
                Err(_) => {
                    self.done = true;
                    self.torn = Some(TornLine {
                        path: self.path.clone(),
                        line: self.line,
                        bytes: self.buf.len(),
                        saved_to: None,
                    });
                }
            }
        }
        None
    }
}

/// Reads every record of `path`; a torn last line is returned beside them, not as an error.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, [`Error::Record`] for a malformed complete line.
pub fn read_all<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<(Vec<T>, Option<TornLine>)> {
    let mut reader = JsonlReader::open(path)?;
    let records = reader.by_ref().collect::<Result<Vec<T>>>()?;
    Ok((records, reader.torn))
}

/// What a previous run already wrote: the keys of its records.
#[derive(Debug, Clone)]
pub struct Scan<K> {
    /// Keys of every complete record.
    pub keys: HashSet<K>,
    /// Number of complete records.
    pub records: usize,
    /// An incomplete last line, if the previous run was killed mid-write.
    pub torn: Option<TornLine>,
}

impl<K> Default for Scan<K> {
    fn default() -> Self {
        Self { keys: HashSet::new(), records: 0, torn: None }
    }
}

/// Collects `key(record)` for every record of `path`, so a resumed run can skip them.
/// A missing file is an empty scan.
///
/// # Errors
/// [`Error::Io`] if the file exists but cannot be read, [`Error::Record`] for a malformed
/// complete line.
pub fn scan<T, K, F>(path: impl AsRef<Path>, mut key: F) -> Result<Scan<K>>
where
    T: DeserializeOwned,
    K: Eq + Hash,
    F: FnMut(&T) -> K,
{
    let path = path.as_ref();
    if !path.exists() {
        return Ok(Scan::default());
    }
    let mut reader = JsonlReader::<T>::open(path)?;
    let mut out = Scan::default();
    for r in reader.by_ref() {
        out.keys.insert(key(&r?));
        out.records += 1;
    }
    out.torn = reader.torn;
    Ok(out)
}

/// Keeps only the records of `path` for which `keep` is true; the others are moved to
/// `<path>.interrupted` (appended, so nothing is lost). The file is rewritten through a
/// temporary sibling and renamed over, so a crash leaves either the old or the new file.
/// Does nothing (and rewrites nothing) when every record is kept or the file is missing.
/// Returns how many records were moved out. An incomplete last line is treated as not kept.
///
/// A resumed run uses this to roll back the records of a unit of work that was interrupted
/// before it was marked done, so redoing that unit cannot duplicate them.
///
/// # Errors
/// [`Error::Io`] or [`Error::Record`] naming the file.
pub fn retain<T, F>(path: impl AsRef<Path>, mut keep: F) -> Result<usize>
where
    T: DeserializeOwned,
    F: FnMut(&T) -> bool,
{
    let path = path.as_ref();
    if !path.exists() {
        return Ok(0);
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut kept = Vec::with_capacity(text.len());
    let mut dropped = Vec::new();
    let mut moved = 0;
    for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let complete = line.ends_with(b"\n");
        let keep_it = match serde_json::from_slice::<T>(body) {
            Ok(r) => complete && keep(&r),
            Err(_) if !complete => false,
            Err(e) => return Err(Error::Record { path: path.to_path_buf(), line: i + 1, source: e }),
        };
        let dest = if keep_it { &mut kept } else { &mut dropped };
        dest.extend_from_slice(body);
        dest.push(b'\n');
        moved += usize::from(!keep_it);
    }
    if moved == 0 {
        return Ok(0);
    }
    let side = PathBuf::from(format!("{}.interrupted", path.display()));
    let mut f = OpenOptions::new().append(true).create(true).open(&side).map_err(|e| Error::io(&side, e))?;
    f.write_all(&dropped).map_err(|e| Error::io(&side, e))?;
    f.sync_data().map_err(|e| Error::io(&side, e))?;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, &kept).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn torn_last_line_is_reported_then_cut_on_append() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"id\":1}\n{\"id\":2}\n{\"id\":3,\"te")?;
        let (recs, torn) = read_all::<Value>(&path)?;
        assert_eq!(recs, vec![json!({"id":1}), json!({"id":2})]);
        let torn = torn.expect("torn line reported");
        assert_eq!(torn.line, 3);
        assert_eq!(torn.bytes, 11);

        let (mut w, torn) = JsonlWriter::<Value>::append(&path)?;
        let torn = torn.expect("append reports the cut");
        assert_eq!(torn.line, 3);
        w.write(&json!({"id":3}))?;
        let (recs, torn) = read_all::<Value>(&path)?;
        assert!(torn.is_none());
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], json!({"id":3}));
        // Nothing is lost: the torn bytes are kept beside the file.
        assert_eq!(std::fs::read_to_string(dir.path().join("a.jsonl.torn"))?, "{\"id\":3,\"te\n");
        Ok(())
    }

    #[test]
    fn complete_record_without_newline_is_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("b.jsonl");
        std::fs::write(&path, "{\"id\":1}\n{\"id\":2}")?;
        let (recs, torn) = read_all::<Value>(&path)?;
        assert_eq!(recs.len(), 2);
        assert!(torn.is_none());
        let (mut w, torn) = JsonlWriter::<Value>::append(&path)?;
        assert!(torn.is_none());
        w.write(&json!({"id":3}))?;
        assert_eq!(std::fs::read_to_string(&path)?, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n");
        Ok(())
    }

    #[test]
    fn malformed_middle_line_names_file_and_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, "{\"id\":1}\nnot json\n{\"id\":3}\n")?;
        let err = read_all::<Value>(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("c.jsonl:2"), "{msg}");
        Ok(())
    }

    #[test]
    fn scan_collects_keys_and_missing_file_is_empty() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.jsonl");
        let s = scan::<Value, String, _>(&path, |v| v["id"].to_string())?;
        assert_eq!(s.records, 0);
        let mut w = JsonlWriter::create(&path)?;
        w.write_all(&[json!({"id":"a"}), json!({"id":"b"}), json!({"id":"a"})])?;
        assert_eq!(w.records_written(), 3);
        let s = scan::<Value, String, _>(&path, |v| v["id"].as_str().unwrap_or("").to_string())?;
        assert_eq!(s.records, 3);
        assert_eq!(s.keys.len(), 2);
        assert!(s.keys.contains("b"));
        Ok(())
    }

    #[test]
    fn long_file_tail_repair_crosses_blocks() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("e.jsonl");
        let big = "x".repeat(100_000);
        std::fs::write(&path, format!("{{\"t\":\"{big}\"}}\n{{\"t\":\"{big}"))?;
        let (_w, torn) = JsonlWriter::<Value>::append(&path)?;
        assert_eq!(torn.map(|t| t.line), Some(2));
        let (recs, _) = read_all::<Value>(&path)?;
        assert_eq!(recs.len(), 1);
        Ok(())
    }

    #[test]
    fn retain_moves_unkept_records_aside() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f.jsonl");
        assert_eq!(retain::<Value, _>(&path, |_| true)?, 0);
        std::fs::write(&path, "{\"k\":1}\n{\"k\":2}\n{\"k\":3}\n{\"k\":4,\"x")?;
        let before = std::fs::metadata(&path)?.modified()?;
        let moved = retain::<Value, _>(&path, |v| v["k"] != 2)?;
        assert_eq!(moved, 2, "record 2 and the torn line");
        assert_eq!(std::fs::read_to_string(&path)?, "{\"k\":1}\n{\"k\":3}\n");
        let aside = std::fs::read_to_string(dir.path().join("f.jsonl.interrupted"))?;
        assert_eq!(aside, "{\"k\":2}\n{\"k\":4,\"x\n");
        // All kept: the file is left alone.
        assert_eq!(retain::<Value, _>(&path, |_| true)?, 0);
        assert!(std::fs::metadata(&path)?.modified()? >= before);
        Ok(())
    }
}
