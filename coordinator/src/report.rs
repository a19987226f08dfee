//! What a run reports: each record as JSON (the schema every export shares) and the
//! run's summary.

use crate::builtin::{Input, Record, Value};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use workpool::workload;

use workpool::pool::{BackendKind, Order, Stats};

/// The input of a task as it appears in exports.
pub fn input_json(input: &Input) -> Json {
    match input {
        Input::Noop { payload, fault } => match fault {
            None => json!({ "payload_bytes": payload.len() }),
            Some(f) => {
                let mut fault = json!({
                    "payload_bytes": payload.len(),
                    "fault": f.kind.as_str(),
                    "fault_attempts": f.attempts,
                });
                if let workload::fault::FaultKind::Leak { bytes } = f.kind {
                    fault["fault_bytes"] = json!(bytes);
                }
                fault
            }
        },
        Input::Io { ms } => json!({ "ms": ms }),
        Input::Cpu { iters } => json!({ "iters": iters }),
        Input::Fetch { ticker } => json!(ticker),
        // Lossy: JSON text is UTF-8 (see `run files --help`).
        Input::File { path } => json!(path.to_string_lossy()),
    }
}

/// A short label of the input, for tables.
pub fn input_label(input: &Input) -> String {
    match input_json(input) {
        Json::String(s) => s,
        Json::Object(map) if map.len() == 1 => map
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<String>(),
        other => other.to_string(),
    }
}

/// The value of a successful task as it appears in exports. A `noop` echo is checked
/// against the payload that was sent, rather than printed.
pub fn value_json(index: u64, value: &Value) -> Json {
    match value {
        Value::Noop { payload } => json!({
            "payload_bytes": payload.len(),
            "payload_intact": *payload == workload::noop_payload(index, payload.len()),
        }),
        Value::Io { slept_ms } => json!({ "slept_ms": slept_ms }),
        Value::Cpu { total } => json!({ "total": total }),
        Value::Quote(quote) => serde_json::to_value(quote).unwrap_or(Json::Null),
        Value::FileStats(stats) => serde_json::to_value(stats).unwrap_or(Json::Null),
    }
}

/// One outcome as a JSON object: the `jsonl` line and the element of `json`'s list.
pub fn record_json(record: &Record) -> Json {
    let mut obj = Map::new();
    obj.insert("index".into(), json!(record.index));
    obj.insert("input".into(), input_json(&record.input));
    obj.insert("ok".into(), json!(record.result.is_ok()));
    match &record.result {
        Ok(value) => obj.insert("value".into(), value_json(record.index, value)),
        Err(err) => obj.insert(
            "error".into(),
            json!({ "kind": err.kind.as_str(), "message": err.message }),
        ),
    };
    obj.insert("attempts".into(), json!(record.attempts));
    obj.insert("worker".into(), json!(record.worker));
    obj.insert("pid".into(), json!(record.pid));
    obj.insert("elapsed_ms".into(), json!(round3(record.elapsed_ms)));
    obj.insert("finished_ms".into(), json!(round3(record.finished_ms)));
    Json::Object(obj)
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

/// A JSON scalar as a table or CSV cell: strings bare, null empty.
pub fn cell(value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1e6).round() / 1e6),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}
