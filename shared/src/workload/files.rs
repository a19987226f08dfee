//! The `files` workload: the notebook's `process_stock_file`, summary statistics of one CSV
//! of daily prices, computed in one streaming pass so that memory stays constant whatever
//! the size of the file.
//!
//! The statistics are those pandas computes in the notebook: returns are `pct_change` of
//! `close` (the first row has none), the standard deviation is the sample one (ddof = 1), and
//! annualisation uses 252 trading days. Mean and variance of the returns use Welford's
//! online algorithm (Welford 1962; Knuth, TAOCP vol. 2, 4.2.2), which is numerically stable
//! where the textbook `sum(x^2) - n * mean^2` is not.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ErrorKind, TaskError};

/// Trading days per year, the notebook's annualisation factor.
const TRADING_DAYS: f64 = 252.0;

/// Rows needed for a sample standard deviation of returns: 3 rows give 2 returns.
const MIN_ROWS: u64 = 3;

/// The csv reader's buffer: large enough that reading is not dominated by system calls.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Settings shared by every `files` task of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSettings {
    /// Simulated slow-storage delay before reading each file (the notebook uses 100 ms).
    pub io_delay_ms: u64,
}

/// Summary statistics of one file, as the notebook's `process_stock_file` computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStats {
    /// The file's stem: `AAPL` for `AAPL.csv`.
    pub ticker: String,
    /// Number of data rows (the header not counted).
    pub rows: u64,
    /// `close` of the first data row.
    pub start_price: f64,
    /// `close` of the last data row.
    pub end_price: f64,
    /// `(end_price / start_price - 1) * 100`.
    pub total_return_pct: f64,
    /// Sample standard deviation (ddof = 1) of daily returns, annualised: `* sqrt(252) * 100`.
    pub volatility_pct: Option<f64>,
    /// Mean of `volume`.
    pub avg_volume: f64,
    /// `mean(r) * 252 / (std(r) * sqrt(252))`; `None` when every return is the same (std 0).
    pub sharpe: Option<f64>,
}

/// Reads and summarises one file. Every failure is a `TaskError` naming the file and, where
/// it applies, the line and column: `io` when the file cannot be read, `parse` when its
/// content is not a usable price series.
pub fn summarize(path: &Path, settings: &FileSettings) -> Result<FileStats, TaskError> {
    if settings.io_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(settings.io_delay_ms));
    }
    let file = open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(READ_BUFFER_BYTES)
        .from_reader(file);
    let header = Header::read(path, &mut reader)?;

    let mut series = Series::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) => return Err(csv_error(path, Some(&header), err)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let close = number(path, line, &header.close, &record)?;
        if close <= 0.0 {
            return Err(parse_error(
                path,
                format!(
                    "line {line}, {}: price {close} is not positive (returns need close > 0)",
                    header.close
                ),
            ));
        }
        let volume = number(path, line, &header.volume, &record)?;
        if volume < 0.0 {
            return Err(parse_error(
                path,
                format!(
                    "line {line}, {}: volume {volume} is negative",
                    header.volume
                ),
            ));
        }
        series.push(path, line, close, volume)?;
    }
    series.finish(path, ticker(path))
}

/// The ticker a file stands for: its name without the extension.
fn ticker(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens the file, telling a missing file, a denied one and a directory apart.
fn open(path: &Path) -> Result<File, TaskError> {
    let io = |what: String| TaskError::new(ErrorKind::Io, format!("{}: {what}", path.display()));
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => io("no such file".to_string()),
        io::ErrorKind::PermissionDenied => io("permission denied".to_string()),
        _ => io(format!("cannot open: {err}")),
    })?;
    // On Linux a directory opens fine and only fails at the first read, with a vaguer error.
    match file.metadata() {
        Ok(meta) if meta.is_dir() => Err(io("is a directory, not a CSV file".to_string())),
        Ok(_) => Ok(file),
        Err(err) => Err(io(format!("cannot read its metadata: {err}"))),
    }
}

fn parse_error(path: &Path, what: impl fmt::Display) -> TaskError {
    TaskError::new(ErrorKind::Parse, format!("{}: {what}", path.display()))
}

