//! The progress bar: on standard error, only when it is a terminal (or forced), never
//! mixed into the data on standard output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

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
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({rate}, ETA {until_done})",
        )
        .map(|style| {
            style
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}/s", rate_text(state));
                    },
                )
                .with_key(
                    "until_done",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = if rate_known(state) {
                            write!(w, "{:#}", HumanDuration(state.eta()))
                        } else {
                            write!(w, "?")
                        };
                    },
                )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar: Some(bar) }
    }

    pub fn inc_by(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
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

/// Whether a rate has been measured: not before the first outcome, nor in the moment after
/// it, before indicatif's estimate has caught up (it reads 0 then).
fn rate_known(state: &ProgressState) -> bool {
    state.pos() > 0 && state.per_sec() > 0.0
}

/// Outcomes per second to three significant digits, `?` while the rate is unknown (as
/// tqdm shows it).
fn rate_text(state: &ProgressState) -> String {
    if rate_known(state) {
        three_digits(state.per_sec())
    } else {
        "?".to_string()
    }
}

/// `15.8271` -> `15.8`, `0.015827` -> `0.0158`, `1234.5` -> `1234` (no digits are
/// invented after the point, none of the integer part dropped).
fn three_digits(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".to_string();
    }
    let integer_digits = x.log10().floor() as i32 + 1;
    let decimals = (3 - integer_digits).clamp(0, 6) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::three_digits;

    #[test]
    fn rates_have_three_significant_digits() {
        for (rate, text) in [
            (15.8271, "15.8"),
            (1.0, "1.00"),
            (0.015827, "0.0158"),
            (999.4, "999"),
            (123456.7, "123457"),
            (0.0, "0"),
        ] {
            assert_eq!(three_digits(rate), text, "{rate}");
        }
    }
}
