//! Questions over a docraft index, answered from the documents with citations.
//!
//! Data flow of one question ([`Asker::ask`]):
//!
//! 1. with a conversation going on, the follow-up question is rewritten into a standalone one
//!    ([`Asker::rewrite`]: the generator is asked, its line checked, and the previous question
//!    joined to the new one when the line is unusable), as a conversational retrieval chain does;
//! 2. the [`Retriever`](docraft_core::Retriever) finds the closest chunks; when even the best
//!    one is too far from the question, the answer is a decline, in the question's language,
//!    and no text is generated;
//! 3. the [`Generator`](docraft_core::Generator) answers from the numbered sources only, in the
//!    question's language (prompts in `prompts/`), streaming; `[1]`-style markers are
//!    rewritten to `[file, p. N]` as the text streams ([`CitationStream`]);
//! 4. the answer is checked against the sources: each sentence is attributed to the source
//!    whose words it adds to the question ([`attribute`]); a model's "I don't know" becomes a
//!    decline; when the source with the sentence that best matches the question is not among
//!    the citations, that sentence follows the answer, quoted and cited.
//!
//! ```
//! use docraft_ask::CitationStream;
//!
//! let mut s = CitationStream::new(vec!["handbook.pdf, p. 3".into()]);
//! let mut out = s.push("Bolts take 45 N·m [");
//! out += &s.push("1].");
//! out += &s.finish();
//! assert_eq!(out, "Bolts take 45 N·m [handbook.pdf, p. 3].");
//! ```

mod ask;
mod cite;
mod error;
mod prompt;

pub use ask::{Answer, AskOptions, Asker, Attribution, Citation, Source, Turn};
pub use cite::{CitationStream, attribute, sentences};
pub use error::{AskError, Result};
pub use prompt::{PROMPTS, Prompts};
