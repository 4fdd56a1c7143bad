//! Integration tests: one binary, against real RabbitMQ nodes started from the local
//! rabbitmq-server install. Each test uses its own folders and free ports.

mod attribution;
mod bad_scenarios;
mod broker_command;
mod faults;
mod helpers;
mod kubernetes;
mod library;
mod managed_nodes;
mod metrics;
mod misbehaving_broker;
mod queues;
mod reports;
mod run_command;
mod sweep;
mod tls;
mod toxiproxy_api;
mod workers;
mod workload;
