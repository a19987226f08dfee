//! `table` export: aligned rows printed the moment each outcome arrives (with the time
//! since the start in completion order, like the notebook's `[0.21s] Got AAPL`), then a
//! summary table.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::Output;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table as Grid};

use super::{Exporter, Layout};
use crate::builtin::{Input, Record};
use crate::report::{self, Cell, CellRoom, Summary};
use workpool::pool::Order;
use workpool::ErrorKind;

pub struct Table {
    out: Output,
    /// The value's fields shown, by their position in [`report::value_columns`]: a field
    /// that repeats the input (a quote's ticker) or matters little (its simulated latency)
    /// is left to the other formats, so a row fits 100 columns.
    shown: Vec<usize>,
    headers: Vec<&'static str>,
    order: Order,
    quiet: bool,
    widths: Vec<usize>,
    header_written: bool,
    /// Consecutive tasks cancelled before they ran: one line says them all.
    cancelled: Option<CancelledRun>,
    /// Whether rows go to a terminal, where cancelled ones are dimmed.
    terminal: bool,
    /// Reused for every row: a row costs no allocation.
    line: String,
    cell: String,
    number: String,
    room: CellRoom,
}

/// A run of tasks cancelled before they ran, by index, with the reason they share.
struct CancelledRun {
    first: u64,
    last: u64,
    reason: String,
}

/// Value fields the table leaves out, by workload (the JSON and CSV keep them): a ticker
/// the input already shows, a simulated latency.
fn hidden(workload: &str, column: &str) -> bool {
    matches!(
        (workload, column),
        ("fetch", "ticker" | "latency_ms") | ("files", "ticker")
    )
}

