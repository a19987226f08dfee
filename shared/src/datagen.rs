//! Sample data for the `files` workload: the notebook's section 5 price files, generated
//! deterministically and streamed to disk, so a file of any length costs constant memory.
//!
//! Each file is `<dir>/<TICKER>.csv` with header `date,close,volume` and one row per
//! calendar day, as the notebook's `pd.date_range(freq='D')`. Daily returns are drawn from
//! Normal(0.0005, 0.02), `close = 100 * cumprod(1 + r)` (so the first close is already
//! `100 * (1 + r_0)`), and volume is an integer uniform in [1 000 000, 10 000 000).
//!
//! Randomness comes from [`crate::seed::rng`] keyed by the seed and the ticker, with one
//! stream for returns and one for volumes: a ticker's file is the same whatever other
//! tickers are generated, and a shorter file is a prefix of a longer one.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::seed;

/// The tickers of the notebook's section 5, in its order.
pub const NOTEBOOK_TICKERS: [&str; 8] = [
    "AAPL", "GOOGL", "MSFT", "AMZN", "META", "NVDA", "TSLA", "JPM",
];

/// The notebook's first date, 2020-01-01.
pub const NOTEBOOK_START: NaiveDate = match NaiveDate::from_ymd_opt(2020, 1, 1) {
    Some(date) => date,
    None => panic!("2020-01-01 is a valid date"),
};

/// The notebook's last date, 2023-12-31 (inclusive).
pub const NOTEBOOK_END: NaiveDate = match NaiveDate::from_ymd_opt(2023, 12, 31) {
    Some(date) => date,
    None => panic!("2023-12-31 is a valid date"),
};

/// Rows per notebook file: the calendar days from 2020-01-01 to 2023-12-31 inclusive.
pub const NOTEBOOK_DAYS: usize = 1461;

/// Mean and standard deviation of the daily returns (`np.random.normal(0.0005, 0.02)`).
const RETURN_MEAN: f64 = 0.0005;
const RETURN_STD_DEV: f64 = 0.02;

/// Volume range, as `np.random.randint(1000000, 10000000)`: the upper bound is excluded.
const VOLUME_RANGE: std::ops::Range<u64> = 1_000_000..10_000_000;

/// The first close is `100 * (1 + r_0)`.
const BASE_PRICE: f64 = 100.0;

/// The band the price is kept in. The notebook's drift (about +0.03 % a day in log terms)
/// would carry the price past the range of f64 after a couple of million rows, which scale
/// tests reach; a return that would leave the band is applied with its sign flipped. A
/// notebook-sized file stays around 100 (a few thousand at most) and never meets the band.
const PRICE_FLOOR: f64 = 1e-2;
const PRICE_CEILING: f64 = 1e9;

/// Stream ids for [`seed::rng`]: "datagen" returns and volumes, in ASCII.
const STREAM_RETURNS: u64 = u64::from_le_bytes(*b"dg:retrn");
const STREAM_VOLUMES: u64 = u64::from_le_bytes(*b"dg:volum");

/// Buffer of each file's writer: rows are small, system calls are not.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// The first and last dates a row may have: dates keep four-digit years, which every CSV
/// reader (and `YYYY-MM-DD` itself) expects.
pub const FIRST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(date) => date,
    None => panic!("0001-01-01 is a valid date"),
};
/// The last date a generated file may hold (dates have four-digit years).
pub const LAST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(date) => date,
    None => panic!("9999-12-31 is a valid date"),
};

/// Rows from [`FIRST_DATE`] to [`LAST_DATE`]: the most a file can have.
pub const MAX_DAYS: usize = 3_652_059;

/// Which tickers get a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tickers {
    /// These, in this order.
    Named(Vec<String>),
    /// The first `n` of [`synthetic_ticker`]: produced one at a time, so a million files
    /// cost no more memory than one.
    Synthetic(usize),
}

impl Tickers {
    /// How many files they make.
    pub fn len(&self) -> usize {
        match self {
            Tickers::Named(names) => names.len(),
            Tickers::Synthetic(n) => *n,
        }
    }

    /// Whether there are no tickers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self {
            Tickers::Named(names) => Box::new(names.iter().map(|n| n.as_str().into())),
            Tickers::Synthetic(n) => {
                Box::new((0..*n).map(|i| -> Cow<'_, str> { synthetic_ticker(i) }))
            }
        }
    }
}

