//! The `warren` binary: parses the command line, sets up logging and signals, runs the
//! command, and turns its result into an exit code.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use warren::cli::Cli;
use warren::exit::{Exit, for_error};

/// mimalloc instead of the system allocator: the AMQP client allocates per frame and per
/// confirm, and glibc's malloc cost about 10% of warren's CPU per message (benches/e2e.sh,
/// measured with the earlier client: 1+1, 15.7 → 14.1 µs per delivered message; 4+4,
/// 19.0 → 17.1 µs). Built without its transparent-huge-page advice (feature `no_thp`):
/// with it, memory freed and used again came back as 2 MiB pages, each zeroed in a page
/// fault (7% of warren's CPU samples at 500 + 500 clients), and the peak resident memory
/// was 17 MB higher (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // One thread for all of warren's work, the AMQP client's socket I/O included: on a
    // 2-core machine shared with the broker, a publish, its confirm and a delivery that
    // cross no thread measured cheapest per message (benches/README.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Infrastructure.into();
        }
    };
    let shutdown = CancellationToken::new();
    let exit = runtime.block_on(async {
        if let Err(error) = warren::signals::cancel_on_signals(shutdown.clone()) {
            eprintln!("error: cannot install signal handlers: {error}");
            return Exit::Infrastructure;
        }
        match warren::run(cli, shutdown).await {
            Ok(exit) => exit,
            Err(error) => {
                eprintln!("error: {}", warren::redact::redact(&format!("{error:#}")));
                for_error(&error)
            }
        }
    });
    exit.into()
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