/// A column's header in the table: the field's name, shortened where it is long.
fn header(column: &'static str) -> &'static str {
    match column {
        "start_price" => "start",
        "end_price" => "end",
        "total_return_pct" => "return%",
        "volatility_pct" => "vol%",
        "avg_volume" => "avg_volume",
        "skipped_rows" => "skipped",
        other => other,
    }
}

impl Table {
    pub fn new(out: Output, layout: Layout) -> Self {
        let columns = report::value_columns(layout.workload);
        let shown: Vec<usize> = (0..columns.len())
            .filter(|&i| !hidden(layout.workload, columns[i]))
            .collect();
        let headers: Vec<&'static str> = ["index", "input"]
            .into_iter()
            .chain(shown.iter().map(|&i| header(columns[i])))
            .chain(["attempts", "worker", "pid", "ms"])
            .collect();
        // Tickers are short; payload sizes, sleeps and paths less so.
        let input_width = if layout.workload == "fetch" { 6 } else { 14 };
        let mut widths = vec![5, input_width];
        widths.extend(shown.iter().map(|&i| header(columns[i]).len().max(8)));
        widths.extend([8, 6, 7, 8]);
        Table {
            out,
            shown,
            headers,
            order: layout.order,
            quiet: layout.quiet,
            widths,
            header_written: false,
            cancelled: None,
            terminal: layout.terminal,
            line: String::new(),
            cell: String::new(),
            number: String::new(),
            room: CellRoom::default(),
        }
    }

    /// Appends the `n`th cell of the line, right-aligned in its column, escaped.
    fn push(&mut self, n: usize, text: &str) {
        push_to(&mut self.line, &self.widths, n, text);
    }

    /// Appends a value cell: numbers as in the other formats, but floats to 2 decimals
    /// (prices, percentages, ratios: more digits are noise in a table).
    fn push_cell(&mut self, n: usize, cell: Cell<'_>) {
        match cell {
            Cell::Float(f) if f.is_finite() => {
                self.number.clear();
                let _ = write!(self.number, "{f:.2}");
                push_to(&mut self.line, &self.widths, n, &self.number);
            }
            _ => push_to(&mut self.line, &self.widths, n, cell.render(&mut self.room)),
        }
    }

    /// Writes the line built so far, without its trailing blanks.
    fn end_line(&mut self) -> io::Result<()> {
        let line = self.line.trim_end();
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        self.line.clear();
        if self.order == Order::Completion {
            self.line.push_str("[   time] ");
        }
        for n in 0..self.headers.len() {
            let header = self.headers[n];
            self.push(n, header);
        }
        self.end_line()
    }

    /// Writes the line for the run of cancelled tasks held back, if any.
    fn end_cancelled_run(&mut self) -> io::Result<()> {
        let Some(run) = self.cancelled.take() else {
            return Ok(());
        };
        let count = run.last - run.first + 1;
        let tasks = if count == 1 { "task" } else { "tasks" };
        let index = if count == 1 {
            run.first.to_string()
        } else {
            format!("{}..{}", run.first, run.last)
        };
        self.line.clear();
        if self.order == Order::Completion {
            self.line.push_str("[      -] ");
        }
        self.push(0, &index);
        let text = format!("cancelled: {} ({count} {tasks}, not run)", run.reason);
        self.line.push_str(&escape_controls(&text));
        if self.terminal {
            let dimmed = console::style(self.line.trim_end())
                .dim()
                .force_styling(true);
            self.line = dimmed.to_string();
        }
        self.end_line()
    }

    /// Holds back a task cancelled before it ran, to say a run of them in one line.
    fn hold_cancelled(&mut self, index: u64, reason: &str) -> io::Result<()> {
        if let Some(run) = &mut self.cancelled {
            if run.last + 1 == index && run.reason == reason {
                run.last = index;
                return Ok(());
            }
        }
        self.end_cancelled_run()?;
        self.cancelled = Some(CancelledRun {
            first: index,
            last: index,
            reason: reason.to_string(),
        });
        Ok(())
    }
}

impl Exporter for Table {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.header()?;
        if let Some(reason) = crate::builtin::never_ran(record) {
            return self.hold_cancelled(record.index, reason);
        }
        self.end_cancelled_run()?;
        self.line.clear();
        if self.order == Order::Completion {
            let _ = write!(self.line, "[{:6.2}s] ", record.finished_ms / 1000.0);
        }
        self.push_cell(0, Cell::Int(record.index));
        let mut label = std::mem::take(&mut self.cell);
        label.clear();
        table_label(&record.input, &mut label);
        self.push(1, &label);
        let mut n = 2;
        match &record.result {
            Ok(value) => {
                let cells = report::value_cells(record.index, value);
                for i in 0..self.shown.len() {
                    self.push_cell(n, cells[self.shown[i]]);
                    n += 1;
                }
            }
            Err(err) => {
                // The value columns say why in a word; the reason closes the row.
                let word = if err.kind == ErrorKind::Cancelled {
                    "cancelled"
                } else {
                    "FAILED"
                };
                for i in 0..self.shown.len().max(1) {
                    self.push(n, if i == 0 { word } else { "-" });
                    n += 1;
                }
            }
        }
        self.push_cell(n, Cell::Int(u64::from(record.attempts)));
        self.push_cell(n + 1, Cell::opt(record.worker));
        self.push_cell(n + 2, Cell::opt(record.pid));
        label.clear();
        let _ = write!(label, "{:.1}", record.elapsed_ms);
        self.push(n + 3, &label);
        if let Err(err) = &record.result {
            label.clear();
            let _ = write!(label, "{}: {}", err.kind, err.message);
            self.push(n + 4, &label);
        }
        self.cell = label;
        self.end_line()
    }

    /// A run of cancelled tasks held back stays held: they come at a stop, in a burst,
    /// and the next record or the summary ends them.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        self.end_cancelled_run()?;
        let mut grid = Grid::new();
        grid.load_preset(UTF8_FULL_CONDENSED);
        grid.set_header(["summary", ""]);
        let failed = if s.stats.failed_by_kind.is_empty() {
            s.stats.failed.to_string()
        } else {
            let kinds: Vec<String> = s
                .stats
                .failed_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            format!("{} ({})", s.stats.failed, kinds.join(", "))
        };
        let rows = [
            ("workload", s.workload.to_string()),
            (
                "backend",
                match &s.broker {
                    Some(url) => {
                        let batches = if s.workers == 1 { "batch" } else { "batches" };
                        format!("redis at {url}, up to {} {batches} queued", s.workers)
                    }
                    None => format!("{} x {}", s.backend.as_str(), plural(s.workers, "worker")),
                },
            ),
            ("tasks", s.stats.tasks.to_string()),
            ("succeeded", s.stats.succeeded.to_string()),
            ("failed", failed),
            ("cancelled", s.stats.cancelled.to_string()),
            ("retries", s.stats.retries.to_string()),
            ("workers replaced", s.stats.workers_replaced.to_string()),
            ("wall time", format!("{:.1} ms", s.wall_ms)),
            ("pool start-up", format!("{:.1} ms", s.pool_start_ms)),
            ("pool shutdown", format!("{:.1} ms", s.pool_shutdown_ms)),
            ("throughput", format!("{} tasks/s", s.tasks_per_sec)),
            (
                "batches",
                format!(
                    "{} (largest {})",
                    s.stats.batches,
                    plural(s.stats.largest_batch, "task")
                ),
            ),
        ];
        for (k, v) in rows {
            grid.add_row([k.to_string(), escape_controls(&v).into_owned()]);
        }
        if !s.stats.workers_retired.is_empty() {
            let total: u64 = s.stats.workers_retired.values().sum();
            let reasons: Vec<String> = s
                .stats
                .workers_retired
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect();
            let retired = format!("{total} ({})", reasons.join(", "));
            grid.add_row(["workers retired".to_string(), retired]);
        }
        if s.stats.duplicates > 0 {
            let dropped = s.stats.duplicates.to_string();
            grid.add_row(["duplicates dropped".to_string(), dropped]);
        }
        if let Some(reason) = &s.stats.stopped {
            let reason = escape_controls(reason).into_owned();
            grid.add_row(["stopped early".to_string(), reason]);
        }
        if s.stats.succeeded_beyond_first > 0 {
            let late = format!("{} (reported cancelled)", s.stats.succeeded_beyond_first);
            grid.add_row(["succeeded after --first".to_string(), late]);
        }
        if let Some(kib) = s.coordinator_peak_rss_kib {
            let mib = format!("{:.1} MiB", kib as f64 / 1024.0);
            grid.add_row(["coordinator peak memory".to_string(), mib]);
        }
        if let Some(n) = s.stats.not_started {
            grid.add_row(["not started, not listed".to_string(), n.to_string()]);
        }
        if !self.quiet && self.header_written {
            writeln!(self.out)?;
        }
        writeln!(self.out, "{grid}")?;
        self.out.flush()
    }
}

