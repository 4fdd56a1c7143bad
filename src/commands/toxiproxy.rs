//! `warren toxiproxy`: the embedded Toxiproxy-compatible server on its own, for people
//! without Go or Docker.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::ToxiproxyArgs;
use crate::exit::{Exit, UsageError};
use crate::toxiproxy::{Registry, api};

/// Serves the API until Ctrl-C, then deletes every proxy.
///
/// # Errors
/// A usage error (exit 2) when the address is not host:port, an I/O error when it cannot be bound.
pub async fn serve(args: &ToxiproxyArgs, shutdown: CancellationToken) -> anyhow::Result<Exit> {
    if args
        .listen
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(UsageError(format!(
            "--listen {}: expected host:port, like 127.0.0.1:8474",
            args.listen
        ))
        .into());
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    crate::say!(
        "Toxiproxy-compatible API (Toxiproxy {}) on http://{address}; Ctrl-C stops it",
        api::TOXIPROXY_VERSION
    );
    let registry = Registry::new();
    api::serve(listener, registry.clone(), shutdown).await;
    registry.clear().await;
    crate::say!("stopped; every proxy deleted");
    Ok(Exit::Success)
}