impl From<Vec<String>> for Tickers {
    fn from(names: Vec<String>) -> Self {
        Tickers::Named(names)
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// Directory the files are written to; created if missing.
    pub dir: PathBuf,
    /// One file per ticker, named `<TICKER>.csv`.
    pub tickers: Tickers,
    /// Date of the first row.
    pub start: NaiveDate,
    /// Data rows per file, one per calendar day.
    pub days: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl GenSpec {
    /// The notebook's section 5: its eight tickers, 2020-01-01 to 2023-12-31 (1461 rows).
    pub fn notebook(dir: PathBuf, seed: u64) -> GenSpec {
        GenSpec {
            dir,
            tickers: Tickers::Synthetic(NOTEBOOK_TICKERS.len()),
            start: NOTEBOOK_START,
            days: NOTEBOOK_DAYS,
            seed,
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // The fields are what the messages show.
pub enum DatagenError {
    /// A ticker that cannot be a file name.
    #[error(
        "ticker {0:?} cannot name a file: use letters, digits, '.', '-' or '_', \
         not starting with '.'"
    )]
    InvalidTicker(String),
    /// A ticker given twice.
    #[error("ticker {0:?} is listed twice; each ticker gets one file")]
    DuplicateTicker(String),
    /// Dates past [`LAST_DATE`].
    #[error(
        "{days} days from {start} go past {LAST_DATE} (dates have four-digit years); \
         use fewer rows or an earlier start date"
    )]
    DateOutOfRange { start: NaiveDate, days: usize },
    // The I/O error is the source, not part of the message: printed with its causes (as
    // the binaries do), it would otherwise appear twice.
    /// The output directory cannot be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// `n` tickers for scale tests: the notebook's eight first, then `T0008`, `T0009`, ...
/// (numbered by position, so the list for `n` is a prefix of the list for `n + 1`).
pub fn synthetic_tickers(n: usize) -> Vec<String> {
    (0..n).map(|i| synthetic_ticker(i).into_owned()).collect()
}

/// The `i`-th ticker of [`synthetic_tickers`].
pub fn synthetic_ticker(i: usize) -> Cow<'static, str> {
    match NOTEBOOK_TICKERS.get(i) {
        Some(ticker) => (*ticker).into(),
        None => format!("T{i:04}").into(),
    }
}

/// The number of calendar days from `start` to `end`, both included; `None` if `end` is
/// before `start`. `calendar_days(NOTEBOOK_START, NOTEBOOK_END) == Some(NOTEBOOK_DAYS)`.
pub fn calendar_days(start: NaiveDate, end: NaiveDate) -> Option<usize> {
    let days = end.signed_duration_since(start).num_days().checked_add(1)?;
    usize::try_from(days).ok()
}

/// Writes one file per ticker and returns their paths, in the order of `spec.tickers`.
/// Everything is checked before the first byte is written.
pub fn generate(spec: &GenSpec) -> Result<Vec<PathBuf>, DatagenError> {
    let mut paths = Vec::new();
    generate_each(spec, |path| paths.push(path.to_path_buf()))?;
    Ok(paths)
}

/// Like [`generate`], but hands each path to `written` as soon as its file is complete
/// instead of collecting them: the memory it takes does not grow with the number of files.
pub fn generate_each(spec: &GenSpec, mut written: impl FnMut(&Path)) -> Result<(), DatagenError> {
    if let Tickers::Named(names) = &spec.tickers {
        let mut seen = HashSet::new();
        for ticker in names {
            if !is_file_safe(ticker) {
                return Err(DatagenError::InvalidTicker(ticker.clone()));
            }
            if !seen.insert(ticker.as_str()) {
                return Err(DatagenError::DuplicateTicker(ticker.clone()));
            }
        }
    }
    if last_date(spec.start, spec.days).is_none() {
        return Err(DatagenError::DateOutOfRange {
            start: spec.start,
            days: spec.days,
        });
    }
    fs::create_dir_all(&spec.dir).map_err(|source| DatagenError::CreateDir {
        path: spec.dir.clone(),
        source,
    })?;

    for ticker in spec.tickers.iter() {
        let path = spec.dir.join(format!("{ticker}.csv"));
        if let Err(source) = write_file(&path, spec, &ticker) {
            // Best effort: a half-written file would later read as valid but short data.
            let _ = fs::remove_file(&path);
            return Err(DatagenError::Write { path, source });
        }
        written(&path);
    }
    Ok(())
}

/// The date of the last of `days` rows from `start`, if every row's date lies within
/// [`FIRST_DATE`]..=[`LAST_DATE`] (`start` itself for zero rows).
pub fn last_date(start: NaiveDate, days: usize) -> Option<NaiveDate> {
    let last_offset = u64::try_from(days.saturating_sub(1)).ok()?;
    let last = start.checked_add_days(chrono::Days::new(last_offset))?;
    (start >= FIRST_DATE && last <= LAST_DATE).then_some(last)
}

/// A ticker that is a plain file stem: no path separators, no `..`, nothing hidden.
fn is_file_safe(ticker: &str) -> bool {
    !ticker.is_empty()
        && !ticker.starts_with('.')
        && ticker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Streams one ticker's rows to `path`: one row in memory at a time.
fn write_file(path: &Path, spec: &GenSpec, ticker: &str) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::create(path)?);
    out.write_all(b"date,close,volume\n")?;
    let mut rows = Rows::new(spec.seed, ticker, spec.start);
    for _ in 0..spec.days {
        let Some(row) = rows.next_row() else {
            // `generate` checked the last date, so this is not expected; fail, not panic.
            return Err(io::Error::other("date out of range"));
        };
        writeln!(out, "{},{},{}", row.date, row.close, row.volume)?;
    }
    out.flush()
}

