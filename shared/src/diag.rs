//! Diagnostics on standard error that never panic. `eprintln!` panics when standard error
//! cannot be written (`2>/dev/full`, a closed pipe), which would turn a warning into a
//! crash and lose the exit code; [`diag!`](crate::diag!) drops the line instead.

use std::io::Write;

/// Writes one line to standard error like `eprintln!`, ignoring any error: a diagnostic is
/// never worth the run.
#[macro_export]
macro_rules! diag {
    () => {
        $crate::diag::write_line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::diag::write_line(::std::format_args!($($arg)*))
    };
}

/// What [`diag!`](crate::diag!) expands to: the line is formatted first and written with
/// one call, so that lines from several threads do not interleave.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut line = args.to_string();
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_eprintln() {
        // Nothing to observe on stderr from here; this checks both arms expand and run.
        crate::diag!();
        crate::diag!("{} and {x}", 1, x = 2);
    }
}
