//! The `files` workload: the notebook's `process_stock_file`, summary statistics of one CSV
//! of daily prices, computed in one streaming pass so that memory stays constant whatever
//! the size of the file.
//!
//! The statistics are those pandas computes in the notebook: returns are `pct_change` of
//! the price column (the first row has none), the standard deviation is the sample one
//! (ddof = 1), and annualisation uses 252 trading days. Mean and variance of the returns use
//! Welford's online algorithm (Welford 1962; Knuth, TAOCP vol. 2, 4.2.2), which is
//! numerically stable where the textbook `sum(x^2) - n * mean^2` is not.
//!
//! Whatever a file holds, its task ends with a value or with its own `io`/`parse` error:
//! only regular files are opened (a FIFO would block, a device may never end), a row is
//! bounded by [`MAX_ROW_BYTES`], and an error message quotes at most [`QUOTE_CHARS`]
//! characters of the file and is at most [`MAX_MESSAGE_BYTES`] long, so an outcome always
//! fits the frame that carries it.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ErrorKind, TaskError};

/// Trading days per year, the notebook's annualisation factor.
const TRADING_DAYS: f64 = 252.0;

/// Rows needed for a sample standard deviation of returns: 3 rows give 2 returns.
const MIN_ROWS: u64 = 3;

/// The csv reader's buffer: large enough that reading is not dominated by system calls.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The longest row (a line, or a quoted row spanning lines, and so also the longest
/// field) that is read; a longer one is a `parse` error, so that a file without line
/// breaks (a sparse file, a binary) cannot grow the reader's memory. Rows up to this
/// length are always read; bytes are counted as the reader fetches them, so a row up to
/// one read buffer (64 KiB) longer may be read too.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// How many characters of a file's content an error message quotes.
pub const QUOTE_CHARS: usize = 80;

/// The longest error message, path included: far below the frame limit, whatever the path
/// or the file holds.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Header columns listed by a "missing column" message; the rest are counted.
const LISTED_COLUMNS: usize = 20;

/// The price column unless `--price-column` names another.
pub const DEFAULT_PRICE_COLUMN: &str = "close";

/// The column of traded volumes.
const VOLUME_COLUMN: &str = "volume";

/// What pandas' `read_csv` reads as a missing value by default (its `na_values`), so that
/// skipping drops exactly the rows pandas' `dropna` would.
const MISSING_MARKERS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Settings shared by every `files` task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSettings {
    /// Simulated slow-storage delay before reading each file (the notebook uses 100 ms).
    pub io_delay_ms: u64,
    /// The column of prices, matched like every column name: ignoring case and
    /// surrounding spaces (`Adj Close` for a Yahoo Finance download).
    pub price_column: String,
    /// What a row whose price or volume is missing does.
    pub missing: Missing,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            io_delay_ms: 0,
            price_column: DEFAULT_PRICE_COLUMN.to_string(),
            missing: Missing::Error,
        }
    }
}

/// What a missing price or volume (empty, `null`, `NaN`, any of pandas' default missing
/// markers) does to its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Missing {
    /// The file's task fails with a `parse` error naming the line.
    #[default]
    Error,
    /// The row is left out of the statistics and counted in `skipped_rows`, as pandas'
    /// `dropna` on the two columns would.
    Skip,
}

impl FromStr for Missing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "error" => Ok(Missing::Error),
            "skip" => Ok(Missing::Skip),
            other => Err(format!("`{other}` is neither `error` nor `skip`")),
        }
    }
}

