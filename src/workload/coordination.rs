//! How the workers of one run meet on the broker under test: each announces where it is
//! (arrived, consumers ready, publishing done, drained) on a transient fanout exchange
//! named after the run id, several times a second, and reads everyone's announcements
//! from its own exclusive queue. Announcements are state, not events, so one lost to a
//! broker restart is simply repeated; the meeting point is declared again after every
//! reconnection.
//!
//! Worker 0 leads: it says when the topology is declared and when publishing starts (one
//! instant on its clock), and echoes the last announcement it heard from each worker, so
//! every worker estimates its clock's offset from worker 0's as NTP does (offset
//! `((r0 - si) + (s0 - ri)) / 2`, error at most half the round trip `(ri - si) - (s0 - r0)`)
//! and runs on worker 0's time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use crate::amqp::Endpoints;
use crate::amqp::{AmqpChannel, Deliveries, PublishTarget};
use crate::events::EventLog;
use crate::share::{RunName, Share};

/// How often a worker repeats its announcement.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(200);
/// How long to wait before reconnecting after the meeting point failed.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// Clock samples a worker collects before trusting its offset (it keeps the best).
const CLOCK_SAMPLES: usize = 10;

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Connected to the meeting point.
    Arrived,
    /// Its consumers are consuming.
    Ready,
    /// Its publishers have ended.
    Published,
    /// Its consumers have drained and stopped.
    Drained,
    /// It gave up; everyone else does too.
    Failed,
}

/// One worker's announcement.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Announcement {
    run: String,
    worker: u32,
    count: u32,
    attempt: u8,
    phase: Phase,
    /// The sender's wall clock (ns since the Unix epoch) when it sent this.
    sent_ns: u64,
    /// Worker 0: the topology is declared.
    #[serde(default)]
    topology_ready: bool,
    /// Worker 0: when message 0 is due, on worker 0's clock.
    #[serde(default)]
    start_ns: Option<u64>,
    /// Worker 0: per worker, the last announcement heard (its `sent_ns`) and when (on
    /// worker 0's clock).
    #[serde(default)]
    echoes: Vec<(u32, u64, u64)>,
    /// Why it failed (with `Failed`).
    #[serde(default)]
    reason: Option<String>,
}

/// A worker's clock against worker 0's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// What this worker adds to its wall clock to read worker 0's (ns).
    pub offset_ns: i64,
    /// The estimate is within this much of the truth (half the best round trip, ns).
    pub bound_ns: u64,
}

/// Why the workers could not go on together (infrastructure: exit code 3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinationError {
    #[error(
        "worker(s) {missing:?} of {count} did not reach `{phase:?}` within {} s (run id {run})",
        within.as_secs()
    )]
    Missing {
        phase: Phase,
        missing: Vec<u32>,
        count: u32,
        within: Duration,
        run: String,
    },
    #[error("worker {worker} failed: {reason}")]
    PeerFailed { worker: u32, reason: String },
    #[error(
        "worker {worker} announced {theirs} workers for run {run}, this worker was given {ours}"
    )]
    CountMismatch {
        worker: u32,
        theirs: u32,
        ours: u32,
        run: String,
    },
    #[error(
        "worker {worker} arrived {:.1} s after the run started (run id {run}): a worker cannot join a run in progress",
        late_by.as_secs_f64()
    )]
    Late {
        worker: u32,
        late_by: Duration,
        run: String,
    },
    #[error("interrupted")]
    Interrupted,
}

/// What this worker knows of everyone.
struct Board {
    mine: Announcement,
    /// Latest announcement of each other worker, with when it arrived (our wall clock).
    others: BTreeMap<u32, (Announcement, u64)>,
    /// Clock samples against worker 0: (offset, round trip).
    samples: Vec<(i64, u64)>,
    /// A broken promise seen in someone's announcement.
    error: Option<CoordinationError>,
}

