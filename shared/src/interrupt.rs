//! Graceful stops: the first SIGINT or SIGTERM asks the program to stop, the second exits.

use signal_hook::consts::{SIGINT, SIGTERM};

/// The exit code of a program ended by a second interrupt (128 + SIGINT, as shells use).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// Calls `first` at the first SIGINT or SIGTERM (after printing `message`), and exits
/// with [`INTERRUPTED_EXIT_CODE`] at the second: a graceful stop, and a way out of it.
pub fn on_interrupt(
    message: &'static str,
    first: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("workpool-signals".into())
        .spawn(move || {
            for (count, _) in signals.forever().enumerate() {
                if count == 0 {
                    crate::diag!("{message}");
                    first();
                } else {
                    std::process::exit(INTERRUPTED_EXIT_CODE);
                }
            }
        })?;
    Ok(())
}
