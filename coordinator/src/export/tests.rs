//! Every export against a reference rendering: the schema built as a `serde_json::Value`
//! the plain way, field by field, and printed. The exporters serialize straight from the
//! record instead; their text must not differ in a single byte, for every workload, for
//! failures and cancellations, and for the awkward cases (floats that are not finite,
//! missing fields, file names that are not UTF-8, text that needs quoting or escaping).

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value as Json};
use workpool::workload::{
    self,
    fault::{Fault, FaultKind},
    fetch::Quote,
    files::FileStats,
    FilePath,
};
use workpool::{ErrorKind, TaskError};

use super::{exporter, output, Layout};
use crate::builtin::{Input, Record, Value};
use crate::cli::Format;
use crate::report::{self, Summary};
use workpool::pool::{BackendKind, Order, Stats};

/// The schema of a record, built the plain way.
fn reference_record(record: &Record) -> Json {
    let input = match &record.input {
        Input::Noop { payload, fault } => match fault {
            None => json!({ "payload_bytes": payload.len() }),
            Some(f) => {
                let mut fault = json!({
                    "payload_bytes": payload.len(),
                    "fault": f.kind.as_str(),
                    "fault_attempts": f.attempts,
                });
                if let FaultKind::Leak { bytes } = f.kind {
                    fault["fault_bytes"] = json!(bytes);
                }
                fault
            }
        },
        Input::Io { ms } => json!({ "ms": ms }),
        Input::Cpu { iters } => json!({ "iters": iters }),
        Input::Fetch { ticker } => json!(ticker),
        Input::File { path } => json!(path.to_string_lossy()),
    };
    let mut obj = Map::new();
    obj.insert("index".into(), json!(record.index));
    obj.insert("input".into(), input);
    obj.insert("ok".into(), json!(record.result.is_ok()));
    match &record.result {
        Ok(value) => obj.insert("value".into(), reference_value(record.index, value)),
        Err(err) => obj.insert(
            "error".into(),
            json!({ "kind": err.kind.as_str(), "message": err.message }),
        ),
    };
    obj.insert("attempts".into(), json!(record.attempts));
    obj.insert("worker".into(), json!(record.worker));
    obj.insert("pid".into(), json!(record.pid));
    obj.insert(
        "elapsed_ms".into(),
        json!(report::round3(record.elapsed_ms)),
    );
    obj.insert(
        "finished_ms".into(),
        json!(report::round3(record.finished_ms)),
    );
    Json::Object(obj)
}

fn reference_value(index: u64, value: &Value) -> Json {
    match value {
        Value::Noop { payload } => json!({
            "payload_bytes": payload.len(),
            "payload_intact": *payload == workload::noop_payload(index, payload.len()),
        }),
        Value::Io { slept_ms } => json!({ "slept_ms": slept_ms }),
        Value::Cpu { total } => json!({ "total": total }),
        Value::Quote(quote) => serde_json::to_value(quote).unwrap(),
        Value::FileStats(stats) => serde_json::to_value(stats).unwrap(),
    }
}

/// A short label of the input: a lone field as `key=value`, else the JSON.
fn reference_label(record: &Record) -> String {
    match &reference_record(record)["input"] {
        Json::String(s) => s.clone(),
        Json::Object(map) if map.len() == 1 => {
            map.iter().map(|(k, v)| format!("{k}={v}")).collect()
        }
        other => other.to_string(),
    }
}

