//! Exports: one file per format behind one [`Exporter`] trait. Each writes every record as
//! it arrives, so nothing waits for the end of the batch, and the summary last.

mod csv;
mod json;
mod table;
#[cfg(test)]
mod tests;

use std::io::{self, Write};

use crate::builtin::Record;
use crate::cli::Format;
use crate::report::Summary;
use workpool::pool::Order;

/// Buffered output, the only buffer between an exporter and its file: exporters write
/// each record into it whole and never flush it themselves (except at `finish`). One
/// policy, the caller's, decides when it goes out: whenever no further outcome is ready,
/// so a burst of a million outcomes costs few writes while a slow run shows each outcome
/// the moment it arrives.
pub type Output = std::io::BufWriter<Box<dyn Write + Send>>;

pub fn output(inner: Box<dyn Write + Send>) -> Output {
    std::io::BufWriter::with_capacity(64 * 1024, inner)
}

pub trait Exporter {
    /// Writes one record into the buffer, in scratch space the exporter reuses: no
    /// allocation per record (but for rare text that needs escaping or reformatting).
    fn record(&mut self, record: &Record) -> io::Result<()>;
    /// Writes the summary and flushes.
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
    /// Pushes buffered records out to the file or terminal.
    fn flush(&mut self) -> io::Result<()>;
}

/// What every exporter may need to know about the run.
pub struct Layout {
    pub workload: &'static str,
    pub order: Order,
    /// Table: print only the summary.
    pub quiet: bool,
    /// Table: rows go to a terminal (cancelled ones are dimmed there).
    pub terminal: bool,
}

pub fn exporter(format: Format, out: Output, layout: Layout) -> Box<dyn Exporter + Send> {
    match format {
        Format::Table => Box::new(table::Table::new(out, layout)),
        Format::Json => Box::new(json::Json::new(out)),
        Format::Jsonl => Box::new(json::JsonLines::new(out)),
        Format::Csv => Box::new(csv::Csv::new(out, layout)),
    }
}
