//! What a run reports: each record in the schema every export shares, and the run's
//! summary. A record is written straight from the outcome into the exporter's buffer,
//! with no JSON value or map built in between: writing a million no-ops must cost little
//! next to running them.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::builtin::{Input, Record, Value};
use serde::Serialize;
use serde_json::Value as Json;
use workpool::workload;

use workpool::pool::{BackendKind, Order, Stats};

/// Writes one outcome as a JSON object: the `jsonl` line and the element of `json`'s list.
///
/// Keys: `index`, `input` (see [`write_input_json`]), `ok`, then `value` (see
/// [`write_value_json`]) or `error` (`kind`, `message`), `attempts`, `worker`, `pid`,
/// `elapsed_ms`, `finished_ms` (milliseconds to the microsecond).
///
/// Written by hand, keys and punctuation as literals, because a million no-ops spent most
/// of their export in a serializer's per-key escaping and tiny writes; every number and
/// string still goes through serde_json's own formatting, so the text is exactly what
/// serializing the schema prints (the export tests compare the two byte for byte).
pub fn write_record_json<W: Write>(out: &mut W, record: &Record) -> io::Result<()> {
    out.write_all(b"{\"index\":")?;
    int(out, record.index)?;
    out.write_all(b",\"input\":")?;
    write_input_json(out, &record.input)?;
    match &record.result {
        Ok(value) => {
            out.write_all(b",\"ok\":true,\"value\":")?;
            write_value_json(out, record.index, value)?;
        }
        Err(err) => {
            // Kinds are snake_case ASCII: nothing to escape.
            out.write_all(b",\"ok\":false,\"error\":{\"kind\":\"")?;
            out.write_all(err.kind.as_str().as_bytes())?;
            out.write_all(b"\",\"message\":")?;
            json(out, err.message.as_str())?;
            out.write_all(b"}")?;
        }
    }
    out.write_all(b",\"attempts\":")?;
    int(out, record.attempts)?;
    out.write_all(b",\"worker\":")?;
    opt_int(out, record.worker)?;
    out.write_all(b",\"pid\":")?;
    opt_int(out, record.pid)?;
    out.write_all(b",\"elapsed_ms\":")?;
    json(out, &round3(record.elapsed_ms))?;
    out.write_all(b",\"finished_ms\":")?;
    json(out, &round3(record.finished_ms))?;
    out.write_all(b"}")
}

/// The input of a task as it appears in exports: a noop's payload by its size (and its
/// injected fault), `{"ms": ..}`, `{"iters": ..}`, a ticker, or a file's path as a string
/// (lossy: JSON text is UTF-8, see `run files --help`).
pub fn write_input_json<W: Write>(out: &mut W, input: &Input) -> io::Result<()> {
    match input {
        Input::Noop { payload, fault } => {
            out.write_all(b"{\"payload_bytes\":")?;
            int(out, payload.len() as u64)?;
            if let Some(f) = fault {
                // Fault kinds are plain ASCII words: nothing to escape.
                out.write_all(b",\"fault\":\"")?;
                out.write_all(f.kind.as_str().as_bytes())?;
                out.write_all(b"\",\"fault_attempts\":")?;
                int(out, f.attempts)?;
                if let workload::fault::FaultKind::Leak { bytes } = f.kind {
                    out.write_all(b",\"fault_bytes\":")?;
                    int(out, bytes)?;
                }
            }
            out.write_all(b"}")
        }
        Input::Io { ms } => one_entry(out, b"{\"ms\":", *ms),
        Input::Cpu { iters } => one_entry(out, b"{\"iters\":", *iters),
        Input::Fetch { ticker } => json(out, ticker.as_str()),
        Input::File { path } => json(out, &path.to_string_lossy()),
    }
}

/// The value of a successful task as it appears in exports. A `noop` echo is checked
/// against the payload that was sent (`payload_intact`), rather than printed.
pub fn write_value_json<W: Write>(out: &mut W, index: u64, value: &Value) -> io::Result<()> {
    match value {
        Value::Noop { payload } => {
            out.write_all(b"{\"payload_bytes\":")?;
            int(out, payload.len() as u64)?;
            out.write_all(if workload::noop_payload_intact(index, payload) {
                b",\"payload_intact\":true}"
            } else {
                b",\"payload_intact\":false}"
            })
        }
        Value::Io { slept_ms } => one_entry(out, b"{\"slept_ms\":", *slept_ms),
        Value::Cpu { total } => one_entry(out, b"{\"total\":", *total),
        Value::Quote(quote) => json(out, quote),
        Value::FileStats(stats) => json(out, stats),
    }
}

/// `{"key":n}`, the opening given with its key.
fn one_entry<W: Write>(out: &mut W, open: &[u8], n: u64) -> io::Result<()> {
    out.write_all(open)?;
    int(out, n)?;
    out.write_all(b"}")
}

/// An integer, as serde_json writes it (it uses `itoa` too).
fn int<W: Write>(out: &mut W, n: impl itoa::Integer) -> io::Result<()> {
    out.write_all(itoa::Buffer::new().format(n).as_bytes())
}