/// Summary statistics of one file, as the notebook's `process_stock_file` computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStats {
    /// The file's stem: `AAPL` for `AAPL.csv` (bytes that are not UTF-8 become U+FFFD).
    pub ticker: String,
    /// Number of data rows the statistics use (the header and skipped rows not counted).
    pub rows: u64,
    /// Price of the first row used.
    pub start_price: f64,
    /// Price of the last row used.
    pub end_price: f64,
    /// `(end_price / start_price - 1) * 100`.
    pub total_return_pct: f64,
    /// Sample standard deviation (ddof = 1) of daily returns, annualised: `* sqrt(252) * 100`.
    pub volatility_pct: Option<f64>,
    /// Mean of `volume`.
    pub avg_volume: f64,
    /// `mean(r) * 252 / (std(r) * sqrt(252))`; `None` when every return is the same (std 0).
    pub sharpe: Option<f64>,
    /// Rows left out because their price or volume is missing (`--missing skip`).
    pub skipped_rows: u64,
}

/// Summarises price files; the settings are the task's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Files(pub FileSettings);

impl crate::Task for Files {
    const NAME: &'static str = "files";
    type Input = FilePath;
    type Output = FileStats;

    fn run(&self, path: &FilePath, _: &crate::Attempt) -> Result<FileStats, TaskError> {
        summarize(path.as_path(), &self.0)
    }

    fn input_bytes(path: &FilePath) -> usize {
        path.len_bytes()
    }
}

/// A file's path as it crosses the process boundary: the operating system's bytes, exactly
/// (Unix paths are bytes), so that a name which is not UTF-8 still opens the file it names.
/// Text only for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FilePath(#[serde(with = "serde_bytes")] Vec<u8>);

impl FilePath {
    /// The path, borrowed: no copy on the way to `open`.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The path for people: bytes that are not UTF-8 become U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Length in bytes, for the chunker's frame budget.
    pub fn len_bytes(&self) -> usize {
        self.0.len()
    }
}

impl From<&Path> for FilePath {
    fn from(path: &Path) -> FilePath {
        FilePath(path.as_os_str().as_bytes().to_vec())
    }
}

impl From<PathBuf> for FilePath {
    fn from(path: PathBuf) -> FilePath {
        FilePath(path.into_os_string().into_vec())
    }
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
        .from_reader(RowBudget::new(file));
    let header = Header::read(path, &settings.price_column, &mut reader)?;
    reader.get_mut().next_row();

    let mut series = Series::default();
    let mut record = csv::StringRecord::new();
    loop {
        // Where the next row starts, for an error that comes before the row is known.
        let next_line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(true) => reader.get_mut().next_row(),
            Ok(false) => break,
            Err(err) => return Err(csv_error(path, Some(&header), next_line, err)),
        }
        let line = record.position().map_or(next_line, csv::Position::line);
        let close = number(path, line, &header.price, &record)?;
        let volume = number(path, line, &header.volume, &record)?;
        let (close, volume) = match (close, volume, settings.missing) {
            (Ok(close), Ok(volume), _) => (close, volume),
            (Err(_), _, Missing::Skip) | (_, Err(_), Missing::Skip) => {
                series.skipped += 1;
                continue;
            }
            (Err(marker), _, Missing::Error) => {
                return Err(missing_value(path, line, &header.price, marker))
            }
            (_, Err(marker), Missing::Error) => {
                return Err(missing_value(path, line, &header.volume, marker))
            }
        };
        if close <= 0.0 {
            return Err(parse_error(
                path,
                format!(
                    "line {line}, {}: price {close} is not positive (returns need a price > 0)",
                    header.price
                ),
            ));
        }
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

/// Opens a regular file, telling a missing file, a denied one, a directory and every other
/// kind of non-file apart. The type is checked before opening, since opening a FIFO
/// blocks until a writer comes and opening a device may act on it, and again on what was
/// opened, since the path may have been replaced in between.
fn open(path: &Path) -> Result<File, TaskError> {
    let io = |what: String| io_error(path, what);
    let cannot = |err: io::Error, doing: &str| match err.kind() {
        io::ErrorKind::NotFound => io("no such file".to_string()),
        io::ErrorKind::PermissionDenied => io("permission denied".to_string()),
        _ => io(format!("cannot {doing}: {err}")),
    };
    let meta = std::fs::metadata(path).map_err(|err| cannot(err, "open"))?;
    regular_file(path, &meta)?;
    let file = open_nonblocking(path).map_err(|err| cannot(err, "open"))?;
    let meta = file
        .metadata()
        .map_err(|err| io(format!("cannot read its metadata: {err}")))?;
    regular_file(path, &meta)?;
    Ok(file)
}

/// Opens for reading without waiting: should a FIFO have replaced the file after the
/// check, `open` returns at once instead of blocking for a writer. Reads of a regular file
/// ignore the flag.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// `Ok` for a regular file, else an `io` error saying what the path is instead.
fn regular_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), TaskError> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_file_kind(&kind)
    };
    Err(io_error(
        path,
        format!("is {what}, not a regular file: only regular CSV files are read"),
    ))
}

fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// The file as the csv reader sees it: at most a row's budget of bytes between two calls
/// of [`RowBudget::next_row`], so that neither a row nor a field can grow without bound.
struct RowBudget<R> {
    inner: R,
    left: usize,
}

/// A row reaches the budget: [`MAX_ROW_BYTES`] plus one read buffer, since the reader
/// fetches a whole buffer ahead of the row it parses.
const ROW_BUDGET_BYTES: usize = MAX_ROW_BYTES + READ_BUFFER_BYTES;

impl<R> RowBudget<R> {
    fn new(inner: R) -> Self {
        RowBudget {
            inner,
            left: ROW_BUDGET_BYTES,
        }
    }

    /// A row was read: the next one gets a whole budget.
    fn next_row(&mut self) {
        self.left = ROW_BUDGET_BYTES;
    }
}

impl<R: Read> Read for RowBudget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(RowTooLong));
        }
        let len = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..len])?;
        self.left -= n;
        Ok(n)
    }
}

/// The error [`RowBudget`] stops the reader with.
#[derive(Debug, thiserror::Error)]
#[error("row longer than {MAX_ROW_BYTES} bytes")]
struct RowTooLong;

/// Every error of this workload: the path first, and never longer than
/// [`MAX_MESSAGE_BYTES`].
fn error(kind: ErrorKind, path: &Path, what: impl fmt::Display) -> TaskError {
    let mut message = format!("{}: {what}", path.display());
    if message.len() > MAX_MESSAGE_BYTES {
        let cut = message.floor_char_boundary(MAX_MESSAGE_BYTES - 3);
        message.truncate(cut);
        message.push('…');
    }
    TaskError::new(kind, message)
}

fn parse_error(path: &Path, what: impl fmt::Display) -> TaskError {
    error(ErrorKind::Parse, path, what)
}

fn io_error(path: &Path, what: impl fmt::Display) -> TaskError {
    error(ErrorKind::Io, path, what)
}

/// Content of the file as an error message shows it: quoted and escaped as Rust's `{:?}`
/// does (so a control character cannot reach a terminal), cut to [`QUOTE_CHARS`]
/// characters.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}... ({} bytes in all)", text.len())
    } else {
        format!("{head:?}")
    }
}

/// A column the statistics need, found in the header by name.
#[derive(Debug, Clone)]
struct Column {
    /// The name as the header writes it, for messages.
    name: String,
    /// 0-based index into a record.
    index: usize,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {} {}", self.index + 1, quote(&self.name))
    }
}

/// The header line: every column's name (for messages) and where price and volume are.
struct Header {
    names: Vec<String>,
    price: Column,
    volume: Column,
}