/// One generated row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    date: NaiveDate,
    close: f64,
    volume: u64,
}

/// The generator of one ticker's rows.
struct Rows {
    returns: rand_chacha::ChaCha8Rng,
    volumes: rand_chacha::ChaCha8Rng,
    /// The next row's date; `None` once past the last representable date.
    date: Option<NaiveDate>,
    /// `cumprod(1 + r)` so far; close is `100 *` this, as in the notebook.
    growth: f64,
}

impl Rows {
    fn new(seed: u64, ticker: &str, start: NaiveDate) -> Rows {
        Rows {
            returns: seed::rng(seed, ticker.as_bytes(), STREAM_RETURNS),
            volumes: seed::rng(seed, ticker.as_bytes(), STREAM_VOLUMES),
            date: Some(start),
            growth: 1.0,
        }
    }

    fn next_row(&mut self) -> Option<Row> {
        let date = self.date?;
        self.date = date.succ_opt();
        let z: f64 = StandardNormal.sample(&mut self.returns);
        // What `rand_distr::Normal` computes, without a constructor that can fail.
        let r = RETURN_MEAN + RETURN_STD_DEV * z;
        self.growth = next_growth(self.growth, r);
        let volume = self.volumes.random_range(VOLUME_RANGE);
        Some(Row {
            date,
            close: BASE_PRICE * self.growth,
            volume,
        })
    }
}

