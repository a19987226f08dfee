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
use crate::report::{self, Summary};
use workpool::pool::Order;

pub struct Table {
    out: Output,
    columns: &'static [&'static str],
    order: Order,
    quiet: bool,
    widths: Vec<usize>,
    header_written: bool,
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
        }
    }

    fn line(&mut self, prefix: &str, cells: &[String]) -> io::Result<()> {
        let mut line = String::from(prefix);
        for (i, cell) in cells.iter().enumerate() {
            let width = self.widths.get(i).copied().unwrap_or(0);
            let cell = escape_controls(cell);
            line.push_str(&format!("{cell:>width$} "));
        }
        writeln!(self.out, "{}", line.trim_end())
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        let mut cells = vec!["index".to_string(), "input".to_string()];
        cells.extend(self.columns.iter().map(|c| c.to_string()));
        cells.extend(["attempts", "worker", "pid", "ms"].map(String::from));
        let prefix = match self.order {
            Order::Completion => "[   time] ",
            Order::Input => "",
        };
        self.line(prefix, &cells)
    }
}

impl Exporter for Table {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.header()?;
        let json = report::record_json(record);
        let mut cells = vec![record.index.to_string(), report::input_label(&record.input)];
        match &record.result {
            Ok(_) => cells.extend(
                self.columns
                    .iter()
                    .map(|c| report::cell(json.get("value").and_then(|v| v.get(*c)))),
            ),
            Err(_) => {
                // The value columns say FAILED; the reason closes the row, unaligned.
                cells.push("FAILED".to_string());
                cells.extend((1..self.columns.len()).map(|_| "-".to_string()));
            }
        }
        cells.extend([
            record.attempts.to_string(),
            report::cell(json.get("worker")),
            report::cell(json.get("pid")),
            format!("{:.1}", record.elapsed_ms),
        ]);
        if let Err(err) = &record.result {
            cells.push(format!("{}: {}", err.kind, err.message));
        }
        let prefix = match self.order {
            Order::Completion => format!("[{:6.2}s] ", record.finished_ms / 1000.0),
            Order::Input => String::new(),
        };
        self.line(&prefix, &cells)?;
        Ok(())
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

/// A cell as a terminal should receive it: control characters (newlines, ANSI escape
/// sequences, C1 controls) and the invisible characters that reorder text are written as
/// Rust escapes (`\n`, `\u{1b}`), so a file name or an error message can neither break
/// a row nor drive the terminal. Borrowed when there is nothing to escape, as usual.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let needs_escape = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(needs_escape) {
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
