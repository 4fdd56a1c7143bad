//! `warren broker up | status | down | ctl`: a private node or cluster for exploring by
//! hand, recorded in a state file so that another warren process can find it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::state::{BrokerState, NodeState, default_path};
use crate::broker::{BrokerError, ClusterOptions, ManagedCluster};
use crate::cli::{BrokerArgs, BrokerCommand, BrokerCtlArgs, BrokerUpArgs};
use crate::exit::Exit;

/// Runs one `warren broker` subcommand.
///
/// # Errors
/// [`BrokerError`] when the broker cannot be started, read or stopped.
pub async fn broker(args: BrokerArgs, cancel: CancellationToken) -> Result<Exit, BrokerError> {
    let state_path = args.state_file.unwrap_or_else(default_path);
    match args.command {
        BrokerCommand::Up(up_args) => up(up_args, &state_path, cancel).await,
        BrokerCommand::Status => status(&state_path).await,
        BrokerCommand::Down => down(&state_path).await,
        BrokerCommand::Ctl(ctl_args) => ctl(ctl_args, &state_path).await,
    }
}

/// rabbitmqctl against the first recorded node; its output is printed as it is.
async fn ctl(args: BrokerCtlArgs, state_path: &Path) -> Result<Exit, BrokerError> {
    let Some(state) = BrokerState::load(state_path)? else {
        crate::say!("no private broker recorded ({})", state_path.display());
        return Ok(Exit::Infrastructure);
    };
    let Some(node) = state.nodes.first() else {
        return Ok(Exit::Infrastructure);
    };
    let words: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let output = state.rabbitmqctl(&node.name, &words).await?;
    crate::say_raw!("{output}");
    Ok(Exit::Success)
}

async fn up(
    args: BrokerUpArgs,
    state_path: &Path,
    cancel: CancellationToken,
) -> Result<Exit, BrokerError> {
    if let Some(existing) = BrokerState::load(state_path)? {
        if existing.any_alive() {
            return Err(BrokerError::AlreadyUp {
                path: state_path.to_path_buf(),
            });
        }
        BrokerState::remove(state_path);
    }
    crate::say!(
        "starting {} private RabbitMQ node{}...",
        args.nodes,
        if args.nodes == 1 { "" } else { "s" }
    );
    let options = ClusterOptions {
        nodes: args.nodes,
        first_port: args.port,
        keep: args.keep,
        detachable: args.detach,
        parent_dir: None,
        partitionable: false,
        rabbitmq_root: args.rabbitmq_root.filter(|dir| !dir.as_os_str().is_empty()),
        tls: args.tls.then_some(crate::tls::ManagedTls {
            client_auth: args.tls_client_auth,
        }),
    };
    let cluster = match ManagedCluster::start(options, &cancel).await {
        Err(BrokerError::Interrupted) => {
            crate::say!("interrupted; nothing was left running");
            return Ok(Exit::Interrupted);
        }
        other => other?,
    };
    let state = cluster.state();
    if let Err(e) = state.save(state_path) {
        cluster.shutdown().await;
        return Err(e);
    }
    for (spec, uri) in cluster.specs().iter().zip(cluster.uris()) {
        crate::say!("  {}  {}", spec.name, uri.expose());
    }
    if let Some(files) = cluster.tls_files() {
        crate::say!(
            "TLS CA (trust it with [broker.tls] ca_file): {}",
            files.ca_cert.display()
        );
        if args.tls_client_auth {
            crate::say!(
                "client certificate (cert_file, key_file): {} {}",
                files.client_cert.display(),
                files.client_key.display()
            );
        }
    }
    crate::say!("data and logs: {}", cluster.base_dir().display());
    if args.detach {
        cluster.detach();
        crate::say!(
            "left running; `warren broker status` lists the nodes, `warren broker down` stops them"
        );
        return Ok(Exit::Success);
    }
    crate::say!("running until Ctrl-C");
    let stopped_elsewhere = wait_for_stop(state_path, &cancel).await;
    if stopped_elsewhere {
        crate::say!("the state file was removed (warren broker down?); stopping");
    } else {
        crate::say!("stopping the nodes...");
    }
    cluster.shutdown().await;
    BrokerState::remove(state_path);
    crate::say!("stopped");
    Ok(Exit::Success)
}

/// Waits for Ctrl-C; true when instead the state file disappeared.
async fn wait_for_stop(state_path: &Path, cancel: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if !state_path.exists() {
                    return true;
                }
            }
        }
    }
}

async fn status(state_path: &Path) -> Result<Exit, BrokerError> {
    let Some(state) = BrokerState::load(state_path)? else {
        crate::say!("no private broker recorded ({})", state_path.display());
        crate::say!("0 of 0 nodes running");
        return Ok(Exit::Infrastructure);
    };
    let states = state.node_states().await;
    let width = state.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (node, node_state) in state.nodes.iter().zip(&states) {
        crate::say!(
            "{:width$}  {:12}  {}  pid {}",
            node.name,
            node_state.to_string(),
            node.uri,
            node.pid
        );
    }
    let running = states.iter().filter(|s| **s == NodeState::Running).count();
    crate::say!("{running} of {} nodes running", state.nodes.len());
    Ok(if running == state.nodes.len() {
        Exit::Success
    } else {
        Exit::Infrastructure
    })
}

async fn down(state_path: &Path) -> Result<Exit, BrokerError> {
    let Some(state) = BrokerState::load(state_path)? else {
        crate::say!(
            "no private broker recorded ({}); nothing to stop",
            state_path.display()
        );
        return Ok(Exit::Success);
    };
    let stopped = state.stop_all(crate::broker::STOP_GRACE).await;
    BrokerState::remove(state_path);
    let folder: PathBuf = state.base_dir.clone();
    crate::say!(
        "stopped {stopped} of {} nodes; {}",
        state.nodes.len(),
        if state.keep {
            format!("data kept in {}", folder.display())
        } else {
            format!("removed {}", folder.display())
        }
    );
    Ok(Exit::Success)
}
