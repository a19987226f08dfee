//! `csv` export: one row per outcome, the workload's value fields as their own columns.
//! The summary goes to standard error, since a CSV file has room for one table only.

use std::io;

use super::Output;

use super::{Exporter, Layout};
use crate::builtin::Record;
use crate::report::{self, Summary};

pub struct Csv {
    writer: csv::Writer<Output>,
    columns: &'static [&'static str],
    header_written: bool,
}

impl Csv {
    pub fn new(out: Output, layout: Layout) -> Self {
        Csv {
            writer: csv::Writer::from_writer(out),
            columns: report::value_columns(layout.workload),
            header_written: false,
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
        let json = report::record_json(record);
        let mut row = vec![
            record.index.to_string(),
            report::input_label(&record.input),
            record.result.is_ok().to_string(),
        ];
        for column in self.columns {
            row.push(report::cell(json.get("value").and_then(|v| v.get(*column))));
        }
        let (kind, message) = match &record.result {
            Ok(_) => (String::new(), String::new()),
            Err(err) => (err.kind.as_str().to_string(), err.message.clone()),
        };
        row.extend([
            kind,
            message,
            record.attempts.to_string(),
            report::cell(json.get("worker")),
            report::cell(json.get("pid")),
            report::cell(json.get("elapsed_ms")),
            report::cell(json.get("finished_ms")),
        ]);
        self.writer.write_record(&row).map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.header()?;
        self.writer.flush()?;
        workpool::diag!("summary: {}", summary.json());
        Ok(())
    }
}
