//! `coordinator gen-data`: the notebook's sample price files, deterministic by seed.

use anyhow::{bail, Context as _, Result};
use shared::datagen::{self, GenSpec};

use crate::cli::GenDataArgs;

pub fn run(args: &GenDataArgs) -> Result<()> {
    let tickers = match (&args.files, args.tickers.is_empty()) {
        (Some(0), _) => bail!("--files must be at least 1"),
        (Some(n), _) => datagen::synthetic_tickers(*n),
        (None, true) => datagen::synthetic_tickers(datagen::NOTEBOOK_TICKERS.len()),
        (None, false) => args.tickers.clone(),
    };
    let days = match args.rows {
        Some(0) => bail!("--rows must be at least 1"),
        Some(rows) => rows,
        None => datagen::calendar_days(args.start, args.end)
            .with_context(|| format!("--end {} is before --start {}", args.end, args.start))?,
    };
    let spec = GenSpec {
        dir: args.dir.clone(),
        tickers,
        start: args.start,
        days,
        seed: args.seed,
    };
    let written = datagen::generate(&spec)?;
    eprintln!(
        "wrote {} files of {} rows to {}",
        written.len(),
        days,
        args.dir.display()
    );
    Ok(())
}
