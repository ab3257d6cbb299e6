//! The ingest run: files -> documents -> chunks -> `chunks.jsonl`, in parallel, resumable,
//! with a per-file report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use docraft_core::jsonl::{JsonlReader, JsonlWriter};
use docraft_core::{CancelToken, Chunk, ChunkId, DocId, Document, Progress};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkSettings, Chunker, TextChunker};
use crate::error::Error;
use crate::load::{AutoLoader, Loader};
use crate::walk::{FileFilter, SkippedPath, discover};

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Ingested: its chunks are in the output.
    Ok,
    /// Could not be ingested; `reason` says why.
    Failed,
    /// Not ingested this time: already in the output, or a duplicate of another file.
    Skipped,
}

/// One file's line in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileReport {
    /// The file.
    pub path: String,
    /// What happened.
    pub status: FileStatus,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Short cause name for failures (see [`Error::kind`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Pages (PDF only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<usize>,
    /// Chunks the document has.
    pub chunks: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Bytes of extracted text.
    pub text_bytes: usize,
    /// Document id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// Warnings (pages without text layer, unmapped glyphs, bad front matter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl FileReport {
    fn new(path: &Path, status: FileStatus) -> Self {
        Self {
            path: path.to_string_lossy().into_owned(),
            status,
            reason: None,
            kind: None,
            pages: None,
            chunks: 0,
            bytes: 0,
            text_bytes: 0,
            doc_id: None,
            warnings: Vec::new(),
        }
    }

    fn skipped(path: &Path, id: &DocId, bytes: u64, reason: String) -> Self {
        let mut r = Self::new(path, FileStatus::Skipped);
        r.reason = Some(reason);
        r.doc_id = Some(id.to_string());
        r.bytes = bytes;
        r
    }

    fn ingested(path: &Path, bytes: u64, doc: Document, chunks: usize) -> Self {
        let mut r = Self::new(path, FileStatus::Ok);
        r.pages = (!doc.pages.is_empty()).then_some(doc.pages.len());
        r.chunks = chunks;
        r.bytes = bytes;
        r.text_bytes = doc.text.len();
        r.doc_id = Some(doc.id.to_string());
        r.warnings = doc.warnings;
        r
    }

    fn failed(path: &Path, err: &Error) -> Self {
        let mut r = Self::new(path, FileStatus::Failed);
        r.reason = Some(err.to_string());
        r.kind = Some(err.kind().to_string());
        r
    }
}

/// Sums over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Files considered.
    pub files: usize,
    /// Files ingested.
    pub ok: usize,
    /// Files that failed.
    pub failed: usize,
    /// Files skipped (already done, duplicates).
    pub skipped: usize,
    /// PDF pages read.
    pub pages: usize,
    /// Chunks of the ingested files.
    pub chunks: usize,
    /// Chunks appended to the output by this run.
    pub chunks_written: usize,
    /// Bytes of the files read.
    pub bytes: u64,
    /// Bytes of text extracted.
    pub text_bytes: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Input megabytes (10^6 bytes) per second of wall time.
    pub mb_per_s: f64,
    /// PDF pages per second of wall time.
    pub pages_per_s: f64,
}

/// The report of a run: `{"files": [...], "totals": {...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// One entry per file, in path order.
    pub files: Vec<FileReport>,
    /// Sums.
    pub totals: Totals,
    /// An incomplete last line found in the output (a killed earlier run) and cut off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
    /// Whether the run was cancelled before every file was done: `files` then lists only the
    /// files done (their chunks are written), and a rerun does the rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Paths inside the walked directories that could not be taken (FIFOs and devices,
    /// symbolic link loops, no permission), each with the reason; see [`discover`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_paths: Vec<SkippedPath>,
}

/// What an ingest run tells its [`Progress`] sink; the CLI draws a bar with it.
#[derive(Debug, Clone)]
pub enum IngestUpdate {
    /// The run is about to process `files` files.
    Started {
        /// Files found in the inputs.
        files: usize,
    },
    /// A file is finished (ingested, failed or skipped).
    FileDone(FileReport),
}

/// What an earlier run left in the output.
#[derive(Default)]
struct Existing {
    chunk_ids: HashSet<ChunkId>,
    /// doc -> (chunks present, chunk_count)
    docs: HashMap<DocId, (usize, usize)>,
}