/// A column the statistics need, found in the header by name.
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    /// 0-based index into a record.
    index: usize,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {} \"{}\"", self.index + 1, self.name)
    }
}

/// The header line: every column's name (for messages) and where `close` and `volume` are.
struct Header {
    names: Vec<String>,
    close: Column,
    volume: Column,
}

impl Header {
    /// Reads the header and finds the needed columns by name, in any order among any others.
    fn read(path: &Path, reader: &mut csv::Reader<File>) -> Result<Header, TaskError> {
        let record = reader.headers().map_err(|err| csv_error(path, None, err))?;
        let line = record.position().map_or(1, csv::Position::line);
        let names: Vec<String> = record
            .iter()
            .enumerate()
            // Spreadsheet exports often start with a UTF-8 byte-order mark, which the csv
            // crate keeps; pandas drops it, and so do we.
            .map(|(i, name)| {
                let name = if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    name
                };
                name.trim().to_string()
            })
            .collect();
        if names.iter().all(String::is_empty) {
            return Err(if reader.position().byte() == 0 {
                parse_error(
                    path,
                    "empty file (0 bytes): expected a header line such as \"date,close,volume\" \
                     and data rows",
                )
            } else {
                parse_error(
                    path,
                    "no header line: the file has only blank lines, expected column names \
                     such as \"date,close,volume\"",
                )
            });
        }

        let find = |name: &'static str| -> Result<Option<Column>, TaskError> {
            let mut found = names.iter().enumerate().filter(|(_, n)| *n == name);
            match (found.next(), found.next()) {
                (Some((index, _)), None) => Ok(Some(Column { name, index })),
                (Some((first, _)), Some((second, _))) => Err(parse_error(
                    path,
                    format!(
                        "line {line}: column \"{name}\" appears more than once in the header \
                         (columns {} and {})",
                        first + 1,
                        second + 1
                    ),
                )),
                (None, _) => Ok(None),
            }
        };
        let (close, volume) = (find("close")?, find("volume")?);
        match (close, volume) {
            (Some(close), Some(volume)) => Ok(Header {
                names,
                close,
                volume,
            }),
            _ => {
                let missing: Vec<&str> = [("close", close), ("volume", volume)]
                    .into_iter()
                    .filter(|(_, column)| column.is_none())
                    .map(|(name, _)| name)
                    .collect();
                Err(parse_error(path, missing_columns(line, &missing, &names)))
            }
        }
    }

    /// The name of the 0-based field `index`, for messages about it.
    fn describe(&self, index: usize) -> String {
        match self.names.get(index) {
            Some(name) if !name.is_empty() => format!("column {} \"{name}\"", index + 1),
            _ => format!("column {}", index + 1),
        }
    }
}

/// The numeric value of one needed field, or an error saying where and why it is not one.
fn number(
    path: &Path,
    line: u64,
    column: &Column,
    record: &csv::StringRecord,
) -> Result<f64, TaskError> {
    // The csv reader rejects rows whose length differs from the header's, so the field
    // exists; an absent one still reads as empty rather than panicking.
    let raw = record.get(column.index).unwrap_or("");
    let text = raw.trim();
    if text.is_empty() {
        return Err(parse_error(
            path,
            format!("line {line}, {column}: value is empty, a number is needed"),
        ));
    }
    match text.parse::<f64>() {
        Err(_) => Err(parse_error(
            path,
            format!("line {line}, {column}: {raw:?} is not a number"),
        )),
        Ok(value) if !value.is_finite() => Err(parse_error(
            path,
            format!("line {line}, {column}: {text:?} is not a finite number"),
        )),
        Ok(value) => Ok(value),
    }
}

fn missing_columns(line: u64, missing: &[&str], found: &[String]) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &str>| {
        names
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plural = if missing.len() == 1 { "" } else { "s" };
    let mut message = format!(
        "line {line}: missing column{plural} {} in the header; columns found: {}",
        quoted(&mut missing.iter().copied()),
        quoted(&mut found.iter().map(String::as_str)),
    );
    let differs_in_case = missing
        .iter()
        .any(|want| found.iter().any(|name| name.eq_ignore_ascii_case(want)));
    if differs_in_case {
        message.push_str(" (column names are case-sensitive)");
    }
    // One column whose name holds another separator: the file is not comma-separated.
    if let [only] = found {
        if only.contains([';', '\t', '|']) {
            message.push_str(" (fields must be separated by commas)");
        }
    }
    message
}

