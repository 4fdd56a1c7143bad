//! Node faults: restart, kill -9 (and start again), pause (SIGSTOP/SIGCONT), memory and
//! disk alarms, node loss. On warren's own nodes they go through the broker module and
//! rabbitmqctl; on an external broker through the commands the scenario gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, CTL_ANSWER_WITHIN};
use crate::scenario::{FaultAction, NodeCommands, NodeSelector};
use crate::seeded::splitmix;

/// The memory watermark that raises the memory alarm at once, and the default it goes back to.
const ALARM_WATERMARK: &str = "0.000001";
const NORMAL_WATERMARK: &str = "0.4";
/// The free-disk limit that raises the disk alarm at once, and the default it goes back to.
const ALARM_DISK_LIMIT: &str = "100000GB";
const NORMAL_DISK_LIMIT: &str = "50MB";

/// Why a node fault could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NodeFaultError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("{0}")]
    Unsupported(String),
}

/// What node faults act on.
pub struct NodeFaults {
    broker: Arc<Mutex<Broker>>,
    commands: Option<NodeCommands>,
    /// The run's queue, whose leader `node = "leader"` names.
    queue: String,
    seed: u64,
    draws: AtomicU64,
    /// Faults made and not yet taken back: (node, the step that undoes it).
    pending: std::sync::Mutex<Vec<(usize, Step)>>,
}

