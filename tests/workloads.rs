//! The notebook's workloads end to end: `fetch` determinism and retries, `files`
//! statistics against an independent reference and every kind of bad file, and the demo.

use std::fs;
use std::path::Path;

use serde_json::Value as Json;

use crate::common::{
    assert_contains, assert_exit, coordinator, output, parse_jsonl, run_jsonl, run_output, stdout,
    Run,
};

/// `run fetch` with no simulated latency, so tests wait for nothing.
fn fetch(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["fetch", "--latency-ms", "0"];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn run_fetch(extra: &[&str]) -> Run {
    let args = fetch(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_jsonl(&args)
}

/// A run that is expected to end with some task failed (exit 1), parsed.
fn run_failing(args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--format", "jsonl"]);
    let out = run_output(&all);
    assert_exit(&out, 1);
    parse_jsonl(&stdout(&out))
}

#[test]
fn fetch_gives_identical_quotes_on_every_backend_and_worker_count() {
    let reference = run_fetch(&["--backend", "sequential"]);
    assert_eq!(
        reference.records.len(),
        16,
        "the notebook's sixteen tickers"
    );
    for (backend, workers) in [("thread", "4"), ("process", "2"), ("process", "5")] {
        let run = run_fetch(&["--backend", backend, "-w", workers]);
        assert_eq!(
            run.values(),
            reference.values(),
            "{backend} x {workers} gave other quotes than sequential"
        );
    }
    for value in reference.values() {
        let (price, high, low) = (
            value["price"].as_f64().unwrap(),
            value["high_52w"].as_f64().unwrap(),
            value["low_52w"].as_f64().unwrap(),
        );
        assert!(
            low <= price && price <= high,
            "52-week range broken: {value}"
        );
    }
}

#[test]
fn fetch_with_another_seed_gives_other_data() {
    let a = run_fetch(&["--seed", "1", "--backend", "thread"]);
    let b = run_fetch(&["--seed", "2", "--backend", "thread"]);
    assert_ne!(a.values(), b.values());
}

#[test]
fn invalid_tickers_fail_permanently_and_are_never_retried() {
    let args = fetch(&[
        "--tickers",
        "AAPL,BAD,INVALID,aapl,MSFT",
        "--retries",
        "3",
        "--backoff-ms",
        "0",
        "-w",
        "2",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_failing(&args);
    for record in &run.records {
        let ticker = record["input"].as_str().unwrap();
        assert_eq!(record["attempts"], 1, "{record}");
        if ticker == "AAPL" || ticker == "MSFT" {
            assert_eq!(record["ok"], true, "{record}");
        } else {
            assert_eq!(record["error"]["kind"], "invalid_input", "{record}");
            assert_contains(
                record["error"]["message"].as_str().unwrap(),
                ticker,
                "the error",
            );
        }
    }
    assert_eq!(run.summary["failed_by_kind"]["invalid_input"], 3);
}

#[test]
fn network_failures_are_retried_until_retries_run_out() {
    let args = fetch(&[
        "--tickers",
        "AAPL,MSFT,BAD",
        "--fail-rate",
        "1",
        "--retries",
        "2",
        "--backoff-ms",
        "1",
        "--backend",
        "thread",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_failing(&args);
    for record in &run.records {
        let kind = &record["error"]["kind"];
        if record["input"] == "BAD" {
            assert_eq!(
                (kind.as_str(), record["attempts"].as_u64()),
                (Some("invalid_input"), Some(1))
            );
        } else {
            assert_eq!(
                (kind.as_str(), record["attempts"].as_u64()),
                (Some("network"), Some(3)),
                "{record}"
            );
        }
    }
    assert_eq!(run.summary["failed_by_kind"]["network"], 2);
    assert_eq!(run.summary["retries"], 4);
}

#[test]
fn failures_under_a_fail_rate_are_reproducible_for_a_seed() {
    let failed = |run: &Run| -> Vec<(u64, u64)> {
        run.records
            .iter()
            .map(|r| {
                (
                    r["index"].as_u64().unwrap(),
                    r["attempts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let args = fetch(&[
        "--fail-rate",
        "0.5",
        "--retries",
        "1",
        "--backoff-ms",
        "0",
        "--seed",
        "7",
    ]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = parse_jsonl(&stdout(&run_output(
        &[&args[..], &["--format", "jsonl", "-w", "3"]].concat(),
    )));
    args.extend(["--backend", "thread", "-w", "5"]);
    let second = parse_jsonl(&stdout(&run_output(
        &[&args[..], &["--format", "jsonl"]].concat(),
    )));
    assert_eq!(failed(&first), failed(&second));
    let oks = |run: &Run| {
        run.records
            .iter()
            .map(|r| r["ok"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(oks(&first), oks(&second));
    assert!(
        first.records.iter().any(|r| r["attempts"] == 2),
        "with a 50% fail rate some ticker should have needed a retry"
    );
}

/// Reads a generated price file the plain way and computes the notebook's statistics in
/// two passes, independently of the workload's streaming code.
fn reference_stats(path: &Path) -> [f64; 6] {
    let text = fs::read_to_string(path).expect("the price file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let close_at = header
        .iter()
        .position(|h| *h == "close")
        .expect("a close column");
    let volume_at = header
        .iter()
        .position(|h| *h == "volume")
        .expect("a volume column");
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[close_at].parse().expect("a price"),
                f[volume_at].parse().expect("a volume"),
            )
        })
        .collect();
    let returns: Vec<f64> = rows.windows(2).map(|w| w[1].0 / w[0].0 - 1.0).collect();
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let std = var.sqrt();
    let (start, end) = (rows[0].0, rows[rows.len() - 1].0);
    let avg_volume = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
    [
        start,
        end,
        (end / start - 1.0) * 100.0,
        std * 252f64.sqrt() * 100.0,
        avg_volume,
        mean * 252.0 / (std * 252f64.sqrt()),
    ]
}

#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    assert!(
        ((actual - expected) / scale).abs() <= 1e-9,
        "{what}: {actual} differs from the reference {expected}"
    );
}

fn stats_of(value: &Json) -> [f64; 6] {
    crate::common::FILE_STATS.map(|k| {
        value[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {value}"))
    })
}

fn gen_data(dir: &Path, extra: &[&str]) {
    let out = output(
        coordinator()
            .args(["gen-data", "--dir"])
            .arg(dir)
            .args(extra),
    );
    assert_exit(&out, 0);
}

#[test]
fn file_statistics_match_an_independent_two_pass_reference() {
    let dir = tempfile::tempdir().unwrap();
    gen_data(
        dir.path(),
        &["--files", "3", "--rows", "200", "--seed", "5"],
    );
    let dir_arg = dir.path().to_str().unwrap();
    for backend in ["process", "thread", "sequential"] {
        let run = run_jsonl(&["files", dir_arg, "--backend", backend, "-w", "2"]);
        assert_eq!(run.records.len(), 3);
        for record in &run.records {
            let path = record["input"].as_str().unwrap();
            let expected = reference_stats(Path::new(path));
            let actual = stats_of(&record["value"]);
            for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
                assert_close(*a, e, &format!("{path} statistic {i} on {backend}"));
            }
            assert_eq!(record["value"]["rows"], 200);
        }
    }
}

#[test]
fn generated_files_follow_the_notebook_layout() {
    let dir = tempfile::tempdir().unwrap();
    gen_data(dir.path(), &[]);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    let text = fs::read_to_string(dir.path().join("AAPL.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "date,close,volume");
    assert_eq!(lines.len(), 1 + 1461);
    assert!(lines[1].starts_with("2020-01-01,"));
    assert!(lines[1461].starts_with("2023-12-31,"));
}

#[test]
fn crlf_endings_and_extra_reordered_columns_give_the_same_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [(100.0, 1000), (101.0, 1200), (99.5, 900), (102.25, 1500)];
    let mut plain = String::from("date,close,volume\n");
    let mut crlf = String::from("date,close,volume\r\n");
    let mut shuffled = String::from("volume,note,date,close,open\n");
    for (i, (close, volume)) in rows.iter().enumerate() {
        plain.push_str(&format!("2020-01-0{},{close},{volume}\n", i + 1));
        crlf.push_str(&format!("2020-01-0{},{close},{volume}\r\n", i + 1));
        shuffled.push_str(&format!("{volume},x,2020-01-0{},{close},1\n", i + 1));
    }
    for (name, text) in [
        ("PLAIN.csv", plain),
        ("CRLF.csv", crlf),
        ("SHUF.csv", shuffled),
    ] {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let run = run_jsonl(&[
        "files",
        &p("PLAIN.csv"),
        &p("CRLF.csv"),
        &p("SHUF.csv"),
        "-w",
        "2",
    ]);
    let values = run.values();
    let plain = stats_of(values[0]);
    assert_close(plain[2], 2.25, "total return of the plain file");
    for other in &values[1..] {
        assert_eq!(stats_of(other), plain, "{other}");
    }
}

#[test]
fn each_kind_of_bad_file_gets_its_own_error_while_good_files_succeed() {
    let dir = tempfile::tempdir().unwrap();
    gen_data(dir.path(), &["--tickers", "GOOD", "--rows", "30"]);
    let bad: [(&str, &[u8], &str, &str); 8] = [
        ("EMPTY.csv", b"", "parse", "empty"),
        ("HEADER.csv", b"date,close,volume\n", "parse", "no data"),
        (
            "NOCOL.csv",
            b"date,price,volume\n2020-01-01,1,2\n",
            "parse",
            "close",
        ),
        (
            "TEXT.csv",
            b"date,close,volume\n2020-01-01,1,2\n2020-01-02,abc,2\n2020-01-03,1,2\n",
            "parse",
            "abc",
        ),
        (
            "NAN.csv",
            b"date,close,volume\n2020-01-01,1,2\n2020-01-02,NaN,2\n2020-01-03,1,2\n",
            "parse",
            "line 3",
        ),
        (
            "ZERO.csv",
            b"date,close,volume\n2020-01-01,1,2\n2020-01-02,0,2\n2020-01-03,1,2\n",
            "parse",
            "line 3",
        ),
        (
            "FEW.csv",
            b"date,close,volume\n2020-01-01,1,2\n2020-01-02,2,2\n",
            "parse",
            "2",
        ),
        (
            "UTF.csv",
            b"date,close,volume\n2020-01-01,1,2\n2020-01-02,\xff\xfe,2\n2020-01-03,1,2\n",
            "parse",
            "UTF-8",
        ),
    ];
    let mut args: Vec<String> = vec![
        "files".into(),
        dir.path().join("GOOD.csv").to_string_lossy().into(),
    ];
    for (name, bytes, _, _) in &bad {
        fs::write(dir.path().join(name), bytes).unwrap();
        args.push(dir.path().join(name).to_string_lossy().into());
    }
    // A FIFO nobody writes to: its own `io` error, without blocking the run.
    let fifo = dir.path().join("PIPE.csv");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo");
    args.push(fifo.to_string_lossy().into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_failing(&[&args[..], &["-w", "2"]].concat());
    assert_eq!(
        run.records[0]["ok"], true,
        "the good file: {}",
        run.records[0]
    );
    let mut messages = Vec::new();
    for (record, (name, _, kind, needle)) in run.records[1..].iter().zip(&bad) {
        assert_eq!(record["ok"], false, "{name}: {record}");
        assert_eq!(record["error"]["kind"], *kind, "{name}: {record}");
        let message = record["error"]["message"].as_str().unwrap().to_string();
        assert_contains(&message, name, "the error");
        assert_contains(&message, needle, "the error");
        messages.push(message.replace(name, ""));
    }
    let fifo = run.records.last().unwrap();
    assert_eq!(fifo["error"]["kind"], "io", "{fifo}");
    assert_contains(
        fifo["error"]["message"].as_str().unwrap(),
        "PIPE.csv",
        "the error",
    );
    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        messages.len(),
        "errors should differ: {messages:#?}"
    );
}

#[test]
fn demo_quick_runs_every_section() {
    let out = output(coordinator().args(["demo", "--quick", "--gil"]));
    assert_exit(&out, 0);
    let text = stdout(&out);
    for section in [
        "Section 1",
        "Section 2",
        "Section 3",
        "Section 4",
        "Section 5",
        "Summary",
        "thread+gil",
    ] {
        assert_contains(&text, section, "the demo's output");
    }
    // The checks that do not depend on timing must all pass.
    for check in [
        "Every total equals the closed form: yes",
        "identical quotes on all three backends: yes",
        "invalid tickers tried once only: yes",
        "identical statistics from all three backends: yes",
    ] {
        assert_contains(&text, check, "the demo's output");
    }
}

#[test]
fn forced_progress_goes_to_stderr_and_never_into_the_data() {
    let args = [
        "io", "--count", "4", "--ms", "20", "-w", "2", "--format", "jsonl",
    ];
    let out = run_output(&[&args[..], &["--progress", "always"]].concat());
    assert_exit(&out, 0);
    assert_contains(
        &crate::common::stderr(&out),
        "/4",
        "stderr with a forced bar",
    );
    let run = parse_jsonl(&stdout(&out));
    assert_eq!(run.records.len(), 4, "stdout holds exactly the data");

    let out = run_output(&[&args[..], &["--progress", "never"]].concat());
    assert_exit(&out, 0);
    assert_eq!(
        crate::common::stderr(&out),
        "",
        "no bar with --progress never"
    );
}
