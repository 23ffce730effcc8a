//! jetstream backend (in progress)
