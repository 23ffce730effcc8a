//! embedded backend (in progress)