/// `growth * (1 + r)`, unless that takes the price out of the band (or to zero or below, at
/// 50 standard deviations): then the return is applied with its sign flipped, and if even
/// that leaves the band the price stays where it is.
fn next_growth(growth: f64, r: f64) -> f64 {
    let in_band = |g: f64| (PRICE_FLOOR..=PRICE_CEILING).contains(&(BASE_PRICE * g));
    [growth * (1.0 + r), growth * (1.0 - r)]
        .into_iter()
        .find(|g| in_band(*g))
        .unwrap_or(growth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notebook_in(dir: &tempfile::TempDir, seed: u64) -> GenSpec {
        GenSpec::notebook(dir.path().join("data"), seed)
    }

    #[test]
    fn max_days_span_the_four_digit_years() {
        assert_eq!(calendar_days(FIRST_DATE, LAST_DATE), Some(MAX_DAYS));
        assert_eq!(last_date(FIRST_DATE, MAX_DAYS), Some(LAST_DATE));
        assert_eq!(last_date(FIRST_DATE, MAX_DAYS + 1), None);
        assert_eq!(last_date(LAST_DATE, 1), Some(LAST_DATE));
        assert_eq!(last_date(LAST_DATE, 0), Some(LAST_DATE));
    }

    #[test]
    fn synthetic_tickers_stream_the_same_names() {
        let streamed: Vec<String> = Tickers::Synthetic(12)
            .iter()
            .map(|t| t.into_owned())
            .collect();
        assert_eq!(streamed, synthetic_tickers(12));
    }

    #[test]
    fn io_errors_are_sources_not_repeated_in_the_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").expect("write");
        let err = generate(&GenSpec::notebook(blocker.clone(), 1)).expect_err("a file");
        let source = std::error::Error::source(&err)
            .expect("the I/O error")
            .to_string();
        assert!(!err.to_string().contains(&source), "{err} repeats {source}");
    }

    #[test]
    fn notebook_days_are_the_calendar_days() {
        assert_eq!(
            calendar_days(NOTEBOOK_START, NOTEBOOK_END),
            Some(NOTEBOOK_DAYS)
        );
        assert_eq!(calendar_days(NOTEBOOK_START, NOTEBOOK_START), Some(1));
        let before = NOTEBOOK_START.pred_opt().expect("2019-12-31");
        assert_eq!(calendar_days(NOTEBOOK_START, before), Some(0));
        assert_eq!(calendar_days(NOTEBOOK_END, NOTEBOOK_START), None);
    }

    #[test]
    fn synthetic_tickers_start_with_the_notebook_ones() {
        assert_eq!(synthetic_tickers(0), Vec::<String>::new());
        assert_eq!(synthetic_tickers(3), ["AAPL", "GOOGL", "MSFT"]);
        let many = synthetic_tickers(11);
        assert_eq!(&many[..8], NOTEBOOK_TICKERS);
        assert_eq!(&many[8..], ["T0008", "T0009", "T0010"]);
        assert!(many.iter().all(|t| is_file_safe(t)));
        let unique: HashSet<_> = synthetic_tickers(20_000).into_iter().collect();
        assert_eq!(unique.len(), 20_000);
    }

    #[test]
    fn notebook_files_have_header_and_consecutive_dates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = notebook_in(&dir, 1);
        let paths = generate(&spec).expect("generate");
        assert_eq!(paths.len(), 8);
        for (path, ticker) in paths.iter().zip(NOTEBOOK_TICKERS) {
            assert_eq!(path, &spec.dir.join(format!("{ticker}.csv")));
            let content = fs::read_to_string(path).expect("read");
            let mut lines = content.lines();
            assert_eq!(lines.next(), Some("date,close,volume"));
            let rows: Vec<&str> = lines.collect();
            assert_eq!(rows.len(), NOTEBOOK_DAYS);
            let mut expected = NOTEBOOK_START;
            for row in &rows {
                let fields: Vec<&str> = row.split(',').collect();
                assert_eq!(fields.len(), 3, "{row}");
                assert_eq!(fields[0], expected.format("%Y-%m-%d").to_string());
                let close: f64 = fields[1].parse().expect("close");
                assert!(close.is_finite() && close > 0.0, "{row}");
                let volume: u64 = fields[2].parse().expect("integer volume");
                assert!(VOLUME_RANGE.contains(&volume), "{row}");
                expected = expected.succ_opt().expect("next day");
            }
            assert_eq!(rows[0].split(',').next(), Some("2020-01-01"));
            assert_eq!(
                rows[NOTEBOOK_DAYS - 1].split(',').next(),
                Some("2023-12-31")
            );
        }
    }

    #[test]
    fn closes_are_100_times_the_cumulative_product_of_returns() {
        // Recompute the path from the same streams, with no band: the notebook's formula.
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = GenSpec {
            tickers: Tickers::Named(vec!["AAPL".into()]),
            ..notebook_in(&dir, 3)
        };
        let paths = generate(&spec).expect("generate");
        let content = fs::read_to_string(&paths[0]).expect("read");
        let mut rng = seed::rng(3, b"AAPL", STREAM_RETURNS);
        let mut cumprod = 1.0;
        for line in content.lines().skip(1) {
            let z: f64 = StandardNormal.sample(&mut rng);
            cumprod *= 1.0 + (RETURN_MEAN + RETURN_STD_DEV * z);
            let close: f64 = line.split(',').nth(1).expect("close").parse().expect("f64");
            // Display of f64 round-trips, so the text is exactly the computed value.
            assert_eq!(close, 100.0 * cumprod, "{line}");
        }
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let read = |spec: &GenSpec| -> Vec<Vec<u8>> {
            generate(spec)
                .expect("generate")
                .iter()
                .map(|p| fs::read(p).expect("read"))
                .collect()
        };
        let a = read(&GenSpec::notebook(dir.path().join("a"), 9));
        let b = read(&GenSpec::notebook(dir.path().join("b"), 9));
        let c = read(&GenSpec::notebook(dir.path().join("c"), 10));
        assert_eq!(a, b);
        for (x, y) in a.iter().zip(&c) {
            assert_ne!(x, y);
        }
        // Tickers differ from each other under one seed.
        assert_ne!(a[0][18..], a[1][18..]);
    }

    #[test]
    fn a_tickers_file_does_not_depend_on_the_others_and_shorter_is_a_prefix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let all = generate(&GenSpec::notebook(dir.path().join("all"), 5)).expect("all");
        let alone = generate(&GenSpec {
            dir: dir.path().join("alone"),
            tickers: Tickers::Named(vec!["MSFT".into()]),
            days: 100,
            ..GenSpec::notebook(PathBuf::new(), 5)
        })
        .expect("alone");
        let full = fs::read(&all[2]).expect("read");
        let short = fs::read(&alone[0]).expect("read");
        assert!(full.starts_with(&short));
        assert_eq!(short.iter().filter(|b| **b == b'\n').count(), 101);
    }

    #[test]
    fn zero_days_writes_a_header_only_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = GenSpec {
            tickers: Tickers::Named(vec!["X".into()]),
            days: 0,
            ..notebook_in(&dir, 1)
        };
        let paths = generate(&spec).expect("generate");
        assert_eq!(fs::read(&paths[0]).expect("read"), b"date,close,volume\n");
    }

    #[test]
    fn bad_specs_are_typed_errors_before_any_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = notebook_in(&dir, 1);
        for bad in ["", "../evil", "a/b", ".hidden", "A B", "ÄPFEL"] {
            let spec = GenSpec {
                tickers: Tickers::Named(vec!["OK".into(), bad.into()]),
                ..base.clone()
            };
            let err = generate(&spec).expect_err(bad);
            assert!(
                matches!(&err, DatagenError::InvalidTicker(t) if t == bad),
                "{err}"
            );
        }
        let spec = GenSpec {
            tickers: Tickers::Named(vec!["A".into(), "B".into(), "A".into()]),
            ..base.clone()
        };
        assert!(matches!(generate(&spec), Err(DatagenError::DuplicateTicker(t)) if t == "A"));
        for (start, days) in [
            (NOTEBOOK_START, usize::MAX),
            (NOTEBOOK_START, MAX_DAYS),
            (LAST_DATE, 2),
            (FIRST_DATE.pred_opt().expect("a date before year 1"), 1),
        ] {
            let spec = GenSpec {
                start,
                days,
                ..base.clone()
            };
            let err = generate(&spec).expect_err("too many days");
            assert!(matches!(err, DatagenError::DateOutOfRange { .. }), "{err}");
        }
        assert!(!base.dir.exists(), "nothing is written for a bad spec");
    }

    #[test]
    fn unwritable_directory_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").expect("write");
        let spec = GenSpec::notebook(blocker.join("sub"), 1);
        let err = generate(&spec).expect_err("parent is a file");
        assert!(matches!(err, DatagenError::CreateDir { .. }), "{err}");
        assert!(err.to_string().contains("sub"), "{err}");
    }

    #[test]
    fn price_band_keeps_long_paths_finite_and_positive() {
        // Far past where the notebook's drift would overflow f64 without the band.
        let mut growth = 1.0;
        for r in [0.5, 10.0, -0.999, -2.0, 1e300] {
            for _ in 0..10_000 {
                growth = next_growth(growth, r);
                let price = BASE_PRICE * growth;
                assert!(price.is_finite() && (PRICE_FLOOR..=PRICE_CEILING).contains(&price));
            }
        }
        // Inside the band the notebook's formula applies unchanged.
        assert_eq!(next_growth(1.0, 0.01), 1.01);
        assert_eq!(next_growth(1.0, -0.01), 0.99);
    }

    #[test]
    fn long_generated_file_stays_summarizable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = GenSpec {
            tickers: Tickers::Named(vec!["LONG".into()]),
            days: 200_000,
            ..notebook_in(&dir, 2)
        };
        let paths = generate(&spec).expect("generate");
        let stats =
            crate::workload::files::summarize(&paths[0], &Default::default()).expect("summarize");
        assert_eq!(stats.rows, 200_000);
        assert!(stats.end_price <= PRICE_CEILING && stats.end_price >= PRICE_FLOOR);
    }
}