/// "1 worker", "2 workers".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The input as a table shows it: as the other formats label it, but an injected fault in
/// words (`fault=kill`, `fault=hang/1` for its first attempt only) rather than as JSON.
fn table_label(input: &Input, out: &mut String) {
    match input {
        Input::Noop {
            payload,
            fault: Some(fault),
        } => {
            let _ = write!(out, "fault={}", fault.kind.as_str());
            if fault.attempts > 0 {
                let _ = write!(out, "/{}", fault.attempts);
            }
            if !payload.is_empty() {
                let _ = write!(out, ",{}B", payload.len());
            }
        }
        _ => report::input_label(input, out),
    }
}

/// Appends the `n`th cell to `line`, right-aligned in its column (by characters, as
/// `{:>width$}` pads), escaped, and a blank. Padded by hand: the formatter writes its fill
/// one character at a time, which was most of a row's cost.
fn push_to(line: &mut String, widths: &[usize], n: usize, text: &str) {
    const BLANKS: &str = "                ";
    let text = escape_controls(text);
    let chars = if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    };
    let mut fill = widths.get(n).copied().unwrap_or(0).saturating_sub(chars);
    while fill > 0 {
        let step = fill.min(BLANKS.len());
        line.push_str(&BLANKS[..step]);
        fill -= step;
    }
    line.push_str(&text);
    line.push(' ');
}

/// A cell as a terminal should receive it: control characters (newlines, ANSI escape
/// sequences, C1 controls) and the invisible characters that reorder text are written as
/// Rust escapes (`\n`, `\u{1b}`), so a file name or an error message can neither break
/// a row nor drive the terminal. Borrowed when there is nothing to escape, as usual.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let needs_escape = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    // Printable ASCII, the usual case, is checked a byte at a time without decoding.
    if text.bytes().all(|b| (b' '..b'\x7f').contains(&b)) || !text.contains(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            // `escape_debug` writes `\n`, `\t`, `\r` and `\u{..}` for the rest.
            let _ = write!(escaped, "{}", c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_plain_text_borrowed() {
        assert!(matches!(
            escape_controls("AAPL.csv ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\u{1b}[31mRED\nx\tz\r\u{7f}\u{9b}"),
            "a\\u{1b}[31mRED\\nx\\tz\\r\\u{7f}\\u{9b}"
        );
        assert_eq!(
            escape_controls("evil\u{202e}txt.csv"),
            "evil\\u{202e}txt.csv"
        );
    }
}
