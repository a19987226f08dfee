//! `json` (one document) and `jsonl` (one object per line) exports.

use std::io::{self, Write};

use super::Output;

use super::Exporter;
use crate::pool::Record;
use crate::report::{RecordJson, Summary};

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
        let sep: &[u8] = if self.first {
            b"{\"outcomes\": [\n  "
        } else {
            b",\n  "
        };
        self.first = false;
        self.out.write_all(sep)?;
        serde_json::to_writer(&mut self.out, &RecordJson::new(record))?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        if self.first {
            self.out.write_all(b"{\"outcomes\": [")?;
        }
        self.out.write_all(b"\n], \"summary\": ")?;
        serde_json::to_writer(&mut self.out, summary)?;
        self.out.write_all(b"}\n")?;
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
        serde_json::to_writer(&mut self.out, &RecordJson::new(record))?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.out.write_all(b"{\"summary\":")?;
        serde_json::to_writer(&mut self.out, summary)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}
