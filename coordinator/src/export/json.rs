//! `json` (one document) and `jsonl` (one object per line) exports.

use std::io::{self, Write};

use super::Output;

use super::Exporter;
use crate::builtin::Record;
use crate::report::{write_record_json, Summary};

/// `{"outcomes": [...], "summary": {...}}`, written element by element.
pub struct Json {
    out: Output,
    first: bool,
    line: Line,
}

impl Json {
    pub fn new(out: Output) -> Self {
        Json {
            out,
            first: true,
            line: Line::default(),
        }
    }
}

/// One record's text, reused for every record: the record is composed of many small
/// pieces, which a `Vec` takes in with a few instructions each, and then goes to the
/// buffered output in one copy.
#[derive(Default)]
struct Line(Vec<u8>);

impl Line {
    fn write(
        &mut self,
        out: &mut Output,
        lead: &[u8],
        record: &Record,
        end: &[u8],
    ) -> io::Result<()> {
        self.0.clear();
        self.0.extend_from_slice(lead);
        write_record_json(&mut self.0, record)?;
        self.0.extend_from_slice(end);
        out.write_all(&self.0)
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
        self.line.write(&mut self.out, sep, record, b"")
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
    line: Line,
}

impl JsonLines {
    pub fn new(out: Output) -> Self {
        JsonLines {
            out,
            line: Line::default(),
        }
    }
}

impl Exporter for JsonLines {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.line.write(&mut self.out, b"", record, b"\n")
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
