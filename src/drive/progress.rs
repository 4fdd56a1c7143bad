//! Live progress of `warren run`: a bar on a terminal (indicatif), one plain line a second
//! otherwise, nothing with --quiet. Faults are announced as they begin and end.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle as BarStyle};

use crate::cli::ProgressStyle;
use crate::faults::runner::{Announce, FaultOutcome};
use crate::workload::ProgressLine;

/// Where live progress goes.
pub struct Progress {
    mode: Mode,
    /// Faults in effect, by label.
    active: Mutex<Vec<String>>,
}

enum Mode {
    Quiet,
    Plain,
    Bar(ProgressBar),
}

impl Progress {
    /// Progress for a run of `length` (its duration, when it has one).
    pub fn new(style: ProgressStyle, quiet: bool, length: Option<Duration>) -> Self {
        let bar = match style {
            ProgressStyle::Bar => true,
            ProgressStyle::Plain => false,
            ProgressStyle::Auto => std::io::stdout().is_terminal(),
        };
        let mode = if quiet {
            Mode::Quiet
        } else if bar {
            let bar = ProgressBar::with_draw_target(
                length.map(|l| l.as_secs()),
                ProgressDrawTarget::stdout(),
            );
            let template = if length.is_some() {
                "{elapsed_precise} [{bar:25}] {pos}/{len} s  {msg}"
            } else {
                "{elapsed_precise} {spinner} {msg}"
            };
            bar.set_style(
                BarStyle::with_template(template)
                    .unwrap_or_else(|_| BarStyle::default_bar())
                    .progress_chars("=> "),
            );
            Mode::Bar(bar)
        } else {
            Mode::Plain
        };
        Self {
            mode,
            active: Mutex::new(Vec::new()),
        }
    }

    /// Shows one second's figures.
    pub fn update(&self, line: &ProgressLine) {
        let t = line.totals;
        let rates = line.last_second.map_or(String::new(), |s| {
            let p99 = s.p99_e2e_ms.map_or("-".into(), |p| format!("{p:.1}"));
            format!(
                "publish {}/s  deliver {}/s  p99 {p99} ms  ",
                s.sent_per_s, s.delivered_per_s
            )
        });
        let active = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join(", ");
        let fault = if active.is_empty() {
            String::new()
        } else {
            format!("  fault: {active}")
        };
        let not_yet = t.confirmed.saturating_sub(t.fresh);
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => crate::say!(
                "[{:>6.1}s] {:10} sent {:>9}  confirmed {:>9}  delivered {:>9}  {rates}undelivered {not_yet}  duplicates {}{fault}",
                line.elapsed.as_secs_f64(),
                line.phase,
                t.sent,
                t.confirmed,
                t.fresh,
                t.deliveries.saturating_sub(t.fresh)
            ),
            Mode::Bar(bar) => {
                bar.set_position(line.elapsed.as_secs());
                bar.set_message(format!(
                    "{} {rates}undelivered {not_yet}  dup {}{fault}",
                    line.phase,
                    t.deliveries.saturating_sub(t.fresh)
                ));
            }
        }
    }

    /// Prints a line above the bar (or as is).
    pub fn message(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => crate::say!("{text}"),
            Mode::Bar(bar) => bar.println(text),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

impl Announce for Progress {
    fn began(&self, elapsed_s: f64, label: &str, action: &str) {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(label.to_string());
        self.message(&format!(
            "[{elapsed_s:>6.1}s] fault {label} begins: {action}"
        ));
    }

    fn ended(&self, elapsed_s: f64, label: &str, outcome: &FaultOutcome) {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| l != label);
        let word = if outcome.is_applied() {
            "ends"
        } else {
            "failed"
        };
        self.message(&format!(
            "[{elapsed_s:>6.1}s] fault {label} {word}: {outcome}"
        ));
    }

    fn publishing_until(&self, elapsed_s: f64, until_s: f64) {
        self.message(&format!(
            "[{elapsed_s:>6.1}s] the faults ended late: publishing goes on until {until_s:.1} s (after_faults)"
        ));
    }
}
