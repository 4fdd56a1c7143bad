//! Live Prometheus metrics (`--metrics-listen`): what a run counts and measures, served
//! in the OpenMetrics text format while it goes, with the verdict at the end.

pub mod buckets;
pub mod live;
pub mod server;

pub use live::{EndFigures, LiveMetrics};
pub use server::{Ending, MetricsServer};
