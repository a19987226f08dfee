//! `csv` export: one row per outcome, the workload's value fields as their own columns.
//! The summary goes to standard error, since a CSV file has room for one table only.

use std::io;

use super::Output;

use super::{Exporter, Layout};
use crate::pool::Record;
use crate::report::{self, Cell, CellRoom, Summary};

pub struct Csv {
    writer: csv::Writer<Output>,
    columns: &'static [&'static str],
    header_written: bool,
    /// Reused for every row: a row costs no allocation.
    label: String,
    room: CellRoom,
}

impl Csv {
    pub fn new(out: Output, layout: Layout) -> Self {
        Csv {
            writer: csv::Writer::from_writer(out),
            columns: report::value_columns(layout.workload),
            header_written: false,
            label: String::new(),
            room: CellRoom::default(),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        let mut header = vec!["index", "input", "ok"];
        header.extend_from_slice(self.columns);
        header.extend_from_slice(&[
            "error_kind",
            "error_message",
            "attempts",
            "worker",
            "pid",
            "elapsed_ms",
            "finished_ms",
        ]);
        self.writer.write_record(&header).map_err(io_error)
    }

    fn cell(&mut self, cell: Cell<'_>) -> io::Result<()> {
        let text = cell.render(&mut self.room);
        self.writer.write_field(text).map_err(io_error)
    }
}

/// The csv crate's error as an I/O error of the same kind, so that a closed pipe is still
/// seen as one (its own conversion makes every error `Other`).
fn io_error(err: csv::Error) -> io::Error {
    let kind = match err.kind() {
        csv::ErrorKind::Io(io) => io.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

impl Exporter for Csv {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.header()?;
        self.cell(Cell::Int(record.index))?;
        self.label.clear();
        report::input_label(&record.input, &mut self.label);
        self.writer.write_field(&self.label).map_err(io_error)?;
        self.cell(Cell::Bool(record.result.is_ok()))?;
        let values = match &record.result {
            Ok(value) => report::value_cells(record.index, value),
            Err(_) => [Cell::Empty; report::MAX_VALUE_COLUMNS],
        };
        for &cell in values.iter().take(self.columns.len()) {
            self.cell(cell)?;
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
            self.cell(cell)?;
        }
        self.writer.write_record(None::<&[u8]>).map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.header()?;
        self.writer.flush()?;
        shared::diag!("summary: {}", summary.json());
        Ok(())
    }
}
