//! Cooperative cancellation: a [`CancelToken`] is handed to a stage's runner (`with_cancel`);
//! the stage checks it between units of work (a file, an embedding batch, a chunk, a question,
//! a training step) and stops cleanly, keeping what it wrote, so a rerun resumes.
//!
//! ```
//! use docraft_core::CancelToken;
//!
//! let token = CancelToken::new();
//! let seen_by_stage = token.clone();
//! assert!(!seen_by_stage.is_cancelled());
//! token.cancel();
//! assert!(seen_by_stage.is_cancelled());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cooperative cancellation: cheap to clone (clones share one flag), checked between units of
/// work. Once cancelled it stays cancelled.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token (and of its clones) to stop after its current unit.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Self::cancel`] was called on this token or a clone.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
