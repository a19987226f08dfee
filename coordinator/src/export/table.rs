//! `table` export: aligned rows printed the moment each outcome arrives (with the time
//! since the start in completion order, like the notebook's `[0.21s] Got AAPL`), then a
//! summary table.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::Output;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table as Grid};

use super::{Exporter, Layout};
use crate::builtin::Record;
use crate::report::{self, Cell, CellRoom, Summary};
use workpool::pool::Order;

pub struct Table {
    out: Output,
    columns: &'static [&'static str],
    order: Order,
    quiet: bool,
    widths: Vec<usize>,
    header_written: bool,
    /// Reused for every row: a row costs no allocation.
    line: String,
    cell: String,
    room: CellRoom,
}

impl Table {
    pub fn new(out: Output, layout: Layout) -> Self {
        let columns = report::value_columns(layout.workload);
        let mut widths = vec![6, 14];
        widths.extend(columns.iter().map(|c| c.len().max(9)));
        widths.extend([8, 6, 8, 10]);
        Table {
            out,
            columns,
            order: layout.order,
            quiet: layout.quiet,
            widths,
            header_written: false,
            line: String::new(),
            cell: String::new(),
            room: CellRoom::default(),
        }
    }

    /// Appends the `n`th cell of the line, right-aligned in its column, escaped.
    fn push(&mut self, n: usize, text: &str) {
        push_to(&mut self.line, &self.widths, n, text);
    }

    fn push_cell(&mut self, n: usize, cell: Cell<'_>) {
        push_to(&mut self.line, &self.widths, n, cell.render(&mut self.room));
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
        let cells = ["index", "input"]
            .into_iter()
            .chain(self.columns.iter().copied())
            .chain(["attempts", "worker", "pid", "ms"]);
        for (n, cell) in cells.enumerate() {
            self.push(n, cell);
        }
        self.end_line()
    }
}

impl Exporter for Table {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.header()?;
        self.line.clear();
        if self.order == Order::Completion {
            let _ = write!(self.line, "[{:6.2}s] ", record.finished_ms / 1000.0);
        }
        self.push_cell(0, Cell::Int(record.index));
        let mut label = std::mem::take(&mut self.cell);
        label.clear();
        report::input_label(&record.input, &mut label);
        self.push(1, &label);
        let mut n = 2;
        match &record.result {
            Ok(value) => {
                let cells = report::value_cells(record.index, value);
                for &cell in cells.iter().take(self.columns.len()) {
                    self.push_cell(n, cell);
                    n += 1;
                }
            }
            Err(_) => {
                // The value columns say FAILED; the reason closes the row, unaligned.
                for i in 0..self.columns.len().max(1) {
                    self.push(n, if i == 0 { "FAILED" } else { "-" });
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

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
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
                    Some(url) => format!("redis at {url}, up to {} batches queued", s.workers),
                    None => format!("{} x {} workers", s.backend.as_str(), s.workers),
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
            ("throughput", format!("{} tasks/s", s.tasks_per_sec)),
            (
                "batches",
                format!(
                    "{} (largest {} tasks)",
                    s.stats.batches, s.stats.largest_batch
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