/// Turns an error of the csv reader into a task error with the line (and column) it names.
fn csv_error(path: &Path, header: Option<&Header>, err: csv::Error) -> TaskError {
    let line_of = |pos: Option<&csv::Position>| match pos {
        Some(pos) => format!("line {}", pos.line()),
        None => "a line".to_string(),
    };
    match err.kind() {
        csv::ErrorKind::Io(io) => TaskError::new(
            ErrorKind::Io,
            format!("{}: cannot read: {io}", path.display()),
        ),
        csv::ErrorKind::Utf8 { pos, err: utf8 } => {
            let column = match header {
                Some(header) => header.describe(utf8.field()),
                None => format!("column {}", utf8.field() + 1),
            };
            parse_error(
                path,
                format!(
                    "{}, {column}: invalid UTF-8 (the file must be UTF-8 text)",
                    line_of(pos.as_ref())
                ),
            )
        }
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let which = if len < expected_len {
                "too few"
            } else {
                "too many"
            };
            parse_error(
                path,
                format!(
                    "{}: {which} fields: {len}, but the header has {expected_len}",
                    line_of(pos.as_ref())
                ),
            )
        }
        _ => parse_error(path, &err),
    }
}

/// Welford's online mean and variance: one pass, no stored values, stable when the values
/// are large compared with their spread.
#[derive(Debug, Default)]
struct Welford {
    count: u64,
    mean: f64,
    /// Sum of squared differences from the current mean.
    m2: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        // (x - old mean) and (x - new mean) have the same sign, so m2 never decreases.
        self.m2 += delta * (x - self.mean);
    }

    /// The sample variance (ddof = 1, as pandas' `std`); `None` below two values.
    fn sample_variance(&self) -> Option<f64> {
        (self.count >= 2).then(|| self.m2 / (self.count - 1) as f64)
    }
}

/// What the pass over the rows keeps: a few numbers, whatever the length of the file.
#[derive(Debug, Default)]
struct Series {
    rows: u64,
    first_close: f64,
    last_close: f64,
    returns: Welford,
    /// Running mean of volume, updated as `mean += (v - mean) / n`: no sum that can grow
    /// without bound and lose precision.
    volume_mean: f64,
}

impl Series {
    fn push(&mut self, path: &Path, line: u64, close: f64, volume: f64) -> Result<(), TaskError> {
        if self.rows == 0 {
            self.first_close = close;
        } else {
            let r = close / self.last_close - 1.0;
            if !r.is_finite() {
                return Err(parse_error(
                    path,
                    format!(
                        "line {line}: the return from close {} to {close} is too large to \
                         represent",
                        self.last_close
                    ),
                ));
            }
            self.returns.push(r);
        }
        self.rows += 1;
        self.last_close = close;
        self.volume_mean += (volume - self.volume_mean) / self.rows as f64;
        Ok(())
    }

    fn finish(self, path: &Path, ticker: String) -> Result<FileStats, TaskError> {
        if self.rows == 0 {
            return Err(parse_error(
                path,
                format!("header only, no data rows (at least {MIN_ROWS} are needed)"),
            ));
        }
        let Some(variance) = self.returns.sample_variance() else {
            let plural = if self.rows == 1 { "" } else { "s" };
            return Err(parse_error(
                path,
                format!(
                    "too few rows for a standard deviation of returns: {} data row{plural} \
                     ({} return{}), at least {MIN_ROWS} rows are needed",
                    self.rows,
                    self.returns.count,
                    if self.returns.count == 1 { "" } else { "s" },
                ),
            ));
        };
        let std = variance.sqrt();
        let sqrt_days = TRADING_DAYS.sqrt();
        let stats = FileStats {
            ticker,
            rows: self.rows,
            start_price: self.first_close,
            end_price: self.last_close,
            total_return_pct: (self.last_close / self.first_close - 1.0) * 100.0,
            volatility_pct: Some(std * sqrt_days * 100.0),
            // `+ 0.0` turns a -0.0 (from volumes written "-0") into 0.0.
            avg_volume: self.volume_mean + 0.0,
            // std == 0: every return is the same, and the ratio is undefined.
            sharpe: (std > 0.0).then(|| self.returns.mean * TRADING_DAYS / (std * sqrt_days)),
        };
        check_finite(path, &stats)?;
        Ok(stats)
    }
}

