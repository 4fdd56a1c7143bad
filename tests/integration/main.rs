//! The fast tier: integration tests that need no RabbitMQ, run by plain `cargo test` on any
//! machine with Rust. Scripted brokers, the Toxiproxy-compatible API, bad scenarios, runs
//! refused before any broker starts, and the files shipped beside the binary. The tests
//! against real RabbitMQ nodes are the `broker` target (tests/broker/), which
//! scripts/test.sh runs.

mod bad_scenarios;
#[path = "../support/helpers.rs"]
mod helpers;
mod misbehaving_broker;
mod module_graph;
mod refused_before_start;
mod shipped_files;
mod toxiproxy_api;
