use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes`, full length (64 hex digits).
#[must_use]
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A text id newtype: serialized as a plain string, with `from_string`, `as_str`, `Display`.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id read from elsewhere (a JSONL record, a command line).
            #[must_use]
            pub fn from_string(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id! {
    /// Id of a document: the first 128 bits of the SHA-256 of its raw bytes, in hex.
    ///
    /// Two files with the same content have the same id wherever they lie, which is how
    /// duplicates are ingested once.
    DocId
}

text_id! {
    /// Id of a chunk: derived from its document id and byte span, so the same document
    /// chunked the same way always gives the same ids (and a resumed run can tell what it
    /// already wrote).
    ChunkId
}

impl DocId {
    /// The id of a document whose raw bytes are `bytes`.
    #[must_use]
    pub fn from_content(bytes: &[u8]) -> Self {
        Self(hex(&Sha256::digest(bytes)[..16]))
    }
}

impl ChunkId {
    /// The id of the chunk of `doc` covering bytes `start..end` of its text.
    #[must_use]
    pub fn new(doc: &DocId, start: usize, end: usize) -> Self {
        let mut h = Sha256::new();
        h.update(doc.as_str().as_bytes());
        h.update(b":");
        h.update(start.to_string().as_bytes());
        h.update(b"-");
        h.update(end.to_string().as_bytes());
        Self(hex(&h.finalize()[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_known_sha256() {
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(DocId::from_content(b"abc").as_str(), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn chunk_ids_depend_on_doc_and_span() {
        let a = DocId::from_content(b"a");
        let b = DocId::from_content(b"b");
        assert_eq!(ChunkId::new(&a, 0, 10), ChunkId::new(&a, 0, 10));
        assert_ne!(ChunkId::new(&a, 0, 10), ChunkId::new(&a, 0, 11));
        assert_ne!(ChunkId::new(&a, 1, 10), ChunkId::new(&a, 0, 10));
        assert_ne!(ChunkId::new(&a, 0, 10), ChunkId::new(&b, 0, 10));
        // "1-23" and "12-3" must not collide.
        assert_ne!(ChunkId::new(&a, 1, 23), ChunkId::new(&a, 12, 3));
    }
}