impl Header {
    /// Reads the header and finds the needed columns by name, in any order among any
    /// others, ignoring case and surrounding spaces.
    fn read<R: Read>(
        path: &Path,
        price_column: &str,
        reader: &mut csv::Reader<R>,
    ) -> Result<Header, TaskError> {
        let record = reader
            .headers()
            .map_err(|err| csv_error(path, None, 1, err))?;
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

        let find = |want: &str| -> Result<Option<Column>, TaskError> {
            let want = want.trim().to_lowercase();
            let mut found = names
                .iter()
                .enumerate()
                .filter(|(_, name)| name.to_lowercase() == want);
            match (found.next(), found.next()) {
                (Some((index, name)), None) => Ok(Some(Column {
                    name: name.clone(),
                    index,
                })),
                (Some((first, _)), Some((second, _))) => Err(parse_error(
                    path,
                    format!(
                        "line {line}: column {} appears more than once in the header \
                         (columns {} and {}; names are compared ignoring case)",
                        quote(&want),
                        first + 1,
                        second + 1
                    ),
                )),
                (None, _) => Ok(None),
            }
        };
        let (price, volume) = (find(price_column)?, find(VOLUME_COLUMN)?);
        match (price, volume) {
            (Some(price), Some(volume)) => Ok(Header {
                names,
                price,
                volume,
            }),
            (price, volume) => {
                let mut missing = Vec::new();
                if price.is_none() {
                    missing.push(price_column.trim());
                }
                if volume.is_none() {
                    missing.push(VOLUME_COLUMN);
                }
                Err(parse_error(path, missing_columns(line, &missing, &names)))
            }
        }
    }

    /// The name of the 0-based field `index`, for messages about it.
    fn describe(&self, index: usize) -> String {
        match self.names.get(index) {
            Some(name) if !name.is_empty() => format!("column {} {}", index + 1, quote(name)),
            _ => format!("column {}", index + 1),
        }
    }
}

/// The numeric value of one needed field; `Ok(Err(text))` when the field marks a missing
/// value (empty, `null`, `NaN`...), an error saying where and why when it is not a number.
fn number<'r>(
    path: &Path,
    line: u64,
    column: &Column,
    record: &'r csv::StringRecord,
) -> Result<Result<f64, &'r str>, TaskError> {
    // The csv reader rejects rows whose length differs from the header's, so the field
    // exists; an absent one still reads as empty rather than panicking.
    let raw = record.get(column.index).unwrap_or("");
    let text = raw.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Ok(value)),
        // Only pandas' own spellings: it reads `NAN` or `+nan` as text, not as missing.
        _ if MISSING_MARKERS.contains(&text) => Ok(Err(text)),
        Ok(_) => Err(parse_error(
            path,
            format!(
                "line {line}, {column}: {} is not a finite number",
                quote(text)
            ),
        )),
        Err(_) => Err(parse_error(
            path,
            format!("line {line}, {column}: {} is not a number", quote(raw)),
        )),
    }
}

/// The error for a missing value under `--missing error`.
fn missing_value(path: &Path, line: u64, column: &Column, marker: &str) -> TaskError {
    let what = if marker.is_empty() {
        "value is empty, a number is needed".to_string()
    } else {
        format!(
            "{} marks a missing value, a number is needed",
            quote(marker)
        )
    };
    parse_error(
        path,
        format!("line {line}, {column}: {what} (--missing skip leaves such rows out)"),
    )
}

fn missing_columns(line: u64, missing: &[&str], found: &[String]) -> String {
    let plural = if missing.len() == 1 { "" } else { "s" };
    let wanted: Vec<String> = missing.iter().map(|name| quote(name)).collect();
    let mut listed: Vec<String> = found
        .iter()
        .take(LISTED_COLUMNS)
        .map(|name| quote(name))
        .collect();
    if found.len() > LISTED_COLUMNS {
        listed.push(format!("and {} more", found.len() - LISTED_COLUMNS));
    }
    let mut message = format!(
        "line {line}: missing column{plural} {} in the header; columns found: {}",
        wanted.join(", "),
        listed.join(", "),
    );
    // One column whose name holds another separator: the file is not comma-separated.
    if let [only] = found {
        if only.contains([';', '\t', '|']) {
            message.push_str(" (fields must be separated by commas)");
        }
    }
    message
}

