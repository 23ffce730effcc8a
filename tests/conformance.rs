//! conformance instantiation (in progress)