fn opt_int<W: Write>(out: &mut W, n: Option<u32>) -> io::Result<()> {
    match n {
        Some(n) => int(out, n),
        None => out.write_all(b"null"),
    }
}

/// Anything else, serde_json's way: strings escaped, floats shortest (not finite: null).
fn json<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    Ok(serde_json::to_writer(out, value)?)
}

/// A short label of the input, for tables and CSV: `ms=300`, `AAPL`; appended to `out`.
pub fn input_label(input: &Input, out: &mut String) {
    let _ = match input {
        Input::Noop {
            payload,
            fault: None,
        } => write!(out, "payload_bytes={}", payload.len()),
        Input::Io { ms } => write!(out, "ms={ms}"),
        Input::Cpu { iters } => write!(out, "iters={iters}"),
        Input::Fetch { ticker } => out.write_str(ticker),
        Input::File { path } => out.write_str(&path.to_string_lossy()),
        // Rare (injected faults): the input's JSON, as it has more than one field.
        Input::Noop { fault: Some(_), .. } => {
            let mut text = Vec::new();
            let _ = write_input_json(&mut text, input);
            out.write_str(&String::from_utf8_lossy(&text))
        }
    };
}

/// Milliseconds to the microsecond: more digits would be noise.
pub fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// The closing summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: &'static str,
    pub backend: BackendKind,
    /// The broker of the redis backend, password hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Workers; for the redis backend, how many batches may wait on the broker at once.
    pub workers: usize,
    pub order: Order,
    /// Counts of the run: tasks, succeeded, failed (and by kind), retries, batches.
    #[serde(flatten)]
    pub stats: Stats,
    /// From the start of the pool until it was shut down: start-up, run and shutdown.
    pub wall_ms: f64,
    /// Spawn and handshake until every worker had answered.
    pub pool_start_ms: f64,
    /// Once the run was over, asking every worker to stop until each had exited: what
    /// a pool costs at its end, as `pool_start_ms` at its start. Part of `wall_ms`.
    pub pool_shutdown_ms: f64,
    /// Tasks that ran to an end (succeeded or failed, not cancelled) per second of `wall_ms`.
    pub tasks_per_sec: f64,
    /// The coordinator's peak resident memory (VmHWM), where the OS reports it.
    pub coordinator_peak_rss_kib: Option<u64>,
}

impl Summary {
    pub fn new(
        workload: &'static str,
        backend: BackendKind,
        workers: usize,
        order: Order,
        stats: Stats,
        wall_ms: f64,
        pool_start_ms: f64,
    ) -> Summary {
        Summary {
            workload,
            backend,
            broker: None,
            workers,
            order,
            wall_ms: round3(wall_ms),
            pool_start_ms: round3(pool_start_ms),
            pool_shutdown_ms: 0.0,
            // Tasks that ended by running: cancelled ones did not run.
            tasks_per_sec: if wall_ms > 0.0 {
                ((stats.succeeded + stats.failed) as f64 / (wall_ms / 1000.0)).round()
            } else {
                0.0
            },
            coordinator_peak_rss_kib: crate::machine::peak_rss_kib(),
            stats,
        }
    }

    pub fn json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

/// The fields of each workload's value, in display order: the columns of tables and CSV.
pub fn value_columns(workload: &str) -> &'static [&'static str] {
    match workload {
        "noop" => &["payload_bytes", "payload_intact"],
        "io" => &["slept_ms"],
        "cpu" => &["total"],
        "fetch" => &[
            "ticker",
            "price",
            "change",
            "volume",
            "high_52w",
            "low_52w",
            "latency_ms",
        ],
        "files" => &[
            "ticker",
            "rows",
            "start_price",
            "end_price",
            "total_return_pct",
            "volatility_pct",
            "avg_volume",
            "sharpe",
            "skipped_rows",
        ],
        _ => &[],
    }
}

/// Most value columns a workload has (`files`).
pub const MAX_VALUE_COLUMNS: usize = 9;

/// The value's fields as cells, in the order of [`value_columns`]; the slots beyond the
/// workload's columns are empty.
pub fn value_cells(index: u64, value: &Value) -> [Cell<'_>; MAX_VALUE_COLUMNS] {
    use Cell::{Empty, Float, Int, Text};
    let maybe = |v: Option<f64>| v.map_or(Empty, Float);
    match value {
        Value::Noop { payload } => {
            let intact = workload::noop_payload_intact(index, payload);
            let cells = [Int(payload.len() as u64), Cell::Bool(intact)];
            pad(cells)
        }
        Value::Io { slept_ms } => pad([Int(*slept_ms)]),
        Value::Cpu { total } => pad([Int(*total)]),
        Value::Quote(q) => pad([
            Text(&q.ticker),
            Float(q.price),
            Float(q.change),
            Int(q.volume),
            Float(q.high_52w),
            Float(q.low_52w),
            Int(q.latency_ms),
        ]),
        Value::FileStats(f) => pad([
            Text(&f.ticker),
            Int(f.rows),
            Float(f.start_price),
            Float(f.end_price),
            Float(f.total_return_pct),
            maybe(f.volatility_pct),
            Float(f.avg_volume),
            maybe(f.sharpe),
            Int(f.skipped_rows),
        ]),
    }
}

