//! The broker tier: integration tests against real RabbitMQ nodes started from the local
//! rabbitmq-server install (or the root of `scripts/rabbitmq.sh`), one binary. Each test
//! uses its own folders and free ports, and takes its share of the machine from
//! `helpers::machine_share` before it starts a node. Built only with the `broker-tests`
//! feature, which scripts/test.sh turns on: plain `cargo test` runs the fast tier alone.

mod attribution;
mod broker_command;
mod faults;
#[path = "../support/helpers.rs"]
mod helpers;
mod kubernetes;
mod library;
mod managed_nodes;
mod metrics;
mod queues;
mod reports;
mod run_command;
mod sweep;
mod tls;
mod workers;
mod workload;
