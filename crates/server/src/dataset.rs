//! Fine-tune files: format detection, conversion of JSON arrays and CSV to JSONL, and
//! validation with `docraft validate`'s checks. Blocking code (run it off the async runtime).
//!
//! Accepted records: OpenAI chat (`{"messages": [...]}`), prompt/completion
//! (`{"prompt", "completion"}`) and text/label (`{"text", "label"}`), as JSONL, as one JSON
//! array, or as CSV with a header naming the columns. The format is detected from the
//! first record; every record is then checked as that format.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use docraft_qa_gen::export::Format;
use docraft_qa_gen::validate::{Problem, TokenCounter, validate};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tempfile::TempPath;

use crate::{Result, ServerError};

/// Problems quoted in a refusal; the rest are counted.
pub const MAX_PROBLEMS_QUOTED: usize = 10;

/// How the upload is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    JsonArray,
    /// CSV with a header.
    Csv,
}

/// What streaming the upload to disk learned about its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Bytes of the longest line (without its `\n`).
    pub longest: u64,
    /// 1-based number of the first line over the limit, if any.
    pub first_over: Option<u64>,
}

/// Counts line lengths while bytes stream by.
#[derive(Debug, Clone)]
pub struct LineMeter {
    limit: u64,
    line: u64,
    current: u64,
    stats: LineStats,
}

impl LineMeter {
    /// A meter flagging lines over `limit` bytes.
    #[must_use]
    pub fn new(limit: u64) -> Self {
        Self { limit, line: 1, current: 0, stats: LineStats::default() }
    }

    /// Feeds the next bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut parts = bytes.split(|b| *b == b'\n').peekable();
        while let Some(part) = parts.next() {
            self.current += part.len() as u64;
            self.stats.longest = self.stats.longest.max(self.current);
            if self.current > self.limit && self.stats.first_over.is_none() {
                self.stats.first_over = Some(self.line);
            }
            if parts.peek().is_some() {
                self.line += 1;
                self.current = 0;
            }
        }
    }

    /// What was seen.
    #[must_use]
    pub fn stats(&self) -> LineStats {
        self.stats
    }
}

/// A fine-tune file ready to be stored.
#[derive(Debug)]
pub struct Prepared {
    /// The JSONL to store (the upload itself, or its conversion).
    pub path: TempPath,
    /// Its size.
    pub bytes: u64,
    /// The detected format.
    pub format: Format,
    /// Examples in it.
    pub examples: usize,
}

fn refuse(message: impl Into<String>) -> ServerError {
    ServerError::bad_request(message, Some("file"), Some("invalid_file"))
}

/// The layout of `path` from its first non-blank byte (`None`: the file is blank).
///
/// # Errors
/// [`ServerError::Io`] when the file cannot be read.
pub fn detect_layout(path: &Path) -> Result<Option<Layout>> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| ServerError::io(path, e))?);
    let mut buf = [0u8; 8192];
    let mut first = true;
    loop {
        let n = reader.read(&mut buf).map_err(|e| ServerError::io(path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let mut chunk = &buf[..n];
        if first {
            chunk = chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk);
            first = false;
        }
        if let Some(b) = chunk.iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(Some(match b {
                b'[' => Layout::JsonArray,
                b'{' => Layout::Jsonl,
                _ => Layout::Csv,
            }));
        }
    }
}

/// Detects, converts and validates the upload at `raw` (its lines measured by `lines`);
/// conversions are written as temporary files in `dir`.
///
/// # Errors
/// [`ServerError::BadRequest`] (code `invalid_file` or `empty_file`) with a line-numbered
/// message when the file is refused; [`ServerError::Io`] when reading or writing fails.
pub fn prepare(raw: TempPath, dir: &Path, lines: LineStats, max_line_bytes: u64) -> Result<Prepared> {
    let Some(layout) = detect_layout(&raw)? else {
        return Err(ServerError::bad_request("the file is empty", Some("file"), Some("empty_file")));
    };
    let over_limit =
        |line: u64| refuse(format!("line {line}: longer than the limit of {max_line_bytes} bytes per line"));
    // The JSONL to validate and store, and (for CSV) the upload's line of each record.
    let (jsonl, csv_lines) = match layout {
        Layout::Jsonl => {
            if let Some(line) = lines.first_over {
                return Err(over_limit(line));
            }
            (raw, None)
        }
        Layout::Csv => {
            if let Some(line) = lines.first_over {
                return Err(over_limit(line));
            }
            let (path, map) = csv_to_jsonl(&raw, dir)?;
            (path, Some(map))
        }
        Layout::JsonArray => (json_array_to_jsonl(&raw, dir, max_line_bytes)?, None),
    };
    let place = |line: usize| -> String {
        match (&csv_lines, layout) {
            (Some(map), _) => format!("line {}", map.get(line.wrapping_sub(1)).copied().unwrap_or(line as u64)),
            (None, Layout::JsonArray) => format!("record {line}"),
            (None, _) => format!("line {line}"),
        }
    };
    let format = detect_format(&jsonl, &place)?;
    let report = validate(&jsonl, format, &TokenCounter::Estimate).map_err(|e| match e {
        docraft_qa_gen::QaGenError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            refuse("the file is not UTF-8 text")
        }
        other => ServerError::Internal(format!("validating an upload: {other}")),
    })?;
    if !report.is_valid() {
        return Err(refuse(describe(format, &report.errors, &place)));
    }
    let bytes = std::fs::metadata(&jsonl).map_err(|e| ServerError::io(&*jsonl, e))?.len();
    Ok(Prepared { path: jsonl, bytes, format, examples: report.examples })
}