/// A JSON scalar as a cell: strings bare, null empty, floats to 6 decimals.
fn reference_cell(value: Option<&Json>) -> String {
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

fn reference_jsonl(records: &[Record], summary: &Summary) -> String {
    let mut text = String::new();
    for record in records {
        text += &format!("{}\n", reference_record(record));
    }
    text + &format!("{}\n", json!({ "summary": summary.json() }))
}

fn reference_json(records: &[Record], summary: &Summary) -> String {
    let mut text = String::new();
    for (i, record) in records.iter().enumerate() {
        let sep = if i == 0 { "{\"outcomes\": [\n" } else { ",\n" };
        text += &format!("{sep}  {}", reference_record(record));
    }
    if records.is_empty() {
        text += "{\"outcomes\": [";
    }
    text + &format!("\n], \"summary\": {}}}\n", summary.json())
}

fn reference_csv(workload: &str, records: &[Record]) -> String {
    let columns = report::value_columns(workload);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["index", "input", "ok"];
    header.extend_from_slice(columns);
    header.extend_from_slice(&[
        "error_kind",
        "error_message",
        "attempts",
        "worker",
        "pid",
        "elapsed_ms",
        "finished_ms",
    ]);
    writer.write_record(&header).unwrap();
    for record in records {
        let json = reference_record(record);
        let mut row = vec![
            record.index.to_string(),
            reference_label(record),
            record.result.is_ok().to_string(),
        ];
        for column in columns {
            row.push(reference_cell(
                json.get("value").and_then(|v| v.get(*column)),
            ));
        }
        let (kind, message) = match &record.result {
            Ok(_) => (String::new(), String::new()),
            Err(err) => (err.kind.as_str().to_string(), err.message.clone()),
        };
        row.extend([
            kind,
            message,
            record.attempts.to_string(),
            reference_cell(json.get("worker")),
            reference_cell(json.get("pid")),
            reference_cell(json.get("elapsed_ms")),
            reference_cell(json.get("finished_ms")),
        ]);
        writer.write_record(&row).unwrap();
    }
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

/// An in-memory destination the exporter writes through its usual buffer.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn export(
    format: Format,
    workload: &'static str,
    order: Order,
    quiet: bool,
    records: &[Record],
    summary: &Summary,
) -> String {
    let sink = Sink::default();
    let layout = Layout {
        workload,
        order,
        quiet,
        terminal: false,
    };
    let mut exporter = exporter(format, output(Box::new(sink.clone())), layout);
    for (i, record) in records.iter().enumerate() {
        exporter.record(record).unwrap();
        // Flushes in the middle change nothing.
        if i % 3 == 1 {
            exporter.flush().unwrap();
        }
    }
    exporter.finish(summary).unwrap();
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn record(index: u64, input: Input, result: Result<Value, TaskError>) -> Record {
    Record {
        index,
        input,
        result,
        attempts: 1,
        worker: Some(1),
        pid: Some(4242),
        // Values whose rounding and printing are easy to get wrong.
        elapsed_ms: [0.0, 0.000_499_9, 0.0015, 1_234.567_891_2, 1e-7, 3.0][index as usize % 6],
        finished_ms: 1000.0 * index as f64 + 0.123_456_7,
        phases: None,
    }
}

fn failed(kind: ErrorKind, message: &str) -> Result<Value, TaskError> {
    Err(TaskError::new(kind, message))
}

/// Messages that need quoting in CSV, escaping in JSON or in a terminal.
const AWKWARD: [&str; 7] = [
    "comma, \"quote\" and\nnewline",
    "carriage\rreturn",
    "\"",
    " # leading blank, hash; semicolon\ttab",
    "ünïcödé ✓ \u{1b}[31mred\u{1b}[0m \u{202e}txt",
    "",
    "trailing blanks   ",
];

fn noop_records() -> Vec<Record> {
    let mut records = Vec::new();
    for (i, len) in [0usize, 1, 7, 8, 9, 1000].into_iter().enumerate() {
        let i = i as u64;
        let payload = workload::noop_payload(i, len);
        let input = Input::Noop {
            payload: payload.clone(),
            fault: None,
        };
        records.push(record(i, input, Ok(Value::Noop { payload })));
    }
    // An echo that came back damaged, and one of another task.
    let mut damaged = workload::noop_payload(6, 33);
    damaged[32] ^= 1;
    let sent = Input::Noop {
        payload: workload::noop_payload(6, 33),
        fault: None,
    };
    records.push(record(6, sent, Ok(Value::Noop { payload: damaged })));
    let sent = Input::Noop {
        payload: workload::noop_payload(7, 16),
        fault: None,
    };
    let other = workload::noop_payload(8, 16);
    records.push(record(7, sent, Ok(Value::Noop { payload: other })));
    // Injected faults, the input then has three fields.
    let struck = |index, kind, attempts| Input::Noop {
        payload: workload::noop_payload(index, 4),
        fault: Some(Fault { kind, attempts }),
    };
    let message = "injected panic (attempt 1)";
    records.push(record(
        8,
        struck(8, FaultKind::Panic, 1),
        failed(ErrorKind::Panicked, message),
    ));
    let mut crashed = record(
        9,
        struck(9, FaultKind::Kill, 0),
        failed(
            ErrorKind::WorkerCrashed,
            "worker 1 (pid 4242) was killed by SIGKILL",
        ),
    );
    crashed.attempts = 3;
    records.push(crashed);
    // A leak's input carries its size too.
    let leaked = struck(9, FaultKind::Leak { bytes: 4 << 20 }, 0);
    records.push(record(
        9,
        leaked,
        Ok(Value::Noop {
            payload: Vec::new(),
        }),
    ));
    // Cancelled by a stop: never ran, so no worker or pid.
    for index in 10..13 {
        let mut cancelled = record(
            index,
            Input::Noop {
                payload: Vec::new(),
                fault: None,
            },
            failed(ErrorKind::Cancelled, "--first 3 reached"),
        );
        cancelled.worker = None;
        cancelled.pid = None;
        records.push(cancelled);
    }
    for (i, message) in AWKWARD.iter().enumerate() {
        let input = Input::Noop {
            payload: Vec::new(),
            fault: None,
        };
        records.push(record(13 + i as u64, input, failed(ErrorKind::Io, message)));
    }
    records
}

fn quote(ticker: &str, price: f64, change: f64) -> Value {
    Value::Quote(Quote {
        ticker: ticker.to_string(),
        price,
        change,
        volume: 1_234_567,
        high_52w: price * 1.1,
        low_52w: 0.1 + 0.2,
        latency_ms: 150,
    })
}

fn fetch_records() -> Vec<Record> {
    let fetch = |ticker: &str| Input::Fetch {
        ticker: ticker.to_string(),
    };
    vec![
        record(0, fetch("AAPL"), Ok(quote("AAPL", 187.42, -1.3))),
        record(1, fetch("BRK.B"), Ok(quote("BRK.B", 1e21, 1e-7))),
        // JSON has no NaN or infinity: both print as null, and as an empty cell.
        record(2, fetch("NAN"), Ok(quote("NAN", f64::NAN, f64::INFINITY))),
        record(3, fetch("ZZ,\"Z"), failed(ErrorKind::Network, "timed out")),
        record(4, fetch("A\u{1b}B"), Ok(quote("A\u{1b}B", 10.0, 0.0))),
    ]
}

fn stats(ticker: &str, sharpe: Option<f64>, volatility: Option<f64>) -> Value {
    Value::FileStats(FileStats {
        ticker: ticker.to_string(),
        rows: 252,
        start_price: 100.0,
        end_price: 123.456_789_123,
        total_return_pct: 23.456_789_123,
        volatility_pct: volatility,
        avg_volume: 1_500_000.5,
        sharpe,
        skipped_rows: 2,
    })
}

fn files_records() -> Vec<Record> {
    use std::os::unix::ffi::OsStrExt;
    let file = |bytes: &[u8]| Input::File {
        path: FilePath::from(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes))),
    };
    vec![
        record(
            0,
            file(b"data/AAPL.csv"),
            Ok(stats("AAPL", Some(1.25), Some(20.0))),
        ),
        // Not UTF-8: written lossily, with U+FFFD.
        record(
            1,
            file(b"data/\xff\xfeBAD.csv"),
            Ok(stats("\u{fffd}\u{fffd}BAD", None, None)),
        ),
        record(
            2,
            file(b"data/flat.csv"),
            Ok(stats("flat", Some(f64::NAN), Some(0.0))),
        ),
        record(
            3,
            file(b"data/new\nline,comma.csv"),
            failed(ErrorKind::Parse, "line 3, column 2: not a number: \"abc\""),
        ),
        record(4, file(b"gone.csv"), failed(ErrorKind::Io, "No such file")),
    ]
}