/// Turns an error of the csv reader into a task error with the line (and column) it names;
/// `line` is where the row being read started, for errors that carry no position.
fn csv_error(path: &Path, header: Option<&Header>, line: u64, err: csv::Error) -> TaskError {
    let line_of = |pos: Option<&csv::Position>| format!("line {}", pos.map_or(line, |p| p.line()));
    match err.kind() {
        csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|e| e.is::<RowTooLong>()) => {
            parse_error(
                path,
                format!(
                    "line {line}: row longer than {} MiB, the limit of a row (is this a CSV \
                     file with line breaks?)",
                    MAX_ROW_BYTES >> 20
                ),
            )
        }
        csv::ErrorKind::Io(io) => io_error(path, format!("cannot read: {io}")),
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
    /// Rows left out for a missing value.
    skipped: u64,
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
                        "line {line}: the return from price {} to {close} is too large to \
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
        if self.rows == 0 && self.skipped > 0 {
            return Err(parse_error(
                path,
                format!(
                    "every data row ({}) has a missing price or volume and was skipped \
                     (at least {MIN_ROWS} rows are needed)",
                    self.skipped
                ),
            ));
        }
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
                     ({} return{}){}, at least {MIN_ROWS} rows are needed",
                    self.rows,
                    self.returns.count,
                    if self.returns.count == 1 { "" } else { "s" },
                    skipped_note(self.skipped),
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
            skipped_rows: self.skipped,
        };
        check_finite(path, &stats)?;
        Ok(stats)
    }
}

