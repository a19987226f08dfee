//! `coordinator`: parse the command line, run it, print any error once with its context.

use std::process::ExitCode;

fn main() -> ExitCode {
    workpool_cli::app::main()
}
