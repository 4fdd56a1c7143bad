//! What the workload hands to live metrics while it runs (`--metrics-listen`): the
//! counters and links of its tasks, and each second's latencies. The exporter implements
//! [`LiveSink`]; the workload knows nothing more of it.

use std::sync::Arc;

use super::link::Link;
use super::progress::{ConsumerCounters, PublisherCounters};
use crate::metrics::latency::Latencies;

/// Where the workload's live figures go.
pub trait LiveSink: Send + Sync {
    /// A run's tasks start: their counters are read from now on.
    fn attach(&self, tasks: Tasks);
    /// A run's tasks ended: what they counted stays.
    fn detach(&self);
    /// One second of latencies, as the coordinator receives it.
    fn observe(&self, latencies: &Latencies);
}

/// The tasks of one run, as the workload hands them over when publishing starts.
#[derive(Default)]
pub struct Tasks {
    /// Each publisher's counters with the queue label it counts under.
    pub publishers: Vec<(String, Arc<PublisherCounters>)>,
    /// Each consumer's counters with the queue label it counts under.
    pub consumers: Vec<(String, Arc<ConsumerCounters>)>,
    pub publisher_links: Vec<Arc<Link>>,
    pub consumer_links: Vec<Arc<Link>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("publishers", &self.publishers.len())
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}
