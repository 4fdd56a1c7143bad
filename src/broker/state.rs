//! The state file of `warren broker up`: which private nodes run, where, under which
//! pids, so that `warren broker status` and `warren broker down` can find them later,
//! from another process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::BrokerError;
use super::process::{is_alive, is_node_vm, signal, signal_group, state, wait_gone};
use super::rootfs::{RabbitRoot, remove_broker_folders};
use crate::amqp::{probe, probe_uri};

/// Environment variable that moves the state file (tests use their own).
pub const STATE_FILE_VAR: &str = "WARREN_STATE_FILE";

/// A managed broker as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    /// Layout version of this file.
    pub format: u32,
    /// The broker's folder (data, logs, cookie).
    pub base_dir: PathBuf,
    /// Keep the folder when the broker is stopped.
    pub keep: bool,
    /// The warren process that started the broker.
    pub owner_pid: u32,
    pub epmd_pid: u32,
    pub epmd_port: u16,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub nodes: Vec<NodeRecord>,
    /// The root file system RabbitMQ runs from, when not this machine's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_root: Option<PathBuf>,
    /// The outermost folder made inside that root for the broker's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<PathBuf>,
    /// The CA and certificates of TLS nodes (`broker up --tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRecord>,
}

/// The TLS of recorded nodes: the CA clients trust, and whether the nodes demand a
/// client certificate (warren's own is among the files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRecord {
    #[serde(flatten)]
    pub files: super::tls::TlsFiles,
    pub client_auth: bool,
}

/// One node as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub amqp_port: u16,
    pub dist_port: u16,
    /// The Erlang VM's pid (also its process group).
    pub pid: u32,
    /// AMQP URI (the default guest account, loopback only).
    pub uri: String,
}

/// What `status` says of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// The VM runs and answers AMQP.
    Running,
    /// The VM is frozen with SIGSTOP.
    Paused,
    /// The VM runs but does not answer AMQP (booting, stopping or overloaded).
    Unresponsive,
    /// No VM.
    Stopped,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Running => "running",
            NodeState::Paused => "paused",
            NodeState::Unresponsive => "unresponsive",
            NodeState::Stopped => "stopped",
        })
    }
}

/// The state file's path: `$WARREN_STATE_FILE`, else `$XDG_STATE_HOME/warren/broker.json`,
/// else `~/.local/state/warren/broker.json`.
pub fn default_path() -> PathBuf {
    if let Some(path) = std::env::var_os(STATE_FILE_VAR) {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("warren").join("broker.json")
}

impl BrokerState {
    /// Runs rabbitmqctl `args` against the recorded node `node` (with the broker's cookie,
    /// port mapper and account) and returns its output.
    ///
    /// # Errors
    /// [`BrokerError`] when rabbitmq is not installed or the command fails.
    pub async fn rabbitmqctl(&self, node: &str, args: &[&str]) -> Result<String, BrokerError> {
        let root = self.root()?;
        let ctl = super::ctl::Ctl {
            install: super::install::RabbitInstall::locate(root.as_ref())?,
            home: self.base_dir.clone(),
            epmd_port: self.epmd_port,
            account: super::rootfs::RabbitRoot::node_account(root.as_ref())?,
        };
        ctl.run(node, args, std::time::Duration::from_secs(60))
            .await
    }

    /// The recorded root RabbitMQ runs from.
    fn root(&self) -> Result<Option<RabbitRoot>, BrokerError> {
        self.rabbitmq_root
            .as_deref()
            .map(RabbitRoot::open)
            .transpose()
    }

    /// Reads the state file; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`BrokerError::StateFile`] when it exists but cannot be read.
    pub fn load(path: &Path) -> Result<Option<Self>, BrokerError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| BrokerError::StateFile {
                    path: path.to_path_buf(),
                    reason: format!("unreadable ({e}); delete it if no private broker runs"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BrokerError::StateFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// Writes the state file atomically (a temporary file renamed over it).
    ///
    /// # Errors
    /// [`BrokerError::StateFile`] when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), BrokerError> {
        let fail = |e: std::io::Error| BrokerError::StateFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("the state serializes");
        std::fs::write(&temporary, text).map_err(fail)?;
        std::fs::rename(&temporary, path).map_err(fail)
    }

    /// Removes the state file if it is there.
    pub fn remove(path: &Path) {
        let _ = std::fs::remove_file(path);
    }

    /// True when the recorded pid is still this node's VM.
    fn vm_alive(&self, node: &NodeRecord) -> bool {
        node.pid != 0 && is_alive(node.pid) && is_node_vm(node.pid, &node.name, &self.base_dir)
    }

    /// The state of each node, in order.
    pub async fn node_states(&self) -> Vec<NodeState> {
        let tls = self
            .tls
            .as_ref()
            .and_then(|record| record.files.client(record.client_auth).ok());
        let mut states = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let uri: Option<crate::broker_uri::BrokerUri> = node.uri.parse().ok();
            states.push(if !self.vm_alive(node) {
                NodeState::Stopped
            } else if state(node.pid) == Some('T') {
                NodeState::Paused
            } else if match &uri {
                Some(uri) => probe_uri(uri, tls.as_ref(), Duration::from_secs(3))
                    .await
                    .is_ok(),
                None => probe("127.0.0.1", node.amqp_port, Duration::from_secs(3))
                    .await
                    .is_ok(),
            } {
                NodeState::Running
            } else {
                NodeState::Unresponsive
            });
        }
        states
    }

    /// True when any recorded node's VM still runs.
    pub fn any_alive(&self) -> bool {
        self.nodes.iter().any(|n| self.vm_alive(n))
    }

    /// Stops every recorded node (SIGTERM, then SIGKILL after `grace`), the epmd, and
    /// removes the folder unless kept. Returns how many nodes were running.
    pub async fn stop_all(&self, grace: Duration) -> usize {
        let alive: Vec<&NodeRecord> = self.nodes.iter().filter(|n| self.vm_alive(n)).collect();
        for node in &alive {
            signal(node.pid, Signal::SIGCONT);
            signal(node.pid, Signal::SIGTERM);
        }
        for node in &alive {
            if !wait_gone(node.pid, grace).await {
                signal_group(node.pid, Signal::SIGKILL);
                wait_gone(node.pid, Duration::from_secs(5)).await;
            }
            signal_group(node.pid, Signal::SIGKILL);
        }
        let epmd_is_ours = super::process::command_line(self.epmd_pid)
            .is_some_and(|cmd| cmd.contains("epmd") && cmd.contains(&self.epmd_port.to_string()));
        if epmd_is_ours {
            signal(self.epmd_pid, Signal::SIGKILL);
            wait_gone(self.epmd_pid, Duration::from_secs(5)).await;
        }
        remove_broker_folders(
            &self.base_dir,
            self.keep,
            self.root().ok().flatten().as_ref(),
            self.mount_point.as_deref(),
        );
        alive.len()
    }
}
