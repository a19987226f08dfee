//! `json` (one document) and `jsonl` (one object per line) exports.

use std::io::{self, Write};

use super::Output;

use super::Exporter;
use crate::builtin::Record;
use crate::report::{record_json, Summary};

/// `{"outcomes": [...], "summary": {...}}`, written element by element.
pub struct Json {
    out: Output,
    first: bool,
}

impl Json {
    pub fn new(out: Output) -> Self {
        Json { out, first: true }
    }
}

impl Exporter for Json {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        let sep = if self.first {
            "{\"outcomes\": [\n"
        } else {
            ",\n"
        };
        self.first = false;
        write!(self.out, "{sep}  {}", record_json(record))?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        if self.first {
            write!(self.out, "{{\"outcomes\": [")?;
        }
        writeln!(self.out, "\n], \"summary\": {}}}", summary.json())?;
        self.out.flush()
    }
}

/// One outcome object per line, then `{"summary": {...}}`.
pub struct JsonLines {
    out: Output,
}

impl JsonLines {
    pub fn new(out: Output) -> Self {
        JsonLines { out }
    }
}

impl Exporter for JsonLines {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        writeln!(self.out, "{}", record_json(record))?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        writeln!(
            self.out,
            "{}",
            serde_json::json!({ "summary": summary.json() })
        )?;
        self.out.flush()
    }
}