/// This worker's place at the meeting point; announcing runs in a task until dropped.
pub(crate) struct Coordination {
    share: Share,
    run: RunName,
    board: Arc<Mutex<Board>>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
    cancel: CancellationToken,
    /// The announcing task.
    task: Option<tokio::task::JoinHandle<()>>,
    /// How long any wait for the other workers may take.
    pub timeout: Duration,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Coordination {
    /// Joins the meeting point of run `run` on the broker (`uris`, never a proxy).
    pub fn join(
        uris: Arc<Endpoints>,
        share: Share,
        run: RunName,
        timeout: Duration,
        events: EventLog,
        cancel: &CancellationToken,
    ) -> Self {
        let mine = Announcement {
            run: run.text.clone(),
            worker: share.index,
            count: share.count,
            attempt: share.attempt,
            phase: Phase::Arrived,
            sent_ns: 0,
            topology_ready: false,
            start_ns: None,
            echoes: Vec::new(),
            reason: None,
        };
        let board = Arc::new(Mutex::new(Board {
            mine,
            others: BTreeMap::new(),
            samples: Vec::new(),
            error: None,
        }));
        let (notify, changed) = watch::channel(0u64);
        let stop = CancellationToken::new();
        let link = Arc::new(Link::new(
            format!("warren worker {share} of run {}", run.text),
            uris,
            share.index as usize,
            Duration::from_secs(10),
            events,
        ));
        let announcer = Announcer {
            board: board.clone(),
            notify,
            link,
            exchange: format!("warren.workers.{}", run.text),
            stop: stop.clone(),
        };
        let task = tokio::spawn(announcer.run());
        Self {
            share,
            run,
            board,
            changed,
            stop,
            cancel: cancel.clone(),
            task: Some(task),
            timeout,
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the meeting point: the last announcement goes out (so the others see this
    /// worker's final phase even when it exits right after), then the connection closes.
    pub async fn leave(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Announces `phase` (and everything worker 0 says with it).
    pub fn announce(&self, phase: Phase) {
        self.board().mine.phase = phase;
    }

    /// Worker 0: the topology is declared.
    pub fn topology_declared(&self) {
        self.board().mine.topology_ready = true;
    }

    /// Worker 0: message 0 is due at `start_ns` (its clock).
    pub fn start_at(&self, start_ns: u64) {
        self.board().mine.start_ns = Some(start_ns);
    }

    /// The run id as given.
    pub fn run_text(&self) -> &str {
        &self.run.text
    }

    /// Announces that this worker gives up, and why (the others stop waiting for it).
    pub async fn fail(&self, reason: &str) {
        {
            let mut board = self.board();
            board.mine.phase = Phase::Failed;
            board.mine.reason = Some(reason.to_string());
        }
        // Long enough for a few announcements to go out.
        tokio::time::sleep(ANNOUNCE_EVERY * 3).await;
    }

    /// Waits until `ready` says yes about the board, or the timeout (`missing` names who
    /// held it up), a peer's failure, or an interruption.
    async fn wait_for<T>(
        &self,
        phase: Phase,
        within: Duration,
        mut ready: impl FnMut(&Board) -> Option<T>,
    ) -> Result<T, CoordinationError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut changed = self.changed.clone();
        loop {
            {
                let board = self.board();
                if let Some(error) = &board.error {
                    return Err(error.clone());
                }
                if let Some(value) = ready(&board) {
                    return Ok(value);
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Err(CoordinationError::Interrupted),
                () = tokio::time::sleep_until(deadline) => {
                    let board = self.board();
                    let missing = (0..self.share.count)
                        .filter(|&w| w != self.share.index)
                        .filter(|w| board.others.get(w).is_none_or(|(a, _)| a.phase < phase))
                        .collect();
                    return Err(CoordinationError::Missing {
                        phase,
                        missing,
                        count: self.share.count,
                        within,
                        run: self.run.text.clone(),
                    });
                }
                _ = changed.changed() => {}
            }
        }
    }

    /// Waits until every worker has reached `phase`.
    ///
    /// # Errors
    /// [`CoordinationError`] naming the workers that did not, in time.
    pub async fn all_reached(
        &self,
        phase: Phase,
        within: Duration,
    ) -> Result<(), CoordinationError> {
        let me = self.share.index;
        let count = self.share.count;
        self.wait_for(phase, within, |board| {
            let everyone = (0..count)
                .filter(|&w| w != me)
                .all(|w| board.others.get(&w).is_some_and(|(a, _)| a.phase >= phase));
            (everyone && board.mine.phase >= phase).then_some(())
        })
        .await
    }

    /// Not worker 0: the offset of this worker's clock from worker 0's, from the best of a
    /// few round trips through the broker. Worker 0 is the reference (offset 0).
    ///
    /// # Errors
    /// Worker 0 did not answer in time.
    pub async fn clock_sync(&self) -> Result<ClockSync, CoordinationError> {
        if self.share.is_leader() {
            return Ok(ClockSync::default());
        }
        self.wait_for(Phase::Arrived, self.timeout, |board| {
            (board.samples.len() >= CLOCK_SAMPLES).then(|| {
                let (offset_ns, round_trip) = board
                    .samples
                    .iter()
                    .copied()
                    .min_by_key(|(_, d)| *d)
                    .expect("samples were collected");
                ClockSync {
                    offset_ns,
                    bound_ns: round_trip / 2,
                }
            })
        })
        .await
    }

    /// Not worker 0: waits until worker 0 has declared the topology.
    ///
    /// # Errors
    /// Worker 0 did not, in time.
    pub async fn topology_ready(&self) -> Result<(), CoordinationError> {
        self.wait_for(Phase::Arrived, self.timeout, |board| {
            board
                .others
                .get(&0)
                .is_some_and(|(a, _)| a.topology_ready)
                .then_some(())
        })
        .await
    }

    /// Not worker 0: the start instant worker 0 has already announced, if it has. A worker
    /// that sees one before it said it was ready arrived after the run began.
    pub fn start_announced(&self) -> Option<u64> {
        self.board().others.get(&0).and_then(|(a, _)| a.start_ns)
    }

    /// Not worker 0: waits for the start instant worker 0 announces (its clock).
    ///
    /// # Errors
    /// Worker 0 did not announce one in time.
    pub async fn start_ns(&self) -> Result<u64, CoordinationError> {
        self.wait_for(Phase::Ready, self.timeout, |board| {
            board.others.get(&0).and_then(|(a, _)| a.start_ns)
        })
        .await
    }

    /// Every worker's attempt number, as announced (this worker's own included).
    pub fn attempts(&self) -> Vec<u8> {
        let board = self.board();
        (0..self.share.count)
            .map(|w| {
                if w == self.share.index {
                    self.share.attempt
                } else {
                    board.others.get(&w).map_or(0, |(a, _)| a.attempt)
                }
            })
            .collect()
    }
}

impl Drop for Coordination {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The task that announces and listens.
struct Announcer {
    board: Arc<Mutex<Board>>,
    notify: watch::Sender<u64>,
    link: Arc<Link>,
    exchange: String,
    stop: CancellationToken,
}

impl Announcer {
    async fn run(self) {
        while !self.stop.is_cancelled() {
            if let Some((channel, deliveries)) = self.meet().await {
                self.converse(&channel, deliveries).await;
                channel.close().await;
            }
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
        self.link.close().await;
    }

    /// Connects and declares the meeting point; None when that failed (tried again later).
    async fn meet(&self) -> Option<(AmqpChannel, Deliveries)> {
        let leased = self.link.lease(None, &self.stop).await?;
        let channel = leased.connection.open_channel().await.ok()?;
        let queue = channel.declare_meeting_point(&self.exchange).await.ok()?;
        let deliveries = channel.consume(&queue, "", true, None).await.ok()?;
        Some((channel, deliveries))
    }

    /// Announces every [`ANNOUNCE_EVERY`] and reads announcements, until the channel fails
    /// or the worker leaves.
    async fn converse(&self, channel: &AmqpChannel, mut deliveries: Deliveries) {
        let target = PublishTarget::new(&self.exchange, "", false, false);
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    // A last word, so that the others see the final phase at once.
                    let _ = channel.publish(&target, &self.announcement()).await;
                    return;
                }
                _ = tick.tick() => {
                    if channel.publish(&target, &self.announcement()).await.is_err() {
                        return;
                    }
                }
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => self.heard(&delivery.body),
                    _ => return,
                },
            }
        }
    }

    fn announcement(&self) -> Vec<u8> {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.mine.sent_ns = wall_ns();
        if board.mine.worker == 0 {
            board.mine.echoes = board
                .others
                .iter()
                .map(|(w, (a, received))| (*w, a.sent_ns, *received))
                .collect();
        }
        serde_json::to_vec(&board.mine).expect("an announcement serializes")
    }

    fn heard(&self, body: &[u8]) {
        let received = wall_ns();
        let Ok(theirs) = serde_json::from_slice::<Announcement>(body) else {
            return;
        };
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        let (my_run, me, my_count) = (board.mine.run.clone(), board.mine.worker, board.mine.count);
        if theirs.run != my_run || theirs.worker == me {
            return;
        }
        if theirs.count != my_count && board.error.is_none() {
            board.error = Some(CoordinationError::CountMismatch {
                worker: theirs.worker,
                theirs: theirs.count,
                ours: my_count,
                run: my_run,
            });
        }
        if theirs.phase == Phase::Failed && board.error.is_none() {
            board.error = Some(CoordinationError::PeerFailed {
                worker: theirs.worker,
                reason: theirs.reason.clone().unwrap_or_default(),
            });
        }
        if theirs.worker == 0 {
            if let Some(&(_, mine_sent, leader_received)) =
                theirs.echoes.iter().find(|(w, _, _)| *w == me)
            {
                if mine_sent > 0 {
                    let (si, r0, s0, ri) = (
                        i128::from(mine_sent),
                        i128::from(leader_received),
                        i128::from(theirs.sent_ns),
                        i128::from(received),
                    );
                    let offset = ((r0 - si) + (s0 - ri)) / 2;
                    let round_trip = (ri - si) - (s0 - r0);
                    if round_trip >= 0 {
                        board.samples.push((offset as i64, round_trip as u64));
                    }
                }
            }
        }
        // A worker never goes back a phase; a late repeat of an older announcement is
        // ignored.
        let newer = board
            .others
            .get(&theirs.worker)
            .is_none_or(|(a, _)| a.sent_ns <= theirs.sent_ns);
        if newer {
            board.others.insert(theirs.worker, (theirs, received));
        }
        drop(board);
        self.notify.send_modify(|n| *n += 1);
    }
}