/// ` after N rows with a missing value were skipped`, or nothing when none were.
fn skipped_note(skipped: u64) -> String {
    match skipped {
        0 => String::new(),
        n => format!(
            " after {n} row{} with a missing value skipped",
            if n == 1 { "" } else { "s" }
        ),
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
            summarize_bytes("MISS.csv", b"date,Price,Vol\n2020-01-01,1,2\n"),
            &["missing columns \"close\", \"volume\""],
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
        for bad in ["inf", "-inf", "infinity", "1e400", "NAN", "+nan"] {
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
        let content = b"date,close,volume\n2020-01-01,100,inf\n";
        assert_parse_error(
            summarize_bytes("INF.csv", content),
            &[
                "line 2",
                "column 3 \"volume\"",
                "\"inf\" is not a finite number",
            ],
        );
    }

    #[test]
    fn missing_values_are_errors_by_default() {
        for marker in ["NaN", "nan", "-nan", "null", "NULL", "N/A", "None"] {
            let content =
                format!("date,close,volume\n2020-01-01,100,1000\n2020-01-02,{marker},1000\n");
            assert_parse_error(
                summarize_bytes("NA.csv", content.as_bytes()),
                &[
                    "NA.csv",
                    "line 3",
                    "column 2 \"close\"",
                    &format!("\"{marker}\" marks a missing value"),
                    "--missing skip",
                ],
            );
        }
        assert_parse_error(
            summarize_bytes("NA.csv", b"date,close,volume\n2020-01-01,100,\n"),
            &["line 2", "column 3 \"volume\"", "empty", "--missing skip"],
        );
    }

    /// A Yahoo Finance download: capitalised names, `Adj Close`, and a `null` row.
    const YAHOO: &[u8] = b"Date,Open,High,Low,Close,Adj Close,Volume\n\
        2024-01-02,187.15,188.44,183.89,185.64,184.73,82488700\n\
        2024-01-03,184.22,185.88,183.43,184.25,183.35,58414500\n\
        2024-01-04,null,null,null,null,null,null\n\
        2024-01-05,181.99,182.76,180.17,181.18,180.29,62303300\n\
        2024-01-08,182.09,185.60,181.50,185.56,184.65,59144500\n\
        2024-01-09,183.92,185.15,182.73,185.14,184.23,\n";

    /// YAHOO without the rows that have a missing value, written as a plain file.
    const YAHOO_KEPT: &[u8] = b"date,close,adj close,volume\n\
        2024-01-02,185.64,184.73,82488700\n\
        2024-01-03,184.25,183.35,58414500\n\
        2024-01-05,181.18,180.29,62303300\n\
        2024-01-08,185.56,184.65,59144500\n";

    fn with(price_column: &str, missing: Missing) -> FileSettings {
        FileSettings {
            price_column: price_column.to_string(),
            missing,
            ..settings()
        }
    }

    fn summarize_with(
        name: &str,
        content: &[u8],
        settings: &FileSettings,
    ) -> Result<FileStats, TaskError> {
        let dir = tempfile::tempdir().expect("temp dir");
        summarize(&write(&dir, name, content), settings)
    }

    #[test]
    fn yahoo_download_is_read_with_skip_and_gives_the_kept_rows_statistics() {
        assert_parse_error(
            summarize_with("AAPL.csv", YAHOO, &with("close", Missing::Error)),
            &[
                "line 4",
                "column 5 \"Close\"",
                "\"null\" marks a missing value",
            ],
        );
        for price in ["close", "Adj Close", " adj close "] {
            let got = summarize_with("AAPL.csv", YAHOO, &with(price, Missing::Skip))
                .expect("yahoo with skip");
            let want = summarize_with("AAPL.csv", YAHOO_KEPT, &with(price, Missing::Error))
                .expect("the kept rows");
            assert_eq!(got.skipped_rows, 2, "{price}");
            assert_eq!(want.skipped_rows, 0);
            assert_eq!(got.rows, 4);
            assert_eq!(
                FileStats {
                    skipped_rows: 0,
                    ..got
                },
                want,
                "{price}"
            );
        }
        let adjusted =
            summarize_with("AAPL.csv", YAHOO, &with("Adj Close", Missing::Skip)).expect("adjusted");
        assert_eq!(adjusted.start_price, 184.73);
        let message = assert_parse_error(
            summarize_with("AAPL.csv", YAHOO, &with("Last", Missing::Skip)),
            &["missing column \"Last\"", "\"Adj Close\""],
        );
        assert!(!message.contains("volume"), "{message}");
    }

    #[test]
    fn every_row_skipped_says_so() {
        let content = b"close,volume\nnull,1\n1,\nNaN,NaN\n";
        let message = assert_parse_error(
            summarize_with("ALLNA.csv", content, &with("close", Missing::Skip)),
            &["every data row (3)", "skipped"],
        );
        assert!(!message.contains("header only"), "{message}");
        let content = b"close,volume\n1,1\nnull,1\n2,1\n";
        assert_parse_error(
            summarize_with("FEWNA.csv", content, &with("close", Missing::Skip)),
            &["2 data rows (1 return) after 1 row with a missing value skipped"],
        );
    }

    #[test]
    fn a_name_differing_only_in_case_is_a_duplicate() {
        assert_parse_error(
            summarize_bytes("DUP.csv", b"Close,volume,CLOSE\n1,2,3\n"),
            &[
                "\"close\" appears more than once",
                "columns 1 and 3",
                "ignoring case",
            ],
        );
    }

    /// Runs `summarize` on a thread, failing the test if it has not returned after a
    /// generous while (a hang guard: no test comes near it).
    fn summarize_guarded(path: PathBuf) -> Result<FileStats, TaskError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(summarize(&path, &FileSettings::default())));
        rx.recv_timeout(Duration::from_secs(30))
            .expect("summarize blocked")
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("PIPE.csv");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let err = summarize_guarded(path).expect_err("a FIFO");
        assert_eq!(err.kind, ErrorKind::Io, "{err}");
        assert!(err.message.contains("FIFO"), "{err}");
        assert!(err.message.contains("not a regular file"), "{err}");
    }

    #[test]
    fn character_device_is_refused_even_through_a_csv_symlink() {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("ZERO.csv");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        for path in [PathBuf::from("/dev/zero"), link] {
            let err = summarize_guarded(path).expect_err("a device");
            assert_eq!(err.kind, ErrorKind::Io, "{err}");
            assert!(err.message.contains("character device"), "{err}");
        }
    }

    #[test]
    fn file_without_line_breaks_ends_at_the_row_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Sparse: 64 MiB of zero bytes that take no disk space.
        let path = dir.path().join("SPARSE.csv");
        File::create(&path)
            .and_then(|f| f.set_len(64 << 20))
            .expect("sparse file");
        let err = summarize(&path, &settings()).expect_err("sparse");
        assert_eq!(err.kind, ErrorKind::Parse, "{err}");
        assert!(err.message.contains("line 1"), "{err}");
        assert!(err.message.contains("longer than 1 MiB"), "{err}");
        // The same in a data row, and in a quoted field that spans lines.
        let mut long = b"close,volume\n1,1\n2,".to_vec();
        long.extend(std::iter::repeat_n(b'7', 2 * MAX_ROW_BYTES));
        let err = summarize_bytes("LONG.csv", &long).expect_err("long row");
        assert!(err.message.contains("line 3: row longer"), "{err}");
        let mut quoted = b"close,volume\n1,\"".to_vec();
        quoted.extend(std::iter::repeat_n(b'\n', 2 * MAX_ROW_BYTES));
        let err = summarize_bytes("QUOTED.csv", &quoted).expect_err("long quoted row");
        assert!(err.message.contains("line 2: row longer"), "{err}");
    }

    #[test]
    fn rows_up_to_the_limit_are_read() {
        // Long rows, each just within the limit, between ordinary ones.
        let note = "n".repeat(MAX_ROW_BYTES - 16);
        let mut content = String::from("note,close,volume\n");
        for close in [100, 101, 99, 102] {
            content.push_str(&format!("{note},{close},5\n"));
            content.push_str(&format!("x,{close},5\n"));
        }
        let stats = summarize_bytes("WIDE.csv", content.as_bytes()).expect("rows within the limit");
        assert_eq!(stats.rows, 8);
    }

    #[test]
    fn messages_quote_little_of_a_huge_field() {
        let field = "9x".repeat(300_000);
        let content = format!("close,volume\n1,1\n{field},1\n");
        let message = assert_parse_error(
            summarize_bytes("FIELD.csv", content.as_bytes()),
            &["line 3", "is not a number", "600000 bytes in all"],
        );
        assert!(message.len() < 300, "{} bytes: {message}", message.len());
        // A header of a hundred thousand columns, none of them needed ones.
        let header = vec!["c"; 100_000].join(",");
        let message = assert_parse_error(
            summarize_bytes("WIDE.csv", format!("{header}\n").as_bytes()),
            &["missing columns", "and 99980 more"],
        );
        assert!(message.len() < MAX_MESSAGE_BYTES, "{} bytes", message.len());
        // Control characters from the file are escaped, not passed on.
        let message = assert_parse_error(
            summarize_bytes("ESC.csv", b"close,volume\n1,1\n\"\x1b[31m\n\",1\n"),
            &["\\u{1b}[31m\\n"],
        );
        assert!(!message.contains(['\u{1b}', '\n']), "{message}");
    }

    #[test]
    fn non_utf8_file_name_is_read_by_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let name = std::ffi::OsStr::from_bytes(b"\xff\xfe.csv");
        let path = dir.path().join(name);
        std::fs::write(&path, b"close,volume\n1,1\n2,1\n3,1\n").expect("write");
        // Across the wire and back, as a worker receives it.
        let input = FilePath::from(path.as_path());
        let frame = crate::codec::encode(&input).expect("encode");
        let received = crate::codec::decode::<FilePath>(&frame).expect("decode");
        assert_eq!(received.as_path(), path);
        let stats = summarize(received.as_path(), &settings()).expect("read by its bytes");
        assert_eq!(stats.ticker, "\u{fffd}\u{fffd}");
        assert_eq!(stats.rows, 3);
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
        let settings = FileSettings {
            io_delay_ms: 30,
            ..settings()
        };
        summarize(&path, &settings).expect("summarize");
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
