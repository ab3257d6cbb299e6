//! Finding the files to ingest: paths given, directories walked recursively, filtered by
//! include/exclude globs.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

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

/// Expands `paths` into a sorted, de-duplicated list of files. Files named directly are
/// always taken (so a bad file given by name is reported, not skipped); directories are
/// walked recursively through `filter`. Hidden entries (`.git`, ...) inside walked
/// directories are skipped.
///
/// # Errors
/// [`Error::NotFound`] for a path that does not exist.
pub fn discover<P: AsRef<Path>>(paths: &[P], filter: &FileFilter) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for root in paths {
        let root = root.as_ref();
        let meta = std::fs::metadata(root).map_err(|_| Error::NotFound { path: root.to_path_buf() })?;
        if !meta.is_dir() {
            out.push(root.to_path_buf());
            continue;
        }
        let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
        for entry in walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')) {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            if filter.accepts(rel) {
                out.push(entry.into_path());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(names(all), ["a.pdf", "b.md", "c.txt", "sub/drafts/f.pdf", "sub/e.pdf"]);
        let f = FileFilter::new(&["*.pdf".into()], &["**/drafts/**".into()])?;
        assert_eq!(names(discover(&[dir.path().to_path_buf()], &f)?), ["a.pdf", "sub/e.pdf"]);
        // A file given by name is taken whatever its type.
        let direct = discover(&[dir.path().join("d.docx")], &f)?;
        assert_eq!(direct.len(), 1);
        assert!(discover(&[dir.path().join("missing")], &f).is_err());
        assert!(FileFilter::new(&["[".into()], &[]).is_err());
        Ok(())
    }
}
