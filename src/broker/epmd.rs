//! A private Erlang port mapper (epmd) per managed broker, on its own port: nodes of
//! different runs never see each other, and no epmd outlives the run that started it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

use super::BrokerError;
use super::account::Account;
use super::install::RabbitInstall;
use super::process::{die_with_parent, signal, signal_group};

/// A running epmd owned by warren.
pub struct Epmd {
    /// The port it listens on (nodes and rabbitmqctl get it as ERL_EPMD_PORT).
    pub port: u16,
    /// Its process id, recorded in the state file for `warren broker down`.
    pub pid: u32,
    child: Option<Child>,
}

impl Epmd {
    /// Starts the install's epmd on 127.0.0.1:`port`, in the broker's folder `base` (where
    /// its log goes), and waits until it accepts connections.
    ///
    /// # Errors
    /// [`BrokerError::Io`] when it cannot be started, [`BrokerError::NodeFailed`] when it
    /// does not listen within 10 s.
    pub async fn start(
        install: &RabbitInstall,
        port: u16,
        account: Account,
        base: &Path,
        detachable: bool,
    ) -> Result<Self, BrokerError> {
        let log = std::fs::File::create(base.join("epmd.log"))
            .map_err(|e| BrokerError::io("create epmd.log", e))?;
        let mut command = install.command(&install.epmd, &account, base, base)?;
        command
            .args(["-port", &port.to_string(), "-address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| BrokerError::io("open epmd.log", e))?,
            )
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        if !detachable {
            die_with_parent(&mut command);
        }
        let child = command.spawn().map_err(|e| {
            BrokerError::io(&format!("start {}", install.describe(&install.epmd)), e)
        })?;
        let pid = child.id().unwrap_or_default();
        let mut epmd = Self {
            port,
            pid,
            child: Some(child),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                epmd.stop_now();
                return Err(BrokerError::NodeFailed {
                    node: format!("epmd on port {port}"),
                    reason: "did not listen within 10 s".into(),
                    log: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(epmd)
    }

    /// Stops epmd at once (it holds no data).
    pub fn stop_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
        kill_strays(self.port);
        // A VM killed while it was starting one may still be daemonizing it.
        std::thread::sleep(Duration::from_millis(250));
        kill_strays(self.port);
    }

    /// Stops epmd and reaps it.
    pub async fn stop(&mut self) {
        match self.child.take() {
            Some(mut child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            None => {
                signal(self.pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        kill_strays(self.port);
    }

    /// Leaves epmd running after warren exits (for `warren broker up --detach`).
    pub fn detach(&mut self) {
        self.child.take();
    }
}

/// Kills every `epmd -daemon` serving `port` (its environment has `ERL_EPMD_PORT=port`):
/// an Erlang VM of ours that was still starting when our epmd went (a cancelled start)
/// finds no port mapper and starts one of its own, which daemonizes out of every process
/// group we signal and would outlive the run.
fn kill_strays(port: u16) {
    let wanted = format!("ERL_EPMD_PORT={port}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let is_epmd = std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "epmd");
        if !is_epmd {
            continue;
        }
        let serves_port = std::fs::read(entry.path().join("environ")).is_ok_and(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| var == wanted.as_bytes())
        });
        if serves_port {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
