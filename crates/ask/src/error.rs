//! The crate's error type.

/// What can go wrong while answering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The search failed.
    #[error(transparent)]
    Retrieve(#[from] docraft_core::RetrieveError),
    /// The generator failed on the question (tag) given.
    #[error("generating the answer to {question:?}: {source}")]
    Generate {
        /// The question (shortened).
        question: String,
        /// The backend's error.
        source: docraft_core::GenError,
    },
    /// An option is out of range.
    #[error("{name}: {message}")]
    Setting {
        /// The option.
        name: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// A prompt template could not be rendered (names the template and the variable).
    #[error(transparent)]
    Prompt(#[from] docraft_core::prompt::PromptError),
}

/// Results of this crate.
pub type Result<T, E = AskError> = std::result::Result<T, E>;
