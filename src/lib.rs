//! warren: load testing and reliability verification for RabbitMQ.
//!
//! `main.rs` only parses the command line and calls [`run`]; everything else lives in
//! these modules, one per concept, so integration tests can drive the whole tool in-process.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod amqp;
pub mod broker;
pub mod broker_uri;
pub mod cli;
pub mod commands;
pub mod deadline;
pub mod drive;
pub mod events;
pub mod exit;
pub mod exporter;
pub mod faults;
pub mod gates;
pub mod ledger;
pub mod listen;
pub mod message;
pub mod metrics;
pub mod output;
pub mod precise_timer;
pub mod protocol;
pub mod redact;
pub mod report;
pub mod scenario;
pub mod seeded;
pub mod share;
pub mod signals;
pub mod sweep;
pub mod timestamp;
pub mod tls;
pub mod toxiproxy;
pub mod workers;
pub mod workload;

use tokio_util::sync::CancellationToken;

use cli::{Cli, Command};
use exit::Exit;

/// Runs one command. `shutdown` is the root of cancellation: cancelling it (Ctrl-C,
/// SIGTERM, or a test) stops the command, which still tears down what it started.
///
/// # Errors
/// Whatever stopped the command; [`exit::for_error`] maps it to an exit code.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Run(args) => commands::run::run(args, shutdown).await,
        Command::Sweep(args) => commands::run::sweep(args, shutdown).await,
        Command::Validate(args) => Ok(commands::validate::validate(&args)),
        Command::Broker(args) => Ok(commands::broker::broker(args, shutdown).await?),
        Command::Toxiproxy(args) => commands::toxiproxy::serve(&args, shutdown).await,
        Command::Report(args) => commands::report::rebuild(&args),
        Command::Compare(args) => commands::compare::compare(&args),
        Command::Merge(args) => commands::merge::merge(&args, &shutdown).await,
    }
}
