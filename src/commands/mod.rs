//! One module per command of the command line; each returns the exit code it decided.

pub mod broker;
pub mod compare;
pub mod merge;
pub mod report;
pub mod run;
pub mod toxiproxy;
pub mod validate;
