//! Measurements: a clock shared by publishers and consumers, and latency histograms that
//! each task owns and that merge exactly (HdrHistogram).

pub mod activity;
pub mod clock;
pub mod histogram_text;
pub mod latency;
pub mod series;

pub use clock::Clock;
pub use latency::Latencies;
