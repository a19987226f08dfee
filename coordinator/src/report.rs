//! What a run reports: each record in the schema every export shares, and the run's
//! summary. A record is serialized straight from the outcome into the exporter's buffer,
//! with no JSON value or map built in between: writing a million no-ops must cost little
//! next to running them.

use std::fmt::Write as _;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value as Json;
use shared::{workload, Input, Value};

use crate::pool::{BackendKind, Order, Record, Stats};

/// One outcome as a JSON object: the `jsonl` line and the element of `json`'s list,
/// borrowed from the record.
#[derive(Serialize)]
pub struct RecordJson<'a> {
    /// Position in the input.
    index: u64,
    /// What the task was given (see [`InputJson`]).
    input: InputJson<'a>,
    /// Whether the task succeeded: then `value` is present, else `error`.
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<ValueJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
    /// Attempts made, the last one included.
    attempts: u32,
    /// The slot of the worker that produced the final outcome.
    worker: Option<u32>,
    /// The OS process that ran the final attempt.
    pid: Option<u32>,
    /// Run time of the final attempt, in milliseconds to the microsecond.
    elapsed_ms: f64,
    /// When the outcome reached the coordinator, since the run started.
    finished_ms: f64,
}

impl<'a> RecordJson<'a> {
    pub fn new(record: &'a Record) -> Self {
        let (value, error) = match &record.result {
            Ok(value) => (
                Some(ValueJson {
                    index: record.index,
                    value,
                }),
                None,
            ),
            Err(err) => (
                None,
                Some(ErrorJson {
                    kind: err.kind.as_str(),
                    message: &err.message,
                }),
            ),
        };
        RecordJson {
            index: record.index,
            input: InputJson(&record.input),
            ok: record.result.is_ok(),
            value,
            error,
            attempts: record.attempts,
            worker: record.worker,
            pid: record.pid,
            elapsed_ms: round3(record.elapsed_ms),
            finished_ms: round3(record.finished_ms),
        }
    }
}

/// Why a task has no value.
#[derive(Serialize)]
struct ErrorJson<'a> {
    /// The snake_case name of the error kind.
    kind: &'static str,
    message: &'a str,
}

/// The input of a task as it appears in exports: a noop's payload by its size, a ticker
/// or a file's path as a string (lossy: JSON text is UTF-8, see `run files --help`).
pub struct InputJson<'a>(pub &'a Input);

impl Serialize for InputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Input::Noop { payload, fault } => {
                let mut map = s.serialize_map(Some(if fault.is_some() { 3 } else { 1 }))?;
                map.serialize_entry("payload_bytes", &payload.len())?;
                if let Some(f) = fault {
                    map.serialize_entry("fault", f.kind.as_str())?;
                    map.serialize_entry("fault_attempts", &f.attempts)?;
                }
                map.end()
            }
            Input::Io { ms } => one_entry(s, "ms", ms),
            Input::Cpu { iters } => one_entry(s, "iters", iters),
            Input::Fetch { ticker } => s.serialize_str(ticker),
            Input::File { path } => s.serialize_str(&path.to_string_lossy()),
        }
    }
}

/// The value of a successful task as it appears in exports. A `noop` echo is checked
/// against the payload that was sent, rather than printed.
pub struct ValueJson<'a> {
    /// The task's index: what a `noop` echo is checked against.
    pub index: u64,
    pub value: &'a Value,
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Noop { payload } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("payload_bytes", &payload.len())?;
                let intact = workload::noop_payload_intact(self.index, payload);
                map.serialize_entry("payload_intact", &intact)?;
                map.end()
            }
            Value::Io { slept_ms } => one_entry(s, "slept_ms", slept_ms),
            Value::Cpu { total } => one_entry(s, "total", total),
            Value::Quote(quote) => quote.serialize(s),
            Value::FileStats(stats) => stats.serialize(s),
        }
    }
}

fn one_entry<S: Serializer>(s: S, key: &str, value: &u64) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
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
            out.write_str(&serde_json::to_string(&InputJson(input)).unwrap_or_default())
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
    /// From the start of the pool to the last outcome.
    pub wall_ms: f64,
    /// Spawn and handshake until every worker had answered.
    pub pool_start_ms: f64,
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
                let _ = write!(room.text, "{}", (f * 1e6).round() / 1e6);
                &room.text
            }
        }
    }
}

/// Reusable room to format cells in, so that a row costs no allocation.
#[derive(Default)]
pub struct CellRoom {
    text: String,
    int: itoa::Buffer,
}
