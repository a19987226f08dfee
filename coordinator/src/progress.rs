//! The progress bar: on standard error, only when it is a terminal (or forced), never
//! mixed into the data on standard output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ProgressMode;

/// A bar, or nothing when progress is off.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode, quiet: bool, total: Option<u64>) -> Progress {
        let show = !quiet
            && match mode {
                ProgressMode::Always => true,
                ProgressMode::Never => false,
                ProgressMode::Auto => std::io::stderr().is_terminal(),
            };
        if !show {
            return Progress { bar: None };
        }
        // indicatif's stderr target hides itself when stderr is not a terminal; a forced
        // bar goes through `term_like`, which draws wherever stderr leads.
        let target = match mode {
            ProgressMode::Always => {
                ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10)
            }
            _ => ProgressDrawTarget::stderr(),
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar: Some(bar) }
    }

    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Runs `f` (which prints to a terminal) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