impl NodeFaults {
    /// Node faults on `broker`; `commands` for an external one.
    pub fn new(
        broker: Arc<Mutex<Broker>>,
        commands: Option<NodeCommands>,
        queue: String,
        seed: u64,
    ) -> Self {
        Self {
            broker,
            commands,
            queue,
            seed,
            draws: AtomicU64::new(0),
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Which node a selector means now.
    ///
    /// # Errors
    /// [`NodeFaultError`] when the leader cannot be found.
    pub async fn resolve(&self, selector: NodeSelector) -> Result<usize, NodeFaultError> {
        let mut broker = self.broker.lock().await;
        let count = broker.uris().len().max(1);
        match selector {
            NodeSelector::Index(i) => Ok(i),
            NodeSelector::Random => Ok((splitmix(
                self.seed ^ self.draws.fetch_add(1, Ordering::Relaxed),
            ) % count as u64) as usize),
            NodeSelector::Leader => match &mut *broker {
                Broker::Managed(cluster) => {
                    let leader = cluster.queue_leader(&self.queue).await?;
                    cluster
                        .specs()
                        .iter()
                        .position(|s| s.name == leader)
                        .ok_or_else(|| {
                            NodeFaultError::Unsupported(format!(
                                "the leader {leader} is not one of warren's nodes"
                            ))
                        })
                }
                Broker::External(_) => Err(NodeFaultError::Unsupported(
                    "node = \"leader\" needs a managed broker".into(),
                )),
            },
        }
    }

    /// The node a node fault will hit, resolved now (`None` for a rolling restart, which
    /// hits every node). Resolving the leader asks the broker, which takes a moment: the
    /// fault is recorded as begun once its node is known.
    ///
    /// # Errors
    /// [`NodeFaultError`] when the leader cannot be found or the action is not a node fault.
    pub async fn target(&self, action: &FaultAction) -> Result<Option<usize>, NodeFaultError> {
        match action {
            FaultAction::RollingRestart => Ok(None),
            FaultAction::Down { .. } | FaultAction::Toxic { .. } => {
                Err(NodeFaultError::Unsupported("not a node fault".into()))
            }
            FaultAction::BrokerRestart { node }
            | FaultAction::BrokerKill { node }
            | FaultAction::BrokerPause { node }
            | FaultAction::MemoryAlarm { node }
            | FaultAction::DiskAlarm { node }
            | FaultAction::NodeKill { node }
            | FaultAction::Partition { node } => self.resolve(*node).await.map(Some),
        }
    }

    /// Makes a node fault on `target` (from [`Self::target`]): the action, the wait of
    /// `lasting` (cut short by `cancel`), then what undoes it. Returns the node it hit
    /// (the number of nodes for a rolling restart).
    ///
    /// # Errors
    /// [`NodeFaultError`] from the broker or a command.
    pub async fn run(
        &self,
        action: &FaultAction,
        target: Option<usize>,
        lasting: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<usize, NodeFaultError> {
        if *action == FaultAction::RollingRestart {
            return self
                .rolling_restart(lasting.unwrap_or_default(), cancel)
                .await;
        }
        let (first, then): (Step, Option<Step>) = match action {
            FaultAction::BrokerRestart { .. } if lasting.is_some() => {
                (Step::Stop, Some(Step::Start))
            }
            FaultAction::BrokerRestart { .. } => (Step::Restart, None),
            FaultAction::BrokerKill { .. } => (Step::Kill, Some(Step::Start)),
            FaultAction::BrokerPause { .. } => (Step::Pause, Some(Step::Resume)),
            FaultAction::MemoryAlarm { .. } => (
                Step::Ctl(&["set_vm_memory_high_watermark", ALARM_WATERMARK]),
                Some(Step::Ctl(&[
                    "set_vm_memory_high_watermark",
                    NORMAL_WATERMARK,
                ])),
            ),
            FaultAction::DiskAlarm { .. } => (
                Step::Ctl(&["set_disk_free_limit", ALARM_DISK_LIMIT]),
                Some(Step::Ctl(&["set_disk_free_limit", NORMAL_DISK_LIMIT])),
            ),
            FaultAction::NodeKill { .. } => (Step::Kill, lasting.map(|_| Step::Start)),
            FaultAction::Partition { .. } => (Step::Cut, Some(Step::Heal)),
            FaultAction::Down { .. } | FaultAction::Toxic { .. } | FaultAction::RollingRestart => {
                return Err(NodeFaultError::Unsupported("not a node fault".into()));
            }
        };
        let index = target
            .ok_or_else(|| NodeFaultError::Unsupported("a node fault without a node".into()))?;
        self.step(first, index, cancel).await?;
        if let Some(then) = then {
            self.pending().push((index, then));
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(lasting.unwrap_or_default()) => {}
            }
            // Undoing is not cut short: a paused node must be resumed, an alarm cleared.
            // Should it fail (another fault holds the node), `heal` tries again.
            self.step(then, index, &CancellationToken::new()).await?;
            let mut pending = self.pending();
            if let Some(at) = pending.iter().position(|(n, s)| *n == index && *s == then) {
                pending.remove(at);
            }
        }
        Ok(index)
    }

    /// Restarts every node gracefully in turn, each answering AMQP again before the next
    /// goes, `pause` apart. Returns the number of nodes.
    async fn rolling_restart(
        &self,
        pause: Duration,
        cancel: &CancellationToken,
    ) -> Result<usize, NodeFaultError> {
        let count = self.broker.lock().await.uris().len();
        for index in 0..count {
            if index > 0 {
                tokio::select! {
                    () = cancel.cancelled() => return Ok(index),
                    () = tokio::time::sleep(pause) => {}
                }
            }
            self.step(Step::Restart, index, cancel).await?;
        }
        Ok(count)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Step)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn step(
        &self,
        step: Step,
        index: usize,
        cancel: &CancellationToken,
    ) -> Result<(), NodeFaultError> {
        if let Some(commands) = &self.commands {
            // An external broker: a command, and no lock, so undoing one fault never waits
            // for another fault's command.
            let commands = commands.clone();
            let (template, args): (Option<String>, &[&str]) = match step {
                Step::Restart => (commands.restart, &[]),
                Step::Stop | Step::Kill => (commands.kill, &[]),
                Step::Start => (commands.start, &[]),
                Step::Pause => (commands.pause, &[]),
                Step::Resume => (commands.resume, &[]),
                Step::Cut | Step::Heal => (None, &[]),
                Step::Ctl(args) => (commands.rabbitmqctl, args),
            };
            let template = template.ok_or_else(|| {
                NodeFaultError::Unsupported("no command for this node fault".into())
            })?;
            return run_command(&template, args, index).await;
        }
        let mut broker = self.broker.lock().await;
        match &mut *broker {
            Broker::Managed(cluster) => {
                match step {
                    Step::Restart => cluster.restart(index, cancel).await?,
                    Step::Stop => cluster.stop_node(index).await?,
                    Step::Kill => cluster.kill(index).await?,
                    Step::Start => cluster.start_node(index, cancel).await?,
                    Step::Pause => cluster.pause(index)?,
                    Step::Resume => cluster.resume(index)?,
                    Step::Cut => cluster.partition(index).await?,
                    Step::Heal => cluster.heal(index).await?,
                    Step::Ctl(args) => {
                        let name = cluster.specs()[index].name.clone();
                        cluster
                            .ctl()
                            .run(&name, args, Duration::from_secs(60))
                            .await?;
                    }
                }
                Ok(())
            }
            Broker::External(_) => Err(NodeFaultError::Unsupported(
                "an external broker without fault commands".into(),
            )),
        }
    }

    /// After any exit path: what is still in effect is taken back, paused nodes first (a
    /// paused node answers nothing, not even an alarm being cleared); on managed brokers
    /// every node is also resumed and every alarm cleared.
    pub async fn heal(&self) {
        let mut left: Vec<(usize, Step)> = std::mem::take(&mut *self.pending());
        left.sort_by_key(|(_, step)| !matches!(step, Step::Resume));
        for (index, step) in left {
            if let Err(error) = self.step(step, index, &CancellationToken::new()).await {
                tracing::error!(%error, node = index, "could not take a node fault back");
            }
        }
        let mut broker = self.broker.lock().await;
        if let Broker::Managed(cluster) = &mut *broker {
            for index in cluster.partitioned().to_vec() {
                let _ = cluster.heal(index).await;
            }
            for (index, spec) in cluster.specs().iter().enumerate() {
                let _ = cluster.resume(index);
                for args in [
                    ["set_vm_memory_high_watermark", NORMAL_WATERMARK],
                    ["set_disk_free_limit", NORMAL_DISK_LIMIT],
                ] {
                    let _ = cluster
                        .ctl()
                        .run(&spec.name, &args, CTL_ANSWER_WITHIN)
                        .await;
                }
            }
        }
    }
}

/// One thing done to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Restart,
    Stop,
    Kill,
    Start,
    Pause,
    Resume,
    /// Cut the node off from the others (a partition), and join it again.
    Cut,
    Heal,
    Ctl(&'static [&'static str]),
}

/// Runs an external-broker command with `{node}` replaced by the node index and `args`
/// appended (for rabbitmqctl).
async fn run_command(template: &str, args: &[&str], node: usize) -> Result<(), NodeFaultError> {
    let mut command_line = template.replace("{node}", &node.to_string());
    for arg in args {
        command_line.push(' ');
        command_line.push_str(arg);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command_line)
            .env("WARREN_NODE", node.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let failed = |output: String| NodeFaultError::Command {
        command: command_line.clone(),
        output,
    };
    match output {
        Err(_) => Err(failed("no end within 120 s".into())),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(failed(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}
