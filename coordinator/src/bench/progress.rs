//! Where the bench is: a progress line over the suites with an ETA (on standard error,
//! only when it is a terminal), a line per finished suite, and which suites did not run.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Suite;

/// Rough relative durations of the suites, full and `--quick`: the weights of the ETA.
fn weight(suite: Suite, quick: bool) -> u64 {
    let (full, quick_s) = match suite {
        Suite::Floor | Suite::Breakdown | Suite::Memory | Suite::Recycle => (2, 1),
        Suite::Startup | Suite::Latency => (4, 1),
        Suite::Payload => (8, 2),
        Suite::BreakEven => (10, 3),
        Suite::Throughput => (15, 3),
        Suite::Scaling => (35, 4),
        Suite::Broker => (30, 10),
    };
    if quick {
        quick_s
    } else {
        full
    }
}

/// The suites' progress, shared by the bench thread and the main one.
#[derive(Clone)]
pub struct Suites {
    bar: Option<ProgressBar>,
    quick: bool,
    /// Suites not finished yet, the one running first.
    left: Arc<Mutex<Vec<Suite>>>,
}

impl Suites {
    pub fn new(suites: &[Suite], quick: bool) -> Suites {
        let total = suites.iter().map(|&s| weight(s, quick)).sum();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} suite {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Suites {
            bar,
            quick,
            left: Arc::new(Mutex::new(suites.to_vec())),
        }
    }

    pub fn start(&self, suite: Suite) {
        match &self.bar {
            Some(bar) => bar.set_message(suite.name()),
            None => workpool::diag!("suite {} ...", suite.name()),
        }
    }

    pub fn finish_suite(&self, suite: Suite, took: Duration) {
        self.left().retain(|&s| s != suite);
        self.println(&format!(
            "suite {} done in {:.1} s",
            suite.name(),
            took.as_secs_f64()
        ));
        if let Some(bar) = &self.bar {
            bar.inc(weight(suite, self.quick));
        }
    }

    /// Prints a line above the progress line.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| workpool::diag!("{line}")),
            None => workpool::diag!("{line}"),
        }
    }

    /// The suites that did not finish, the one that was running marked.
    pub fn unfinished(&self) -> Vec<String> {
        self.left()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    format!("suite {} abandoned", s.name())
                } else {
                    format!("suite {} not run", s.name())
                }
            })
            .collect()
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn left(&self) -> std::sync::MutexGuard<'_, Vec<Suite>> {
        self.left
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