impl Existing {
    fn read(path: &Path) -> Result<Self, Error> {
        let mut out = Self::default();
        if !path.exists() {
            return Ok(out);
        }
        // Only the keys of each record are kept (the texts are skipped while parsing).
        #[derive(Deserialize)]
        struct Key {
            id: ChunkId,
            doc_id: DocId,
            #[serde(default)]
            chunk_count: usize,
        }
        for k in JsonlReader::<Key>::open(path)? {
            let k = k?;
            if out.chunk_ids.insert(k.id) {
                out.docs.entry(k.doc_id).or_insert((0, k.chunk_count)).0 += 1;
            }
        }
        Ok(out)
    }

    fn complete(&self, doc: &DocId) -> bool {
        self.docs.get(doc).is_some_and(|(have, want)| have >= want)
    }
}

/// A loaded, chunked document, or why not.
type Processed = Result<(Document, Vec<Chunk>), Error>;

/// Ingests files into a chunks JSONL file.
///
/// ```no_run
/// # fn main() -> Result<(), docraft_ingest::Error> {
/// use docraft_ingest::{ChunkSettings, Ingest};
/// let settings = ChunkSettings::new(500..=1000)?.with_overlap(100)?;
/// let report = Ingest::new(settings).run(&["docs/"], "chunks.jsonl".as_ref(), &docraft_core::NoProgress)?;
/// println!("{} files, {} chunks", report.totals.ok, report.totals.chunks);
/// # Ok(()) }
/// ```
pub struct Ingest<L = AutoLoader, C = TextChunker> {
    loader: L,
    chunker: C,
    filter: FileFilter,
    cancel: CancelToken,
}

impl Ingest {
    /// An ingest run with the built-in loader and a [`TextChunker`] with `settings`.
    #[must_use]
    pub fn new(settings: ChunkSettings) -> Self {
        Self {
            loader: AutoLoader::new(),
            chunker: TextChunker::new(settings),
            filter: FileFilter::default(),
            cancel: CancelToken::new(),
        }
    }
}

