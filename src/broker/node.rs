//! One private RabbitMQ node: its folder, ports and Erlang VM process, and what can be done
//! to it (start and wait until AMQP answers, graceful stop, kill -9, pause, resume).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::BrokerError;
use super::account::Account;
use super::ctl::erlang_env;
use super::install::{RabbitInstall, ReleaseVersion};
use super::process::{die_with_parent, signal, signal_group};
use crate::amqp::{TlsClient, probe_uri};
use crate::broker_uri::BrokerUri;

/// Where a node lives and listens. Kept across restarts, so data survives them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    /// Position in the cluster (0 = the seed node others join).
    pub index: usize,
    /// Erlang node name, like `warren-1@localhost`.
    pub name: String,
    /// AMQP listener on 127.0.0.1.
    pub amqp_port: u16,
    /// Erlang distribution (inter-node and CLI) port on 127.0.0.1.
    pub dist_port: u16,
    /// The node's folder: data (mnesia), logs, config.
    pub dir: PathBuf,
    /// The AMQP listener speaks TLS only (amqps).
    #[serde(default)]
    pub tls: bool,
}

/// What every node of one broker shares.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    pub install: RabbitInstall,
    /// The broker's folder: holds the shared `.erlang.cookie` and every node's folder.
    pub home: PathBuf,
    pub epmd_port: u16,
    pub account: Account,
    /// False for `broker up --detach`: those nodes must outlive warren.
    pub die_with_warren: bool,
    /// How warren's own connections speak TLS to nodes whose listener is TLS.
    pub tls: Option<TlsClient>,
}

/// How long a node may take to boot before warren gives up on it.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a graceful stop may take before the VM is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// A node and, while it runs, its VM process.
pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
    /// The VM's pid (also its process group id).
    pid: Option<u32>,
    paused: bool,
}

impl NodeSpec {
    /// The node's AMQP URI with the default guest account (loopback only).
    pub fn uri(&self) -> BrokerUri {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
            .parse()
            .expect("a loopback AMQP URI always parses")
    }

    /// Writes the node's folder: config that ignores /etc/rabbitmq, no plugins, only
    /// settings `release` accepts and acts on (see [`node_config`]), and the TLS
    /// listener's lines for a TLS node.
    ///
    /// # Errors
    /// The I/O error of the file that could not be written.
    pub fn prepare(
        &self,
        in_cluster: bool,
        release: Option<ReleaseVersion>,
        tls: Option<&str>,
    ) -> std::io::Result<()> {
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(self.dir.join(sub))?;
        }
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(self.dir.join("advanced.config"), "[].\n")?;
        std::fs::write(self.dir.join("rabbitmq-env.conf"), "")?;
        let mut config = node_config(in_cluster, release);
        if let Some(lines) = tls {
            config.push_str(lines);
        }
        std::fs::write(self.dir.join("rabbitmq.conf"), config)?;
        Ok(())
    }

    fn command(&self, env: &NodeEnv) -> Result<Command, BrokerError> {
        let dir = &self.dir;
        let mut command = env
            .install
            .command(&env.install.server, &env.account, &env.home, dir)?;
        erlang_env(&mut command, &env.home, env.epmd_port);
        // A partitionable cluster's node sees the other nodes through its own inetrc.
        let inetrc = dir.join("inetrc");
        if inetrc.exists() {
            command.env("ERL_INETRC", inetrc);
        }
        // A TLS node's listeners are in its rabbitmq.conf: these variables would add a
        // plain one on the same port.
        if !self.tls {
            command
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string());
        }
        command
            // Makes the script exec the VM, so the child's pid is the VM's pid.
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_LOGS", dir.join("log").join("rabbit.log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        // After the account switch (in `command` above): a change of user clears it.
        if env.die_with_warren {
            die_with_parent(&mut command);
        }
        Ok(command)
    }
}

impl Node {
    /// A node that is not running yet.
    pub fn new(spec: NodeSpec) -> Self {
        Self {
            spec,
            child: None,
            pid: None,
            paused: false,
        }
    }

