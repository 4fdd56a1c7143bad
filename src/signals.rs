//! Ctrl-C and SIGTERM: the first cancels the run (which then tears down and writes what it
//! has), a second one exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Spawns a task that cancels `shutdown` on the first SIGINT or SIGTERM and exits the
/// process with code 130 on the second.
///
/// # Errors
/// The I/O error when the signal handlers cannot be installed.
pub fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if round == 0 {
                eprintln!("warren: stopping and cleaning up (press Ctrl-C again to quit at once)");
                shutdown.cancel();
            } else {
                eprintln!("warren: quitting at once");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
