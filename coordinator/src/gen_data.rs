//! `coordinator gen-data`: the notebook's sample price files, deterministic by seed.

use anyhow::{bail, Context as _, Result};
use workpool::datagen::{self, GenSpec, Tickers};

use crate::cli::GenDataArgs;

pub fn run(args: &GenDataArgs) -> Result<()> {
    // Synthetic tickers are produced one file at a time: `--files 1000000` holds no list.
    let tickers = match (args.files, args.tickers.is_empty()) {
        (Some(n), _) => Tickers::Synthetic(n),
        (None, true) => Tickers::Synthetic(datagen::NOTEBOOK_TICKERS.len()),
        (None, false) => Tickers::Named(args.tickers.clone()),
    };
    let days = match args.rows {
        Some(rows) => rows,
        None => datagen::calendar_days(args.start, args.end)
            .with_context(|| format!("--end {} is before --start {}", args.end, args.start))?,
    };
    if datagen::last_date(args.start, days).is_none() {
        let most = datagen::calendar_days(args.start, datagen::LAST_DATE).unwrap_or(0);
        bail!(
            "--rows {days}: the last row would fall after {}; from --start {} at most {most} \
             rows fit",
            datagen::LAST_DATE,
            args.start
        );
    }
    let spec = GenSpec {
        dir: args.dir.clone(),
        tickers,
        start: args.start,
        days,
        seed: args.seed,
    };
    let mut written = 0u64;
    datagen::generate_each(&spec, |_| written += 1)?;
    workpool::diag!(
        "wrote {written} files of {days} rows to {}",
        args.dir.display()
    );
    Ok(())
}
