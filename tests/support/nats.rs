//! nats-server process harness (in progress)
