//! `csv` export: one row per outcome, the workload's value fields as their own columns.
//! The summary goes to standard error, since a CSV file has room for one table only.
//!
//! Rows are written by hand, a field at a time into one reused line, with the quoting
//! rule of the csv crate's writer (`QuoteStyle::Necessary`, which wrote these files
//! before): a field is quoted, its quotes doubled, when it holds a comma, a quote or a
//! line break. Numbers never need it; going through the crate's writer field by field
//! cost as much as everything else of a no-op's row.

use std::io::{self, Write};

use super::Output;

use super::{Exporter, Layout};
use crate::builtin::Record;
use crate::report::{self, Cell, CellRoom, Summary};

pub struct Csv {
    out: Output,
    columns: &'static [&'static str],
    header_written: bool,
    /// Reused for every row: a row costs no allocation.
    line: String,
    label: String,
    room: CellRoom,
}

impl Csv {
    pub fn new(out: Output, layout: Layout) -> Self {
        Csv {
            out,
            columns: report::value_columns(layout.workload),
            header_written: false,
            line: String::new(),
            label: String::new(),
            room: CellRoom::default(),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        self.line.clear();
        let names = ["index", "input", "ok"]
            .into_iter()
            .chain(self.columns.iter().copied())
            .chain([
                "error_kind",
                "error_message",
                "attempts",
                "worker",
                "pid",
                "elapsed_ms",
                "finished_ms",
            ]);
        for name in names {
            push_field(&mut self.line, name);
        }
        self.end_row()
    }

    fn cell(&mut self, cell: Cell<'_>) {
        push_field(&mut self.line, cell.render(&mut self.room));
    }

    /// Writes the row built so far: its last separator becomes the line's end.
    fn end_row(&mut self) -> io::Result<()> {
        self.line.pop();
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
}

/// Appends `text` as a field and its separator, quoted where the rule above says so.
fn push_field(line: &mut String, text: &str) {
    if text
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        line.push('"');
        for c in text.chars() {
            if c == '"' {
                line.push('"');
            }
            line.push(c);
        }
        line.push('"');
    } else {
        line.push_str(text);
    }
    line.push(',');
}

impl Exporter for Csv {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.header()?;
        self.line.clear();
        self.cell(Cell::Int(record.index));
        self.label.clear();
        report::input_label(&record.input, &mut self.label);
        push_field(&mut self.line, &self.label);
        self.cell(Cell::Bool(record.result.is_ok()));
        let values = match &record.result {
            Ok(value) => report::value_cells(record.index, value),
            Err(_) => [Cell::Empty; report::MAX_VALUE_COLUMNS],
        };
        for &cell in values.iter().take(self.columns.len()) {
            self.cell(cell);
        }
        let (kind, message) = match &record.result {
            Ok(_) => ("", ""),
            Err(err) => (err.kind.as_str(), err.message.as_str()),
        };
        for cell in [
            Cell::Text(kind),
            Cell::Text(message),
            Cell::Int(u64::from(record.attempts)),
            Cell::opt(record.worker),
            Cell::opt(record.pid),
            Cell::Float(report::round3(record.elapsed_ms)),
            Cell::Float(report::round3(record.finished_ms)),
        ] {
            self.cell(cell);
        }
        self.end_row()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.header()?;
        self.out.flush()?;
        workpool::diag!("summary: {}", summary.json());
        Ok(())
    }
}
