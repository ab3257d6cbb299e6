//! Finding the files to ingest: paths given, directories walked recursively, filtered by
//! include/exclude globs; what cannot be read is listed with the reason.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::load::format_of;

/// Include/exclude filters. With no include pattern, every file docraft can read
/// (`.pdf`, `.md`, `.markdown`, `.txt`, ...) is taken from directories.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn build(globs: &[String]) -> Result<Option<GlobSet>, Error> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| Error::Glob { glob: g.clone(), reason: e.kind().to_string() })?);
    }
    b.build().map(Some).map_err(|e| Error::Glob { glob: globs.join(", "), reason: e.to_string() })
}

impl FileFilter {
    /// A filter from glob patterns (`*.pdf`, `manuals/**`). A pattern matches a file's
    /// path relative to the directory walked, or its file name.
    ///
    /// # Errors
    /// [`Error::Glob`] for an invalid pattern.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, Error> {
        Ok(Self { include: build(include)?, exclude: build(exclude)? })
    }

    fn matches(set: &GlobSet, rel: &Path) -> bool {
        set.is_match(rel) || rel.file_name().is_some_and(|n| set.is_match(n))
    }

    /// Whether a file found under a walked directory (at `rel` below it) is taken.
    #[must_use]
    pub fn accepts(&self, rel: &Path) -> bool {
        if self.exclude.as_ref().is_some_and(|x| Self::matches(x, rel)) {
            return false;
        }
        match &self.include {
            Some(inc) => Self::matches(inc, rel),
            None => format_of(rel).is_some(),
        }
    }
}

/// What [`discover`] found: the files to read, and the paths it could not take, each with why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Discovery {
    /// The files to ingest, sorted and de-duplicated.
    pub files: Vec<PathBuf>,
    /// Paths inside walked directories that look like input but cannot be read, in the order
    /// found. Files left out by the filter and hidden entries are not listed.
    pub skipped: Vec<SkippedPath>,
}

/// A path [`discover`] did not take, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedPath {
    /// The path.
    pub path: PathBuf,
    /// Why it was not taken.
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Why a path inside a walked directory was not taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// A FIFO, socket or device (what it is, e.g. `a FIFO (named pipe)`): reading it could
    /// block forever or never end, so it is not opened. Only listed when the filter takes its name.
    NotRegularFile(String),
    /// A symbolic link that leads back to a directory it sits in (or to itself).
    SymlinkLoop,
    /// A symbolic link whose target does not exist.
    BrokenSymlink,
    /// A directory that cannot be listed, or a file that cannot be opened, for lack of permission.
    PermissionDenied,
    /// Any other error reading the path (the error's text).
    Unreadable(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRegularFile(what) => write!(f, "not a regular file ({what})"),
            Self::SymlinkLoop => f.write_str("symbolic link loop"),
            Self::BrokenSymlink => f.write_str("broken symbolic link (its target does not exist)"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::Unreadable(e) => write!(f, "cannot read: {e}"),
        }
    }
}

/// What a file type that is not a regular file or a directory is, in words.
pub(crate) fn special_kind(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    let _ = ft;
    "neither a file nor a directory"
}

/// Whether `e` is "too many levels of symbolic links" (ELOOP), which the standard library
/// does not name in a stable [`std::io::ErrorKind`] yet.
fn is_eloop(e: &std::io::Error) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const ELOOP: i32 = 40;
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd"
    ))]
    const ELOOP: i32 = 62;
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd"
    )))]
    const ELOOP: i32 = -1;
    e.raw_os_error() == Some(ELOOP)
}

