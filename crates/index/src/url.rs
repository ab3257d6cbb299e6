//! Where a vector store lives: an index directory, or a PostgreSQL URL naming a collection
//! (`postgres://user:pass@host:5432/db?collection=NAME`).

use std::path::PathBuf;

use crate::error::{IndexError, Result};

/// Whether `s` names a PostgreSQL store (`postgres://` or `postgresql://`) rather than a
/// directory.
#[must_use]
pub fn is_store_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A parsed store argument.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// An index directory (`docraft index build -o DIR`).
    Dir(PathBuf),
    /// A collection in PostgreSQL with pgvector.
    Postgres {
        /// The connection URL without docraft's own parameters (handed to the driver).
        url: String,
        /// `collection=` of the URL: the collection's name.
        collection: String,
        /// `organization=` of the URL (empty when not given): collections of different
        /// organizations never meet.
        organization: String,
    },
}

impl StoreLocation {
    /// Parses a directory or a `postgres://…?collection=NAME[&organization=ORG]` URL; the
    /// URL's other parameters (`sslmode=…`, …) go to the driver.
    ///
    /// # Errors
    /// [`IndexError::Postgres`] for a URL without `collection=` or with an empty one.
    pub fn parse(s: &str) -> Result<Self> {
        if !is_store_url(s) {
            return Ok(Self::Dir(PathBuf::from(s)));
        }
        let (base, query) = s.split_once('?').unwrap_or((s, ""));
        let (mut collection, mut organization, mut rest) = (None, String::new(), Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "collection" => collection = Some(percent_decode(v)),
                "organization" => organization = percent_decode(v),
                _ => rest.push(pair),
            }
        }
        let bad = |reason: &str| IndexError::Postgres { store: redact(s), reason: reason.to_string() };
        let collection = collection.ok_or_else(|| bad("add ?collection=NAME to the URL (which collection to use)"))?;
        if collection.trim().is_empty() || collection.chars().any(char::is_control) || collection.len() > 200 {
            return Err(bad("collection=: 1 to 200 bytes, no control characters"));
        }
        let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
        Ok(Self::Postgres { url, collection, organization })
    }
}

impl std::fmt::Display for StoreLocation {
    /// The directory, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Postgres { url, collection, organization } => {
                write!(f, "{} collection {collection:?}", redact(url))?;
                if !organization.is_empty() {
                    write!(f, " of organization {organization:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// `url` with the password (if any) replaced by `***`.
#[must_use]
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth_end, tail) = match rest.find(['/', '?']) {
        Some(i) => (i, &rest[i..]),
        None => (rest.len(), ""),
    };
    let authority = &rest[..auth_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
            format!("{scheme}://{hidden}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_directories() {
        assert_eq!(StoreLocation::parse("runs/x/index").unwrap(), StoreLocation::Dir("runs/x/index".into()));
        let l =
            StoreLocation::parse("postgres://u:secret@h:5/db?sslmode=disable&collection=Man%C3%BAal+2&organization=o1")
                .unwrap();
        assert_eq!(
            l,
            StoreLocation::Postgres {
                url: "postgres://u:secret@h:5/db?sslmode=disable".into(),
                collection: "Manúal 2".into(),
                organization: "o1".into()
            }
        );
        let shown = l.to_string();
        assert!(!shown.contains("secret") && shown.contains("u:***@h:5/db") && shown.contains("Manúal 2"), "{shown}");
        let e = StoreLocation::parse("postgresql://u:secret@h/db").unwrap_err().to_string();
        assert!(e.contains("collection=NAME") && !e.contains("secret"), "{e}");
        assert!(StoreLocation::parse("postgres://h/db?collection=").is_err());
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://me@h/db"), "postgres://me@h/db");
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
}