    /// The VM's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// True when the node was paused with SIGSTOP and not resumed.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True while the VM process exists.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the VM and waits until the node answers AMQP.
    ///
    /// # Errors
    /// [`BrokerError::NodeFailed`] with the end of its logs when it exits or does not
    /// answer within [`START_TIMEOUT`]; [`BrokerError::Interrupted`] when `cancel` fires.
    pub async fn start(
        &mut self,
        env: &NodeEnv,
        cancel: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let pid_file = self.spec.dir.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.dir.join("log").join("console.log"))
            .map_err(|e| BrokerError::io("open the node's console.log", e))?;
        env.account
            .own(&self.spec.dir.join("log"))
            .map_err(|e| BrokerError::io("chown the node's log folder", e))?;
        let mut command = self.spec.command(env)?;
        command
            .stdout(
                console
                    .try_clone()
                    .map_err(|e| BrokerError::io("open console.log", e))?,
            )
            .stderr(console);
        let child = command.spawn().map_err(|e| {
            BrokerError::io(
                &format!("start {}", env.install.describe(&env.install.server)),
                e,
            )
        })?;
        self.pid = child.id();
        self.child = Some(child);
        self.paused = false;
        self.wait_ready(env.tls.as_ref(), cancel).await
    }

    async fn wait_ready(
        &mut self,
        tls: Option<&TlsClient>,
        cancel: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let uri = self.spec.uri();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if cancel.is_cancelled() {
                return Err(BrokerError::Interrupted);
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    self.pid = None;
                    return Err(self.failed(format!("the Erlang VM exited during boot ({status})")));
                }
            }
            if probe_uri(&uri, tls, Duration::from_secs(2)).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.failed(format!(
                    "no AMQP answer on port {} within {} s",
                    self.spec.amqp_port,
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(BrokerError::Interrupted),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    fn failed(&self, reason: String) -> BrokerError {
        BrokerError::NodeFailed {
            node: self.spec.name.clone(),
            reason,
            log: log_tail(&self.spec.dir, 15),
        }
    }

    /// Stops the node gracefully (SIGTERM, as systemd would), killing it after [`STOP_GRACE`].
    pub async fn stop(&mut self) {
        let Some(pid) = self.pid else { return };
        signal(pid, Signal::SIGCONT);
        self.paused = false;
        signal(pid, Signal::SIGTERM);
        if let Some(child) = &mut self.child {
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(node = %self.spec.name, "no graceful stop within {} s, killing", STOP_GRACE.as_secs());
            }
        }
        self.kill().await;
    }

    /// Kills the node with SIGKILL (kill -9) and reaps it; data on disk stays.
    pub async fn kill(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        signal_group(pid, Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.paused = false;
    }

    /// Kills at once without waiting, for teardown from `Drop`.
    pub fn kill_now(&mut self) {
        if let Some(pid) = self.pid.take() {
            signal_group(pid, Signal::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }

    /// Freezes the VM with SIGSTOP: connections stay open, nothing answers.
    ///
    /// # Errors
    /// [`BrokerError::NotRunning`] when the node is down.
    pub fn pause(&mut self) -> Result<(), BrokerError> {
        let pid = self.running_pid()?;
        signal(pid, Signal::SIGSTOP);
        self.paused = true;
        Ok(())
    }

    /// Lets a paused VM go on with SIGCONT.
    ///
    /// # Errors
    /// [`BrokerError::NotRunning`] when the node is down.
    pub fn resume(&mut self) -> Result<(), BrokerError> {
        let pid = self.running_pid()?;
        signal(pid, Signal::SIGCONT);
        self.paused = false;
        Ok(())
    }

    fn running_pid(&mut self) -> Result<u32, BrokerError> {
        let running = self.is_running();
        match self.pid {
            Some(pid) if running => Ok(pid),
            _ => Err(BrokerError::NotRunning {
                node: self.spec.name.clone(),
            }),
        }
    }

    /// Leaves the VM running after warren exits.
    pub fn detach(&mut self) {
        self.child.take();
    }
}

/// The first release without Mnesia, where partition handling strategies have no effect
/// (Khepri's Raft decides; RabbitMQ asks that the keys be removed).
const WITHOUT_PARTITION_HANDLING: ReleaseVersion = ReleaseVersion {
    major: 4,
    minor: 3,
    patch: 0,
};

/// A private node's rabbitmq.conf. A node of a cluster handles partitions with
/// `pause_minority` (a node that loses sight of the majority stops serving clients until it
/// sees them again), the setting RabbitMQ recommends for clusters of three or more nodes on
/// Mnesia; RabbitMQ's own default, `ignore`, leaves both sides serving and the cluster
/// split after the partition heals. From 4.3 (no Mnesia) the key does nothing and is left
/// out. An install whose release is unknown gets it: every release accepts it.
pub fn node_config(in_cluster: bool, release: Option<ReleaseVersion>) -> String {
    let mut text = String::from(
        "# written by warren for a private node\nloopback_users.guest = true\nlog.console = false\nlog.file.level = info\n",
    );
    if in_cluster && release.is_none_or(|r| r < WITHOUT_PARTITION_HANDLING) {
        text.push_str("cluster_partition_handling = pause_minority\n");
    }
    text
}

/// The last lines of a node's console and main log, for error messages.
pub fn log_tail(dir: &Path, lines: usize) -> String {
    let mut out = String::new();
    for file in ["log/console.log", "log/rabbit.log"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            if !tail.is_empty() {
                out.push_str(&format!(
                    "--- {} (last {} lines)\n",
                    dir.join(file).display(),
                    tail.len()
                ));
                for line in tail.iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_gets_only_the_settings_its_release_acts_on() {
        let release = |text| ReleaseVersion::parse(text);
        let pause = "cluster_partition_handling = pause_minority";
        for version in ["3.10.8", "4.0.5", "4.2.1"] {
            assert!(
                node_config(true, release(version)).contains(pause),
                "{version}"
            );
            assert!(
                !node_config(false, release(version)).contains(pause),
                "{version}"
            );
        }
        assert!(!node_config(true, release("4.3.0")).contains(pause));
        assert!(node_config(true, None).contains(pause));
        assert!(node_config(false, None).contains("loopback_users.guest = true"));
    }
}