impl<L: Loader, C: Chunker> Ingest<L, C> {
    /// Only files that `filter` accepts are taken from directories.
    #[must_use]
    pub fn with_filter(mut self, filter: FileFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Stops [`Self::run`] once `cancel` is cancelled: files already written stay, no other
    /// file is loaded or written, and the report says `cancelled`. A rerun does the rest.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Uses another chunker.
    #[must_use]
    pub fn with_chunker<C2: Chunker>(self, chunker: C2) -> Ingest<L, C2> {
        Ingest { loader: self.loader, chunker, filter: self.filter, cancel: self.cancel }
    }

    /// Uses another loader.
    #[must_use]
    pub fn with_loader<L2: Loader>(self, loader: L2) -> Ingest<L2, C> {
        Ingest { loader, chunker: self.chunker, filter: self.filter, cancel: self.cancel }
    }

    /// Loads and chunks one file.
    ///
    /// # Errors
    /// The file's [`Error`].
    pub fn process(&self, path: &Path) -> Result<(Document, Vec<Chunk>), Error> {
        let doc = self.loader.load_path(path)?;
        let chunks = self.chunker.chunk(&doc)?;
        Ok((doc, chunks))
    }

    /// Ingests `inputs` (files and directories) into `output`, appending.
    ///
    /// Files are read in parallel; chunks are written in path order, one write per document,
    /// so the output is the same whatever the thread count. A file that fails is reported and
    /// the run goes on. Documents already complete in `output` (same content) are skipped, a
    /// document a killed run left half-written gets only its missing chunks, and files with
    /// identical content are ingested once. `progress` hears [`IngestUpdate::Started`], then
    /// one [`IngestUpdate::FileDone`] per file. The cancellation token ([`Self::with_cancel`])
    /// is checked before each file is loaded and before each is written.
    ///
    /// # Errors
    /// Only for problems with the run itself: an input path that does not exist, an output
    /// that cannot be read or written.
    pub fn run<P: AsRef<Path>>(
        &self,
        inputs: &[P],
        output: &Path,
        progress: &dyn Progress<IngestUpdate>,
    ) -> Result<Report, Error> {
        let t0 = Instant::now();
        let found = discover(inputs, &self.filter)?;
        let files = found.files;
        let existing = Existing::read(output)?;
        let (mut writer, torn) = JsonlWriter::<Chunk>::append(output)?;
        let mut report =
            Report { repaired: torn.map(|t| t.to_string()), skipped_paths: found.skipped, ..Report::default() };
        progress.update(&IngestUpdate::Started { files: files.len() });

        // Hash every file first (in parallel), so duplicates resolve in path order.
        let hashed: Vec<Result<(DocId, u64), Error>> = files
            .par_iter()
            .map(|p| {
                let bytes = crate::load::read_file(p)?;
                Ok((DocId::from_content(&bytes), bytes.len() as u64))
            })
            .collect();

        let mut slots: Vec<Option<FileReport>> = vec![None; files.len()];
        let mut todo: Vec<usize> = Vec::new();
        let mut first_seen: HashMap<DocId, usize> = HashMap::new();
        for (i, (path, h)) in files.iter().zip(&hashed).enumerate() {
            match h {
                Err(e) => slots[i] = Some(FileReport::failed(path, e)),
                Ok((id, bytes)) => {
                    if let Some(&j) = first_seen.get(id) {
                        let reason = format!("same content as {}", files[j].display());
                        slots[i] = Some(FileReport::skipped(path, id, *bytes, reason));
                        continue;
                    }
                    first_seen.insert(id.clone(), i);
                    if existing.complete(id) {
                        let reason = format!("already in {}", output.display());
                        slots[i] = Some(FileReport::skipped(path, id, *bytes, reason));
                        continue;
                    }
                    todo.push(i);
                }
            }
        }
        for r in slots.iter().flatten() {
            progress.update(&IngestUpdate::FileDone(r.clone()));
        }

        // Workers load and chunk in parallel (balanced over all files); one writer thread puts
        // the results in path order and appends them as they become ready.
        let stop = AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Processed)>();
        let (written, reports) = std::thread::scope(|scope| {
            let writer_thread = scope.spawn(|| -> Result<(usize, Vec<(usize, FileReport)>), Error> {
                let mut ready: BTreeMap<usize, Processed> = BTreeMap::new();
                let mut next = 0; // position in `todo`
                let mut written = 0;
                let mut reports = Vec::with_capacity(todo.len());
                for (pos, res) in rx {
                    ready.insert(pos, res);
                    while let Some(res) = ready.remove(&next) {
                        if self.cancel.is_cancelled() {
                            // Nothing more is written; the workers stop taking files.
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        let i = todo[next];
                        next += 1;
                        let path = &files[i];
                        let r = match res {
                            Err(e) => FileReport::failed(path, &e),
                            Ok((doc, chunks)) => {
                                let fresh = chunks.iter().filter(|c| !existing.chunk_ids.contains(&c.id));
                                let n = fresh.clone().count();
                                if let Err(e) = writer.write_all(fresh) {
                                    stop.store(true, Ordering::Relaxed);
                                    return Err(e.into());
                                }
                                written += n;
                                let bytes = hashed[i].as_ref().map_or(0, |h| h.1);
                                FileReport::ingested(path, bytes, doc, chunks.len())
                            }
                        };
                        progress.update(&IngestUpdate::FileDone(r.clone()));
                        reports.push((i, r));
                    }
                }
                Ok((written, reports))
            });
            todo.par_iter().enumerate().for_each_with(tx, |tx, (pos, &i)| {
                if !stop.load(Ordering::Relaxed) && !self.cancel.is_cancelled() {
                    // A send fails only when the writer stopped on an error it reports itself.
                    let _ = tx.send((pos, self.process(&files[i])));
                }
            });
            writer_thread.join().unwrap_or_else(|_| {
                Err(Error::Output(docraft_core::Error::Io {
                    path: output.to_path_buf(),
                    source: std::io::Error::other("the writer thread failed"),
                }))
            })
        })?;
        report.totals.chunks_written = written;
        for (i, r) in reports {
            slots[i] = Some(r);
        }
        writer.sync()?;

        report.files = slots.into_iter().flatten().collect();
        report.cancelled = self.cancel.is_cancelled() && report.files.len() < files.len();
        let t = &mut report.totals;
        t.files = report.files.len();
        for f in &report.files {
            match f.status {
                FileStatus::Ok => {
                    t.ok += 1;
                    t.pages += f.pages.unwrap_or(0);
                    t.chunks += f.chunks;
                    t.bytes += f.bytes;
                    t.text_bytes += f.text_bytes;
                }
                FileStatus::Failed => t.failed += 1,
                FileStatus::Skipped => t.skipped += 1,
            }
        }
        t.seconds = t0.elapsed().as_secs_f64();
        if t.seconds > 0.0 {
            t.mb_per_s = t.bytes as f64 / 1e6 / t.seconds;
            t.pages_per_s = t.pages as f64 / t.seconds;
        }
        Ok(report)
    }
}
