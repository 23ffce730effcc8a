//! Runtime tests against the real embedded event log.
