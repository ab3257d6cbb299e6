//! One progress idiom for every stage: a stage's run function takes `&dyn Progress<U>`, where
//! `U` is that stage's own update type, and calls [`Progress::update`] after each unit of work.
//! Any `Fn(&U) + Sync` closure is a progress sink; [`NoProgress`] ignores everything.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use docraft_core::{NoProgress, Progress};
//!
//! fn work(progress: &dyn Progress<usize>) {
//!     for done in 1..=3 {
//!         progress.update(&done);
//!     }
//! }
//! let seen = AtomicUsize::new(0);
//! work(&|d: &usize| seen.store(*d, Ordering::Relaxed));
//! work(&NoProgress);
//! assert_eq!(seen.load(Ordering::Relaxed), 3);
//! ```

/// Receives progress updates of type `U`. One required method. Closures are progress sinks;
/// a caller that must mutate state from one uses interior mutability (a `Mutex`, an atomic, a
/// `Cell` is not `Sync`).
pub trait Progress<U: ?Sized>: Sync {
    /// Told after a unit of work (a file, an embedding batch, a chunk, a question, a step).
    fn update(&self, update: &U);
}

impl<U: ?Sized, F: Fn(&U) + Sync> Progress<U> for F {
    fn update(&self, update: &U) {
        self(update);
    }
}

/// A progress sink that ignores every update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoProgress;

impl<U: ?Sized> Progress<U> for NoProgress {
    fn update(&self, _: &U) {}
}

/// The progress of a stage that counts units: `done` of `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Units done so far.
    pub done: usize,
    /// Units the stage will do.
    pub total: usize,
}

impl Count {
    /// `done` of `total`.
    #[must_use]
    pub fn new(done: usize, total: usize) -> Self {
        Self { done, total }
    }
}