/// The reason for an I/O error met at `path` while walking.
fn io_reason(path: &Path, e: &std::io::Error) -> SkipReason {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => SkipReason::PermissionDenied,
        _ if is_eloop(e) => SkipReason::SymlinkLoop,
        // A link that names nothing: the walk saw the entry, but its target is gone.
        std::io::ErrorKind::NotFound if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) => {
            SkipReason::BrokenSymlink
        }
        _ => SkipReason::Unreadable(e.to_string()),
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Expands `paths` into a sorted, de-duplicated list of files, and lists what could not be
/// taken. Files named directly are always taken (so a bad file given by name is reported,
/// not skipped; one that is not a regular file fails with [`Error::NotRegularFile`] when
/// read). Directories are walked recursively (following symbolic links) through `filter`;
/// inside them, paths that cannot be read are listed in [`Discovery::skipped`] with a
/// [`SkipReason`]: FIFOs, sockets and devices (never opened, so the walk cannot block),
/// symbolic link loops, broken links, directories that cannot be listed and files that
/// cannot be opened. Hidden entries (`.git`, ...) and files the filter leaves out are
/// passed over without a word.
///
/// # Errors
/// [`Error::NotFound`] for a path that does not exist, [`Error::Io`] for a given path whose
/// metadata cannot be read for another reason.
pub fn discover<P: AsRef<Path>>(paths: &[P], filter: &FileFilter) -> Result<Discovery, Error> {
    let mut out = Discovery::default();
    for root in paths {
        let root = root.as_ref();
        let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path: root.to_path_buf() },
            _ => Error::Io { path: root.to_path_buf(), source: e },
        })?;
        if !meta.is_dir() {
            out.files.push(root.to_path_buf());
            continue;
        }
        let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
        for entry in walker.filter_entry(|e| e.depth() == 0 || !is_hidden(e.path())) {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let path = err.path().unwrap_or(root).to_path_buf();
                    if err.depth() > 0 && is_hidden(&path) {
                        continue;
                    }
                    let reason = match (err.loop_ancestor(), err.io_error()) {
                        (Some(_), _) => SkipReason::SymlinkLoop,
                        (None, Some(e)) => io_reason(&path, e),
                        (None, None) => SkipReason::Unreadable(err.to_string()),
                    };
                    out.skipped.push(SkippedPath { path, reason });
                    continue;
                }
            };
            let ft = entry.file_type();
            if ft.is_dir() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            if !filter.accepts(rel) {
                continue;
            }
            if !ft.is_file() {
                let reason = SkipReason::NotRegularFile(special_kind(ft).to_string());
                out.skipped.push(SkippedPath { path: entry.into_path(), reason });
                continue;
            }
            // Opening a regular file does not block; it tells whether it can be read.
            if let Err(e) = std::fs::File::open(entry.path()) {
                let reason = io_reason(entry.path(), &e);
                out.skipped.push(SkippedPath { path: entry.into_path(), reason });
                continue;
            }
            out.files.push(entry.into_path());
        }
    }
    out.files.sort();
    out.files.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons() {
        let p = Path::new("x.txt");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(io_reason(p, &denied), SkipReason::PermissionDenied);
        #[cfg(target_os = "linux")]
        assert_eq!(io_reason(p, &std::io::Error::from_raw_os_error(40)), SkipReason::SymlinkLoop);
        let other = std::io::Error::other("disk on fire");
        assert_eq!(io_reason(p, &other), SkipReason::Unreadable("disk on fire".into()));
        assert_eq!(SkipReason::PermissionDenied.to_string(), "permission denied");
    }

    #[test]
    fn filters() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for f in ["a.pdf", "b.md", "c.txt", "d.docx", "sub/e.pdf", "sub/drafts/f.pdf", ".hidden/g.pdf"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(p, "x")?;
        }
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files.iter().map(|p| p.strip_prefix(dir.path()).unwrap().to_string_lossy().replace('\\', "/")).collect()
        };
        let all = discover(&[dir.path().to_path_buf()], &FileFilter::default())?;
        assert_eq!(names(all.files), ["a.pdf", "b.md", "c.txt", "sub/drafts/f.pdf", "sub/e.pdf"]);
        // Filtered-out and hidden files are not "skipped".
        assert_eq!(all.skipped, []);
        let f = FileFilter::new(&["*.pdf".into()], &["**/drafts/**".into()])?;
        assert_eq!(names(discover(&[dir.path().to_path_buf()], &f)?.files), ["a.pdf", "sub/e.pdf"]);
        // A file given by name is taken whatever its type.
        let direct = discover(&[dir.path().join("d.docx")], &f)?;
        assert_eq!(direct.files.len(), 1);
        assert!(discover(&[dir.path().join("missing")], &f).is_err());
        assert!(FileFilter::new(&["[".into()], &[]).is_err());
        Ok(())
    }
}
