//! One module per command of the command line; each returns the exit code it decided.

pub mod broker;
pub mod compare;
pub mod drive;
pub mod merge;
pub mod progress;
pub mod report;
pub mod run;
pub mod toxiproxy;
pub mod validate;

/// Writes progress lines to stdout unless the user asked for quiet.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    /// `--quiet`: print nothing but errors.
    pub quiet: bool,
}

impl Console {
    /// Prints one line (nothing when quiet).
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.quiet {
            crate::say!("{}", text.as_ref());
        }
    }
}
