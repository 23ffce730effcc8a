//! conformance suite (in progress)