fn describe(format: Format, problems: &[Problem], place: &dyn Fn(usize) -> String) -> String {
    let mut parts: Vec<String> = problems
        .iter()
        .take(MAX_PROBLEMS_QUOTED)
        .map(|p| {
            if p.line == 0 {
                format!("{} ({})", p.message, p.kind)
            } else {
                format!("{}: {} ({})", place(p.line), p.message, p.kind)
            }
        })
        .collect();
    if problems.len() > MAX_PROBLEMS_QUOTED {
        parts.push(format!("and {} more problems", problems.len() - MAX_PROBLEMS_QUOTED));
    }
    format!("invalid {} file: {}", format.name(), parts.join("; "))
}

/// The format of the first record of a JSONL file.
fn detect_format(path: &Path, place: &dyn Fn(usize) -> String) -> Result<Format> {
    let reader = BufReader::new(File::open(path).map_err(|e| ServerError::io(path, e))?);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                refuse(format!("{}: not UTF-8 text", place(i + 1)))
            } else {
                ServerError::io(path, e)
            }
        })?;
        let line = line.trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| refuse(format!("{}: not JSON: {e}", place(i + 1))))?;
        let has = |k: &str| value.get(k).is_some();
        return if has("messages") {
            Ok(Format::OpenaiChat)
        } else if has("prompt") || has("completion") {
            Ok(Format::Completion)
        } else if has("text") || has("label") {
            Ok(Format::TextLabel)
        } else {
            Err(refuse(format!(
                "{}: unrecognized record: expected OpenAI chat {{\"messages\"}}, {{\"prompt\", \"completion\"}} \
                 or {{\"text\", \"label\"}}",
                place(i + 1)
            )))
        };
    }
    Err(ServerError::bad_request("the file is empty", Some("file"), Some("empty_file")))
}

fn temp_in(dir: &Path) -> Result<(BufWriter<File>, TempPath)> {
    let (file, path) = tempfile::Builder::new()
        .prefix(".convert-")
        .tempfile_in(dir)
        .map_err(|e| ServerError::io(dir, e))?
        .into_parts();
    Ok((BufWriter::new(file), path))
}

/// CSV with a header -> JSONL of objects with the header's keys (string values). Returns the
/// upload's line of each record.
fn csv_to_jsonl(raw: &Path, dir: &Path) -> Result<(TempPath, Vec<u64>)> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_path(raw).map_err(|e| csv_error(raw, e))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(raw, e))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    let has = |k: &str| headers.iter().any(|h| h == k);
    if !((has("prompt") && has("completion")) || (has("text") && has("label"))) {
        return Err(refuse(format!(
            "line 1: not JSONL, a JSON array or a CSV with the columns prompt,completion or text,label \
             (first line read as CSV columns: {})",
            headers.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
        )));
    }
    let (mut out, path) = temp_in(dir)?;
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(raw, e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let object: Map<String, Value> =
            headers.iter().zip(record.iter()).map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect();
        serde_json::to_writer(&mut out, &object).map_err(|e| ServerError::io(&*path, e.into()))?;
        out.write_all(b"\n").map_err(|e| ServerError::io(&*path, e))?;
        lines.push(line);
    }
    out.flush().map_err(|e| ServerError::io(&*path, e))?;
    Ok((path, lines))
}

fn csv_error(path: &Path, e: csv::Error) -> ServerError {
    let line = e.position().map(csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ServerError::io(path, io),
        csv::ErrorKind::Utf8 { pos, .. } => {
            refuse(format!("line {}: not UTF-8 text", pos.map_or(line.unwrap_or(0), |p| p.line())))
        }
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => refuse(format!(
            "line {}: {len} fields where the header has {expected_len}",
            pos.map_or(line.unwrap_or(0), |p| p.line())
        )),
        other => refuse(format!("line {}: not CSV: {other:?}", line.unwrap_or(0))),
    }
}

/// A JSON array -> JSONL, one element at a time (the array is never whole in memory).
fn json_array_to_jsonl(raw: &Path, dir: &Path, max_line_bytes: u64) -> Result<TempPath> {
    let (mut out, path) = temp_in(dir)?;
    let file = File::open(raw).map_err(|e| ServerError::io(raw, e))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
    let sink = ElementSink { out: &mut out, max_line_bytes, records: 0 };
    match sink.deserialize(&mut de) {
        Ok(()) => {}
        Err(e) if e.is_io() => return Err(ServerError::io(raw, e.into())),
        Err(e) => return Err(refuse(format!("not a JSON array of records: {e}"))),
    }
    de.end().map_err(|e| refuse(format!("text after the JSON array: {e}")))?;
    out.flush().map_err(|e| ServerError::io(&*path, e))?;
    Ok(path)
}

struct ElementSink<'a, W: Write> {
    out: &'a mut W,
    max_line_bytes: u64,
    records: usize,
}

impl<'de, W: Write> DeserializeSeed<'de> for ElementSink<'_, W> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, W: Write> Visitor<'de> for ElementSink<'_, W> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(value) = seq.next_element::<Value>()? {
            self.records += 1;
            let line = serde_json::to_string(&value).map_err(A::Error::custom)?;
            if line.len() as u64 > self.max_line_bytes {
                return Err(A::Error::custom(format!(
                    "record {} is longer than the limit of {} bytes",
                    self.records, self.max_line_bytes
                )));
            }
            self.out.write_all(line.as_bytes()).map_err(A::Error::custom)?;
            self.out.write_all(b"\n").map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_meter_counts_across_chunks() {
        let mut m = LineMeter::new(5);
        m.feed(b"abc\nabcd");
        m.feed(b"ef\nxy");
        assert_eq!(m.stats(), LineStats { longest: 6, first_over: Some(2) });
        let mut ok = LineMeter::new(5);
        ok.feed(b"12345\n12345\n");
        assert_eq!(ok.stats().first_over, None);
    }
}