/// Values near the limits of f64 can overflow a statistic; say so rather than report inf.
fn check_finite(path: &Path, stats: &FileStats) -> Result<(), TaskError> {
    let fields = [
        ("total return", Some(stats.total_return_pct)),
        ("volatility", stats.volatility_pct),
        ("average volume", Some(stats.avg_volume)),
        ("Sharpe ratio", stats.sharpe),
    ];
    match fields
        .iter()
        .find(|(_, value)| value.is_some_and(|v| !v.is_finite()))
    {
        Some((name, _)) => Err(parse_error(
            path,
            format!("the {name} overflows a 64-bit float: the values are too extreme"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings() -> FileSettings {
        FileSettings::default()
    }

    fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }

    fn summarize_bytes(name: &str, content: &[u8]) -> Result<FileStats, TaskError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(&dir, name, content);
        summarize(&path, &settings())
    }

    fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
        let scale = expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() / scale <= rel,
            "{what}: {actual} vs expected {expected}"
        );
    }

    fn assert_all_finite(stats: &FileStats) {
        for (name, value) in [
            ("start", Some(stats.start_price)),
            ("end", Some(stats.end_price)),
            ("total", Some(stats.total_return_pct)),
            ("vol", stats.volatility_pct),
            ("avg_volume", Some(stats.avg_volume)),
            ("sharpe", stats.sharpe),
        ] {
            if let Some(v) = value {
                assert!(v.is_finite(), "{name} = {v}");
            }
        }
    }

    /// Expects a parse error whose message contains every one of `needles`.
    fn assert_parse_error(result: Result<FileStats, TaskError>, needles: &[&str]) -> String {
        let err = result.expect_err("expected an error");
        assert_eq!(err.kind, ErrorKind::Parse, "{err}");
        for needle in needles {
            assert!(
                err.message.contains(needle),
                "message {:?} lacks {needle:?}",
                err.message
            );
        }
        err.message
    }

    /// Two passes over the values, the textbook way, independent of the code under test.
    struct Reference {
        rows: usize,
        start: f64,
        end: f64,
        total_return_pct: f64,
        volatility_pct: f64,
        avg_volume: f64,
        sharpe: f64,
    }

    fn reference(content: &str) -> Reference {
        let mut lines = content.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let close_at = header.iter().position(|h| *h == "close").expect("close");
        let volume_at = header.iter().position(|h| *h == "volume").expect("volume");
        let (mut closes, mut volumes) = (Vec::new(), Vec::new());
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            closes.push(fields[close_at].parse::<f64>().expect("close"));
            volumes.push(fields[volume_at].parse::<f64>().expect("volume"));
        }
        let returns: Vec<f64> = closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let n = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / n;
        let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let std = var.sqrt();
        let (start, end) = (closes[0], closes[closes.len() - 1]);
        Reference {
            rows: closes.len(),
            start,
            end,
            total_return_pct: (end / start - 1.0) * 100.0,
            volatility_pct: std * 252f64.sqrt() * 100.0,
            avg_volume: volumes.iter().sum::<f64>() / volumes.len() as f64,
            sharpe: mean * 252.0 / (std * 252f64.sqrt()),
        }
    }

    #[test]
    fn generated_file_matches_two_pass_reference() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = crate::datagen::GenSpec::notebook(dir.path().to_path_buf(), 7);
        let paths = crate::datagen::generate(&spec).expect("generate");
        for path in paths {
            let content = std::fs::read_to_string(&path).expect("read");
            let want = reference(&content);
            let got = summarize(&path, &settings()).expect("summarize");
            let rel = 1e-9;
            assert_eq!(got.rows, want.rows as u64);
            assert_eq!(got.start_price, want.start);
            assert_eq!(got.end_price, want.end);
            assert_close(got.total_return_pct, want.total_return_pct, rel, "total");
            let vol = got.volatility_pct.expect("volatility");
            assert_close(vol, want.volatility_pct, rel, "volatility");
            assert_close(got.avg_volume, want.avg_volume, rel, "avg volume");
            assert_close(got.sharpe.expect("sharpe"), want.sharpe, rel, "sharpe");
            assert_all_finite(&got);
            assert_eq!(
                Some(got.ticker.as_str()),
                path.file_stem().and_then(|s| s.to_str())
            );
        }
    }

    #[test]
    fn small_file_with_known_values() {
        // Closes 100 -> 110 -> 99 -> 108.9: returns +10 %, -10 %, +10 %.
        // mean = 1/30; deviations 2/30, -4/30, 2/30; sample variance = (24/900)/2 = 1/75.
        let content = b"date,close,volume\n\
            2020-01-01,100,1000\n\
            2020-01-02,110,2000\n\
            2020-01-03,99,3000\n\
            2020-01-04,108.9,6000\n";
        let stats = summarize_bytes("KNOWN.csv", content).expect("summarize");
        let std = (1.0f64 / 75.0).sqrt();
        assert_eq!(stats.ticker, "KNOWN");
        assert_eq!(stats.rows, 4);
        assert_eq!(stats.start_price, 100.0);
        assert_eq!(stats.end_price, 108.9);
        assert_close(stats.total_return_pct, 8.9, 1e-12, "total");
        let vol = stats.volatility_pct.expect("volatility");
        assert_close(vol, std * 252f64.sqrt() * 100.0, 1e-12, "volatility");
        // 183.303 % a year, as sqrt(252 / 75) = sqrt(3.36).
        assert_close(vol, 3.36f64.sqrt() * 100.0, 1e-12, "volatility");
        assert_eq!(stats.avg_volume, 3000.0);
        let sharpe = stats.sharpe.expect("sharpe");
        assert_close(sharpe, (252.0 / 30.0) / 3.36f64.sqrt(), 1e-12, "sharpe");
    }

    #[test]
    fn crlf_line_endings_and_whitespace() {
        let lf =
            b"date,close,volume\n2020-01-01,100,1000\n2020-01-02,110,2000\n2020-01-03,99,3000\n";
        let crlf = b"date , close ,volume\r\n2020-01-01, 100 ,1000\r\n2020-01-02,110,  2000\r\n2020-01-03,99,3000\r\n";
        let a = summarize_bytes("X.csv", lf).expect("lf");
        let b = summarize_bytes("X.csv", crlf).expect("crlf");
        assert_eq!(a, b);
        assert_eq!(b.rows, 3);
    }

    #[test]
    fn extra_columns_in_another_order() {
        let plain =
            b"date,close,volume\n2020-01-01,100,1000\n2020-01-02,101,2000\n2020-01-03,99.5,3000\n";
        let shuffled = b"\xef\xbb\xbfvolume,open,ticker,close,date\n\
            1000,1,A,100,2020-01-01\n\
            2000,2,A,101,2020-01-02\n\
            3000,3,A,99.5,2020-01-03\n";
        let a = summarize_bytes("A.csv", plain).expect("plain");
        let b = summarize_bytes("A.csv", shuffled).expect("shuffled, with a BOM");
        assert_eq!(a, b);
    }

    #[test]
    fn date_column_is_not_required_and_volume_may_be_float() {
        let content = b"close,volume\n100,1000.0\n101,2000\n102,3001.5\n";
        let stats = summarize_bytes("B.csv", content).expect("summarize");
        assert_eq!(stats.avg_volume, 2000.5);
    }

    #[test]
    fn constant_price_has_zero_volatility_and_no_sharpe() {
        let content = b"date,close,volume\n2020-01-01,50,10\n2020-01-02,50,10\n2020-01-03,50,10\n2020-01-04,50,10\n";
        let stats = summarize_bytes("FLAT.csv", content).expect("summarize");
        assert_eq!(stats.volatility_pct, Some(0.0));
        assert_eq!(stats.sharpe, None);
        assert_eq!(stats.total_return_pct, 0.0);
        assert_all_finite(&stats);
    }

    #[test]
    fn constant_nonzero_return_has_no_sharpe() {
        // Doubling every day: every return is exactly 1, so std is exactly 0.
        let content = b"close,volume\n1,0\n2,0\n4,0\n8,0\n";
        let stats = summarize_bytes("DBL.csv", content).expect("summarize");
        assert_eq!(stats.volatility_pct, Some(0.0));
        assert_eq!(stats.sharpe, None);
        assert_eq!(stats.total_return_pct, 700.0);
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("NOPE.csv");
        let err = summarize(&path, &settings()).expect_err("missing");
        assert_eq!(err.kind, ErrorKind::Io);
        assert!(err.message.contains("NOPE.csv"), "{}", err.message);
        assert!(err.message.contains("no such file"), "{}", err.message);
    }

    #[test]
    fn directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = summarize(dir.path(), &settings()).expect_err("directory");
        assert_eq!(err.kind, ErrorKind::Io);
        assert!(err.message.contains("directory"), "{}", err.message);
    }

    #[test]
    fn empty_file() {
        assert_parse_error(
            summarize_bytes("EMPTY.csv", b""),
            &["EMPTY.csv", "empty file", "0 bytes"],
        );
    }

    #[test]
    fn blank_lines_only() {
        assert_parse_error(
            summarize_bytes("BLANK.csv", b"\n\r\n\n"),
            &["BLANK.csv", "no header"],
        );
    }

    #[test]
    fn header_only() {
        for content in [
            &b"date,close,volume"[..],
            b"date,close,volume\n",
            b"date,close,volume\r\n\r\n",
        ] {
            assert_parse_error(
                summarize_bytes("HDR.csv", content),
                &["HDR.csv", "header only", "no data rows"],
            );
        }
    }

    #[test]
    fn missing_column_names_it_and_lists_the_found_ones() {
        let message = assert_parse_error(
            summarize_bytes("MISS.csv", b"date,price,volume\n2020-01-01,1,2\n"),
            &[
                "MISS.csv",
                "line 1",
                "missing column \"close\"",
                "\"date\", \"price\", \"volume\"",
            ],
        );
        assert!(!message.contains("case"), "{message}");
        assert_parse_error(
            summarize_bytes("MISS.csv", b"date,Close,Volume\n2020-01-01,1,2\n"),
            &["missing columns \"close\", \"volume\"", "case-sensitive"],
        );
        assert_parse_error(
            summarize_bytes("SEMI.csv", b"date;close;volume\n2020-01-01;1;2\n"),
            &["\"date;close;volume\"", "separated by commas"],
        );
    }

    #[test]
    fn duplicate_column() {
        assert_parse_error(
            summarize_bytes("DUP.csv", b"close,volume,close\n1,2,3\n"),
            &[
                "DUP.csv",
                "\"close\" appears more than once",
                "columns 1 and 3",
            ],
        );
    }

    #[test]
    fn non_numeric_value_is_quoted_with_line_and_column() {
        let content =
            b"date,close,volume\n2020-01-01,100,1000\n2020-01-02,abc,1000\n2020-01-03,1,1\n";
        assert_parse_error(
            summarize_bytes("TXT.csv", content),
            &[
                "TXT.csv",
                "line 3",
                "column 2 \"close\"",
                "\"abc\" is not a number",
            ],
        );
        let content = b"date,close,volume\n2020-01-01,100,1000\n2020-01-02,100,\n";
        assert_parse_error(
            summarize_bytes("TXT.csv", content),
            &["line 3", "column 3 \"volume\"", "empty"],
        );
        let content = b"date,close,volume\n2020-01-01,100,\"1,000\"\n";
        assert_parse_error(
            summarize_bytes("TXT.csv", content),
            &["line 2", "column 3 \"volume\"", "\"1,000\" is not a number"],
        );
    }

    #[test]
    fn non_finite_value() {
        for bad in ["NaN", "inf", "-inf", "infinity", "nan", "1e400"] {
            let content =
                format!("date,close,volume\n2020-01-01,100,1000\n2020-01-02,{bad},1000\n");
            let message = assert_parse_error(
                summarize_bytes("INF.csv", content.as_bytes()),
                &[
                    "INF.csv",
                    "line 3",
                    "column 2 \"close\"",
                    "not a finite number",
                ],
            );
            assert!(message.contains(bad), "{message}");
        }
        let content = b"date,close,volume\n2020-01-01,100,NaN\n";
        assert_parse_error(
            summarize_bytes("INF.csv", content),
            &[
                "line 2",
                "column 3 \"volume\"",
                "\"NaN\" is not a finite number",
            ],
        );
    }

    #[test]
    fn non_positive_price() {
        for bad in ["0", "-5", "-0"] {
            let content = format!(
                "date,close,volume\n2020-01-01,100,1\n2020-01-02,1,1\n2020-01-03,{bad},1\n"
            );
            assert_parse_error(
                summarize_bytes("NEG.csv", content.as_bytes()),
                &["NEG.csv", "line 4", "column 2 \"close\"", "not positive"],
            );
        }
    }

    #[test]
    fn negative_volume() {
        let content = b"date,close,volume\n2020-01-01,100,1\n2020-01-02,101,-3\n";
        assert_parse_error(
            summarize_bytes("VOL.csv", content),
            &["VOL.csv", "line 3", "column 3 \"volume\"", "-3 is negative"],
        );
        // Zero volume is a valid (if quiet) day, and "-0" is zero.
        let content = b"close,volume\n1,0\n2,-0\n3,0\n";
        let stats = summarize_bytes("VOL.csv", content).expect("zero volume");
        assert!(stats.avg_volume == 0.0 && stats.avg_volume.is_sign_positive());
    }

    #[test]
    fn too_few_rows_says_how_many() {
        let one = b"date,close,volume\n2020-01-01,100,1\n";
        assert_parse_error(
            summarize_bytes("FEW.csv", one),
            &[
                "FEW.csv",
                "too few rows",
                "1 data row (0 returns)",
                "at least 3",
            ],
        );
        let two = b"date,close,volume\n2020-01-01,100,1\n2020-01-02,101,1\n";
        assert_parse_error(
            summarize_bytes("FEW.csv", two),
            &["2 data rows (1 return)", "at least 3"],
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let content =
            b"date,close,volume\n2020-01-01,100,1\n2020-01-\xff02,101,1\n2020-01-03,102,1\n";
        assert_parse_error(
            summarize_bytes("UTF.csv", content),
            &["UTF.csv", "line 3", "column 1 \"date\"", "invalid UTF-8"],
        );
        assert_parse_error(
            summarize_bytes("UTF.csv", b"date,cl\xc3ose,volume\n1,2,3\n"),
            &["UTF.csv", "line 1", "column 2", "invalid UTF-8"],
        );
    }

    #[test]
    fn row_with_too_few_or_too_many_fields() {
        let content = b"date,close,volume\n2020-01-01,100,1\n2020-01-02,101\n";
        assert_parse_error(
            summarize_bytes("SHORT.csv", content),
            &["SHORT.csv", "line 3", "too few fields: 2", "header has 3"],
        );
        let content = b"date,close,volume\n2020-01-01,100,1,9\n";
        assert_parse_error(
            summarize_bytes("LONG.csv", content),
            &["LONG.csv", "line 2", "too many fields: 4"],
        );
    }

    #[test]
    fn overflowing_return_is_an_error_not_inf() {
        let content = b"close,volume\n1e-300,1\n1e300,1\n1,1\n";
        assert_parse_error(
            summarize_bytes("HUGE.csv", content),
            &["HUGE.csv", "line 3", "too large"],
        );
        let content = b"close,volume\n1,1e308\n1,1.7e308\n1,1.7e308\n";
        let stats = summarize_bytes("BIGVOL.csv", content).expect("large volumes");
        assert_all_finite(&stats);
        assert_close(
            stats.avg_volume,
            1e308 / 3.0 + 1.7e308 / 3.0 * 2.0,
            1e-12,
            "avg volume",
        );
    }

    #[test]
    fn io_delay_is_applied() {
        let content = b"close,volume\n1,1\n2,1\n3,1\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(&dir, "SLOW.csv", content);
        let start = std::time::Instant::now();
        summarize(&path, &FileSettings { io_delay_ms: 30 }).expect("summarize");
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