fn io_records() -> Vec<Record> {
    (0..4)
        .map(|i| {
            record(
                i,
                Input::Io { ms: 300 * i },
                Ok(Value::Io { slept_ms: 300 * i }),
            )
        })
        .chain([record(
            4,
            Input::Io { ms: 5 },
            failed(ErrorKind::Timeout, "ran longer than 1ms"),
        )])
        .collect()
}

fn cpu_records() -> Vec<Record> {
    vec![
        record(0, Input::Cpu { iters: 10 }, Ok(Value::Cpu { total: 285 })),
        record(
            1,
            Input::Cpu { iters: u64::MAX },
            Ok(Value::Cpu { total: u64::MAX }),
        ),
    ]
}

fn summary(workload: &'static str, records: &[Record]) -> Summary {
    let mut stats = Stats {
        tasks: records.len() as u64,
        succeeded: records.iter().filter(|r| r.result.is_ok()).count() as u64,
        ..Stats::default()
    };
    stats.failed = stats.tasks - stats.succeeded;
    stats.failed_by_kind.insert("io", stats.failed);
    stats.stopped = Some("--first 3 reached".to_string());
    let mut summary = Summary::new(
        workload,
        BackendKind::Process,
        2,
        Order::Input,
        stats,
        1_234.567_89,
        4.2,
    );
    summary.broker = (workload == "io").then(|| "redis://:***@host:6379/0".to_string());
    summary.pool_shutdown_ms = 1.5;
    summary
}

