//! Measurements: a clock shared by publishers and consumers, and latency histograms that
//! each task owns and that merge exactly (HdrHistogram).

pub mod activity;
pub mod clock;
pub mod histogram_text;
pub mod latency;
pub mod series;

pub use clock::Clock;
pub use latency::Latencies;

/// Highest latency recorded exactly (larger values are recorded as this), in µs: one
/// hour. Every latency histogram of warren spans 1 µs to this.
pub const MAX_US: u64 = 3_600_000_000;
