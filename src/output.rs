//! Writing to stdout without ever panicking: `println!` panics when stdout is a pipe whose
//! reader has gone (`warren run ... | head`), which in the middle of a run would skip the
//! teardown and the results. [`say!`](crate::say) drops the line instead. [`Console`]
//! is the commands' own lines, silenced by `--quiet`.

/// Like `println!`, but a line that cannot be written (a closed pipe, a full disk) is
/// dropped, never a panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `print!`, with the same promise as [`say!`](crate::say).
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

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