fn pad<const N: usize>(cells: [Cell<'_>; N]) -> [Cell<'_>; MAX_VALUE_COLUMNS] {
    let mut all = [Cell::Empty; MAX_VALUE_COLUMNS];
    all[..N].copy_from_slice(&cells);
    all
}

/// A scalar of a record as a table or CSV cell, written as its JSON is, except that text
/// is bare, a missing value (JSON `null`) is empty and floats are rounded to 6 decimals.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Empty,
    Text(&'a str),
    Int(u64),
    Float(f64),
    Bool(bool),
}

impl<'a> Cell<'a> {
    /// A number that may be missing (a worker slot, a pid): empty then.
    pub fn opt(value: Option<u32>) -> Cell<'a> {
        value.map_or(Cell::Empty, |v| Cell::Int(u64::from(v)))
    }

    /// The cell's text, formatted in `room` when it is not text already.
    pub fn render<'s>(&'s self, room: &'s mut CellRoom) -> &'s str {
        match *self {
            Cell::Empty => "",
            Cell::Text(text) => text,
            Cell::Bool(b) => {
                if b {
                    "true"
                } else {
                    "false"
                }
            }
            Cell::Int(n) => room.int.format(n),
            // JSON has no NaN or infinity: they are written as null.
            Cell::Float(f) if !f.is_finite() => "",
            Cell::Float(f) => {
                room.text.clear();
                write_6_decimals(&mut room.text, f);
                &room.text
            }
        }
    }
}

/// Writes `f` rounded to 6 decimals as `{}` prints the rounded value: positional, the
/// fewest digits that read back as the same float, `-0` for a negative zero.
///
/// `{}` formats floats with an exact shortest-digits search, a third of the cost of a CSV
/// row of no-ops; below 10^9 it is not needed. Then the microunits `m = round(f * 10^6)`
/// are an exact integer under 10^15, and the rounded value is the float nearest to
/// `m / 10^6`, a decimal of at most 15 significant digits. Any two such decimals map to
/// different floats, so `m / 10^6` with its trailing zeros trimmed is the one shortest
/// representation `{}` finds; it is written from the integer.
fn write_6_decimals(out: &mut String, f: f64) {
    let micro = (f * 1e6).round();
    if micro.abs() >= 1e15 {
        let _ = write!(out, "{}", micro / 1e6);
        return;
    }
    if micro.is_sign_negative() {
        out.push('-');
    }
    // Exact: an integer below 2^53.
    let micro = micro.abs() as u64;
    let mut int = itoa::Buffer::new();
    out.push_str(int.format(micro / 1_000_000));
    let mut fraction = micro % 1_000_000;
    if fraction != 0 {
        // Six digits, zero-padded, without the trailing zeros.
        let mut width = 6;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            width -= 1;
        }
        let mut digits = [b'0'; 6];
        for digit in digits[..width].iter_mut().rev() {
            *digit = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        out.push('.');
        out.extend(digits[..width].iter().map(|&d| char::from(d)));
    }
}

/// Reusable room to format cells in, so that a row costs no allocation.
#[derive(Default)]
pub struct CellRoom {
    text: String,
    int: itoa::Buffer,
}

#[cfg(test)]
mod tests {
    use super::write_6_decimals;

    /// What `{}` prints for the value rounded to 6 decimals: the definition.
    fn by_display(f: f64) -> String {
        format!("{}", (f * 1e6).round() / 1e6)
    }

    #[test]
    fn six_decimals_are_written_as_display_writes_the_rounded_value() {
        let mut values = vec![
            0.0,
            -0.0,
            1e-7,
            -1e-7,
            0.000_000_5,
            0.000_001,
            0.1 + 0.2,
            187.42,
            -1.3,
            123.456_789_123,
            1_500_000.5,
            999_999_999.999_999,
            1e9,
            -1e9,
            1e21,
            2e-300,
            f64::MAX,
            0.5,
            2.5,
            1_234.567_891_2,
            0.001,
            0.000_499_9,
        ];
        // Pseudo-random values over many magnitudes, both signs.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mantissa = (state >> 11) as f64 / (1u64 << 53) as f64;
            let exponent = (state % 25) as i32 - 12;
            let sign = if state & 1 == 0 { 1.0 } else { -1.0 };
            values.push(sign * mantissa * 10f64.powi(exponent));
            // Exactly on a microunit, and on a millisecond, as the exports' times are.
            values.push(((state % 10_000_000_000) as f64) / 1e6);
            values.push(((state % 10_000_000_000) as f64) / 1e3);
        }
        let mut out = String::new();
        for f in values {
            out.clear();
            write_6_decimals(&mut out, f);
            assert_eq!(out, by_display(f), "{f:e}");
        }
    }
}
