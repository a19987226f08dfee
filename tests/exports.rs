//! The export formats and their schema: `jsonl` records with exactly the documented
//! fields, `json` as one document, `csv` with a header, and `-o FILE`.

use serde_json::Value as Json;

use crate::common::{assert_exit, parse_jsonl, run_jsonl, run_output, stdout};

/// The fields of a successful `jsonl` record, in order (the README's output schema).
const RECORD_FIELDS: [&str; 9] = [
    "index",
    "input",
    "ok",
    "value",
    "attempts",
    "worker",
    "pid",
    "elapsed_ms",
    "finished_ms",
];

/// Summary fields every run reports, whatever else it adds.
const SUMMARY_FIELDS: [&str; 8] = [
    "backend",
    "workers",
    "tasks",
    "succeeded",
    "failed",
    "wall_ms",
    "pool_start_ms",
    "pool_shutdown_ms",
];

fn keys(object: &Json) -> Vec<&str> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[track_caller]
fn assert_summary_fields(summary: &Json) {
    for field in SUMMARY_FIELDS {
        assert!(
            summary.get(field).is_some(),
            "summary lacks {field}: {summary}"
        );
    }
}

#[test]
fn jsonl_records_have_exactly_the_documented_fields() {
    for backend in ["process", "thread", "sequential"] {
        let run = run_jsonl(&[
            "cpu",
            "--count",
            "3",
            "--iters",
            "1000",
            "-w",
            "2",
            "--backend",
            backend,
        ]);
        assert_eq!(run.records.len(), 3);
        for record in &run.records {
            assert_eq!(keys(record), RECORD_FIELDS, "{backend}: {record}");
            assert_eq!(record["input"], serde_json::json!({ "iters": 1000 }));
            assert_eq!(record["attempts"], 1, "{record}");
            for ms in ["elapsed_ms", "finished_ms"] {
                assert!(record[ms].as_f64().is_some_and(|v| v >= 0.0), "{record}");
            }
        }
        assert_summary_fields(&run.summary);
        assert_eq!(run.summary["backend"], backend);
        assert_eq!(run.summary_u64("tasks"), 3);
        assert_eq!(run.summary_u64("succeeded"), 3);
        assert_eq!(run.summary_u64("failed"), 0);
    }
}

#[test]
fn the_summary_times_the_pools_start_and_shutdown_within_its_wall_time() {
    for backend in ["process", "thread", "sequential"] {
        let run = run_jsonl(&[
            "io",
            "--count",
            "2",
            "--ms",
            "20",
            "-w",
            "2",
            "--backend",
            backend,
        ]);
        let ms = |field: &str| {
            run.summary[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{backend}: no {field}: {}", run.summary))
        };
        let (wall, start, shutdown) = (ms("wall_ms"), ms("pool_start_ms"), ms("pool_shutdown_ms"));
        assert!(
            start >= 0.0 && shutdown >= 0.0,
            "{backend}: {}",
            run.summary
        );
        // Two sleeps of 20 ms run between the start-up and the shutdown.
        assert!(
            start + 20.0 + shutdown <= wall,
            "{backend}: start-up and shutdown are parts of the wall time: {}",
            run.summary
        );
        if backend == "process" {
            // Waiting for two processes to exit takes time that a clock can see.
            assert!(shutdown > 0.0, "{}", run.summary);
        }
    }
}

#[test]
fn json_is_one_document() {
    let out = run_output(&[
        "cpu", "--count", "3", "--iters", "1000", "-w", "2", "--format", "json",
    ]);
    assert_exit(&out, 0);
    let doc: Json =
        serde_json::from_str(&stdout(&out)).expect("--format json is not one JSON document");
    let outcomes = doc["outcomes"].as_array().expect("no outcomes array");
    assert_eq!(outcomes.len(), 3);
    for (i, record) in outcomes.iter().enumerate() {
        assert_eq!(keys(record), RECORD_FIELDS, "{record}");
        assert_eq!(record["index"], i, "{record}");
    }
    assert_summary_fields(&doc["summary"]);
    assert_eq!(doc["summary"]["tasks"], 3);
}

#[test]
fn csv_has_a_header_and_one_row_per_task() {
    let out = run_output(&[
        "cpu", "--count", "3", "--iters", "10", "-w", "2", "--format", "csv",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("no CSV header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header[..3], ["index", "input", "ok"], "header: {header:?}");
    for column in [
        "total",
        "attempts",
        "worker",
        "pid",
        "elapsed_ms",
        "finished_ms",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "no {column} column: {header:?}"
        );
    }
    let total = header.iter().position(|h| h == "total").unwrap();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("malformed CSV row");
    assert_eq!(rows.len(), 3, "rows:\n{text}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), header.len(), "row {i}: {row:?}");
        assert_eq!(&row[0], i.to_string(), "row {i}: {row:?}");
        assert_eq!(&row[2], "true", "row {i}: {row:?}");
        assert_eq!(&row[total], "285", "row {i}: {row:?}");
    }
}

#[test]
fn output_file_receives_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let out = run_output(&[
        "cpu",
        "--count",
        "3",
        "--iters",
        "10",
        "-w",
        "2",
        "--format",
        "jsonl",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    let printed = stdout(&out);
    assert!(
        !printed.contains("\"index\""),
        "records went to stdout as well:\n{printed}"
    );
    let written = std::fs::read_to_string(&path).expect("output file not written");
    let run = parse_jsonl(&written);
    assert_eq!(run.indices(), [0, 1, 2]);
    assert_eq!(run.summary_u64("tasks"), 3);
}