fn every_workload() -> Vec<(&'static str, Vec<Record>)> {
    vec![
        ("noop", noop_records()),
        ("fetch", fetch_records()),
        ("files", files_records()),
        ("io", io_records()),
        ("cpu", cpu_records()),
        ("noop", Vec::new()),
    ]
}

#[test]
fn jsonl_and_json_are_the_reference_rendering_byte_for_byte() {
    for (workload, records) in every_workload() {
        let summary = summary(workload, &records);
        let jsonl = export(
            Format::Jsonl,
            workload,
            Order::Input,
            false,
            &records,
            &summary,
        );
        assert_eq!(jsonl, reference_jsonl(&records, &summary), "{workload}");
        let json = export(
            Format::Json,
            workload,
            Order::Input,
            false,
            &records,
            &summary,
        );
        assert_eq!(json, reference_json(&records, &summary), "{workload}");
    }
}

#[test]
fn csv_is_the_reference_rendering_byte_for_byte() {
    for (workload, records) in every_workload() {
        let summary = summary(workload, &records);
        let csv = export(
            Format::Csv,
            workload,
            Order::Input,
            false,
            &records,
            &summary,
        );
        assert_eq!(csv, reference_csv(workload, &records), "{workload}");
    }
}

/// The table's rows (before the summary grid), one string per line.
fn table_rows(workload: &'static str, order: Order, records: &[Record]) -> Vec<String> {
    let summary = summary(workload, records);
    let table = export(Format::Table, workload, order, false, records, &summary);
    let quiet = export(Format::Table, workload, order, true, records, &summary);
    let rows = table
        .strip_suffix(&quiet)
        .expect("the summary closes the table");
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn a_table_row_fits_100_columns_and_says_each_thing_once() {
    let fetched = |index, ticker: &str, price| {
        let input = Input::Fetch {
            ticker: ticker.to_string(),
        };
        record(index, input, Ok(quote(ticker, price, -3.15)))
    };
    let records = vec![fetched(0, "AAPL", 261.08), fetched(1, "GOOGL", 4133.0833)];
    for order in [Order::Input, Order::Completion] {
        let rows = table_rows("fetch", order, &records);
        let header = &rows[0];
        assert!(
            !header.contains("ticker"),
            "the input is the ticker: {header}"
        );
        assert!(!header.contains("latency_ms"), "{header}");
        for row in rows.iter().filter(|r| !r.contains("FAILED")) {
            assert!(row.chars().count() <= 100, "{} columns: {row}", row.len());
        }
    }
    let rows = table_rows("files", Order::Input, &files_records());
    assert!(!rows[0].contains("ticker"), "{}", rows[0]);
    // Floats to 2 decimals, whatever their digits.
    for row in &rows[1..] {
        for cell in row
            .split_whitespace()
            .filter(|c| c.contains('.') && !c.contains('/'))
        {
            if let Some((_, decimals)) = cell.split_once('.') {
                if decimals.chars().all(|c| c.is_ascii_digit()) && cell.parse::<f64>().is_ok() {
                    assert!(decimals.len() <= 2, "{cell} in {row}");
                }
            }
        }
    }
}

#[test]
fn tasks_cancelled_before_they_ran_are_one_line_per_run() {
    let noop = |_| Input::Noop {
        payload: Vec::new(),
        fault: None,
    };
    let ok = |index| {
        record(
            index,
            noop(index),
            Ok(Value::Noop {
                payload: Vec::new(),
            }),
        )
    };
    let cancelled = |index, reason: &str| {
        let mut r = record(index, noop(index), failed(ErrorKind::Cancelled, reason));
        r.worker = None;
        r.pid = None;
        r
    };
    // Cancelled while it ran (killed by the stop): a row of its own, not FAILED.
    let mut killed = record(
        2,
        noop(2),
        failed(ErrorKind::Cancelled, "--first 2 reached"),
    );
    killed.worker = Some(1);
    let mut records = vec![ok(0), ok(1), killed];
    records.extend((3..1000).map(|i| cancelled(i, "--first 2 reached")));
    records.push(cancelled(1000, "interrupted"));
    let rows = table_rows("noop", Order::Input, &records);
    assert_eq!(rows.len(), 1 + 3 + 2, "{rows:#?}");
    assert!(
        rows[3].contains("cancelled") && !rows[3].contains("FAILED"),
        "{}",
        rows[3]
    );
    assert!(
        rows[4].contains("3..999") && rows[4].contains("997 tasks"),
        "{}",
        rows[4]
    );
    assert!(
        rows[5].contains("1000") && rows[5].contains("(1 task"),
        "{}",
        rows[5]
    );
}

#[test]
fn a_fault_reads_as_words_and_counts_are_singular_when_one() {
    let rows = table_rows("noop", Order::Input, &noop_records());
    assert!(
        rows.iter().any(|r| r.contains("fault=panic/1")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().all(|r| !r.contains("fault_attempts")),
        "{rows:#?}"
    );
    let records = vec![record(
        0,
        Input::Cpu { iters: 1 },
        Ok(Value::Cpu { total: 0 }),
    )];
    let mut one = summary("cpu", &records);
    one.workers = 1;
    one.stats.batches = 1;
    one.stats.largest_batch = 1;
    let text = export(Format::Table, "cpu", Order::Input, true, &records, &one);
    assert!(
        text.contains("x 1 worker ") && text.contains("(largest 1 task)"),
        "{text}"
    );
}

#[test]
fn the_cells_of_a_value_are_its_json_fields_in_column_order() {
    for (workload, records) in every_workload() {
        for record in records.iter().filter(|r| r.result.is_ok()) {
            let json = reference_record(record);
            let keys: Vec<&str> = json["value"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, report::value_columns(workload), "{workload}");
        }
    }
}
