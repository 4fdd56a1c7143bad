//! The client threads: N threads, each with a current-thread runtime of its own, each
//! owning a share of the publishers and consumers (a client never moves) and their
//! connections. Tasks on one thread share that thread's records ([`ThreadRecords`]); the
//! coordinator stays on the caller's runtime and talks to the threads through channels:
//! it hands them tasks to run, asks them what their consumers have seen, and at the end
//! takes their records back to merge, exactly as the tasks' own records were merged.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::consumer::SnapshotRequest;
use super::thread_records::{QueueRecord, SharedRecords, ThreadRecords};
use crate::metrics::Clock;
use crate::metrics::series::{Recorder, Sample};

/// A job for a thread: given its records, it spawns a task there.
type Job = Box<dyn FnOnce(&SharedRecords) + Send>;

/// The client threads of a run.
pub(super) struct Shards {
    threads: Vec<ShardThread>,
}

struct ShardThread {
    jobs: mpsc::UnboundedSender<Job>,
    snapshots: mpsc::Sender<SnapshotRequest>,
    done: oneshot::Receiver<Vec<Option<QueueRecord>>>,
    thread: std::thread::JoinHandle<()>,
}

/// What every thread needs to make its records.
pub(super) struct ShardOptions {
    pub threads: usize,
    pub clock: Clock,
    pub samples: mpsc::UnboundedSender<Sample>,
    pub queues: usize,
    pub producers: u32,
}

/// The result of a task run on a thread: its output, or why it has none (it panicked,
/// or its thread ended first).
pub(super) struct TaskHandle<T>(oneshot::Receiver<Result<T, String>>);

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err("its thread ended first".into())))
    }
}

impl Shards {
    /// Starts `options.threads` threads (at least one).
    ///
    /// # Errors
    /// The operating system refused a thread or a runtime.
    pub fn start(options: ShardOptions) -> std::io::Result<Self> {
        let start_ns = options.clock.ns_at(options.clock.origin());
        let threads = (0..options.threads.max(1))
            .map(|index| {
                let (jobs, job_rx) = mpsc::unbounded_channel::<Job>();
                let (snapshots, snapshot_rx) = mpsc::channel::<SnapshotRequest>(1);
                let (done_tx, done) = oneshot::channel();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let records = ThreadRecords::new(
                    Recorder::new(start_ns, options.samples.clone()),
                    options.queues,
                    options.producers,
                );
                let clock = options.clock;
                let thread = std::thread::Builder::new()
                    .name(format!("warren-clients-{index}"))
                    .spawn(move || {
                        let local = tokio::task::LocalSet::new();
                        let queues =
                            local.block_on(&runtime, serve(records, job_rx, snapshot_rx, clock));
                        let _ = done_tx.send(queues);
                    })?;
                Ok(ShardThread {
                    jobs,
                    snapshots,
                    done,
                    thread,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { threads })
    }

    /// Runs the task `make` builds on thread `shard` (modulo the count), with that
    /// thread's records.
    pub fn spawn<T, F, Fut>(&self, shard: usize, make: F) -> TaskHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(SharedRecords) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |records: &SharedRecords| {
            let task = make(records.clone());
            tokio::task::spawn_local(async move {
                let result = AssertUnwindSafe(task).catch_unwind().await;
                let _ = tx.send(result.map_err(|panic| panic_text(&*panic)));
            });
        });
        let _ = self.threads[shard % self.threads.len()].jobs.send(job);
        TaskHandle(rx)
    }

    /// Where to ask each thread what its consumers have seen.
    pub fn snapshot_senders(&self) -> Vec<mpsc::Sender<SnapshotRequest>> {
        self.threads.iter().map(|t| t.snapshots.clone()).collect()
    }

    /// Ends every thread once its tasks are done (and their connections closed), and
    /// returns each thread's queue records.
    pub async fn finish(self) -> Vec<Vec<Option<QueueRecord>>> {
        let mut records = Vec::with_capacity(self.threads.len());
        for thread in self.threads {
            drop(thread.jobs);
            records.push(thread.done.await.unwrap_or_default());
            let joined = thread.thread;
            let _ = tokio::task::spawn_blocking(move || joined.join()).await;
        }
        records
    }
}

/// A thread's loop: runs the jobs it is given, answers snapshot requests, hands a second
/// over when one passes quietly; ends when the coordinator drops its job sender.
async fn serve(
    records: ThreadRecords,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut snapshots: mpsc::Receiver<SnapshotRequest>,
    clock: Clock,
) -> Vec<Option<QueueRecord>> {
    let shared: SharedRecords = Rc::new(RefCell::new(records));
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job(&shared),
                None => break,
            },
            Some(request) = snapshots.recv() => {
                let _ = request.send(shared.borrow().seen());
            }
            _ = second.tick() => shared.borrow_mut().recorder.tick(clock.now_ns()),
        }
    }
    // The tasks are done: theirs are the only other references, dropped as they ended.
    let records = match Rc::try_unwrap(shared) {
        Ok(cell) => cell.into_inner(),
        Err(shared) => {
            let mut held = shared.borrow_mut();
            let empty = ThreadRecords::new(held.recorder.detached(), 0, 0);
            std::mem::replace(&mut *held, empty)
        }
    };
    records.finish()
}

/// The message of a panic payload.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .map_or_else(|| "panicked".into(), |m| format!("panicked: {m}"))
}
