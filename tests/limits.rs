//! Numbers a user can type: every numeric flag of every subcommand, one past its maximum
//! and far beyond, is a usage error naming the flag, never a panic, an abort or a hang.

use crate::common::{assert_usage_error, coordinator, output, stderr};

/// The words before each flag, the flag, and one past its maximum.
const PAST_THE_MAXIMUM: &[(&[&str], &str, &str)] = &[
    (&["run", "noop"], "--count", "1000000000001"),
    (&["run", "noop"], "--payload", "16777217"),
    (&["run", "noop"], "--fault", "panic@0/1001"),
    (&["run", "io"], "--ms", "86400001"),
    (&["run", "cpu"], "--iters", "1000000000001"),
    (&["run", "fetch"], "--latency-ms", "86400001"),
    (&["run", "fetch"], "--slow-ms", "86400001"),
    (&["run", "files", "x.csv"], "--io-delay-ms", "86400001"),
    (&["run", "noop"], "--chunk", "65537"),
    (&["run", "noop"], "--inflight", "1025"),
    (&["run", "noop"], "--retries", "1001"),
    (&["run", "noop"], "--timeout", "25h"),
    (&["run", "noop"], "--first", "1000000000001"),
    (&["run", "noop"], "--backoff-ms", "30001"),
    (&["gen-data", "--dir", "DIR"], "--files", "1000001"),
    (&["gen-data", "--dir", "DIR"], "--rows", "3652060"),
    (&["gen-data", "--dir", "DIR"], "--start", "10000-01-01"),
    (&["gen-data", "--dir", "DIR"], "--end", "+10000-01-01"),
    (&["bench"], "--runs", "1001"),
    (&["bench"], "--warmup", "101"),
    (&["bench"], "--workers", "1025"),
];

/// Far past any maximum: values that overflowed a deadline, sized a huge allocation or
/// made a retry wait for ever before they were bounded.
const HUGE: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
];

#[track_caller]
fn assert_refused(words: &[&str], flag: &str, value: &str, dir: &str) {
    let words: Vec<&str> = words
        .iter()
        .map(|w| if *w == "DIR" { dir } else { w })
        .collect();
    let arg = format!("{flag}={value}");
    let out = output(coordinator().args(&words).arg(&arg));
    assert_usage_error(&out, &[flag]);
    assert!(
        !stderr(&out).contains("panicked"),
        "{arg}: {}",
        stderr(&out)
    );
}

#[test]
fn every_numeric_flag_refuses_one_past_its_maximum_and_huge_values() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("data");
    let dir = dir.to_string_lossy();
    for &(words, flag, past) in PAST_THE_MAXIMUM {
        assert_refused(words, flag, past, &dir);
        if flag.ends_with("--fault") || flag == "--start" || flag == "--end" {
            continue;
        }
        let huge: Vec<String> = match flag {
            "--timeout" => HUGE
                .iter()
                .map(|n| format!("{n}s"))
                .chain(["300000000000y".into()])
                .collect(),
            _ => HUGE.iter().map(|n| n.to_string()).collect(),
        };
        for value in &huge {
            assert_refused(words, flag, value, &dir);
        }
    }
    assert!(
        !std::path::Path::new(&*dir).exists(),
        "gen-data wrote despite the error"
    );
}

#[test]
fn a_chunk_larger_than_the_batch_is_refused_before_anything_is_allocated() {
    // 1e9 tasks per message was a 48 GB allocation for five tasks.
    let out = output(coordinator().args(["run", "noop", "--count", "5", "--chunk", "1000000000"]));
    assert_usage_error(&out, &["--chunk", "65536"]);
}

#[test]
fn gen_data_dates_stay_within_four_digit_years() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let path = path.to_string_lossy();
    // The last day of year 9999 is 31 rows after 9999-12-01.
    let rows = |rows: &str| {
        output(coordinator().args([
            "gen-data",
            "--dir",
            &path,
            "--files",
            "1",
            "--start",
            "9999-12-01",
            "--rows",
            rows,
        ]))
    };
    assert_usage_error(&rows("32"), &["--rows", "9999-12-31", "31"]);
    let out = rows("31");
    crate::common::assert_exit(&out, 0);
    let text = std::fs::read_to_string(dir.path().join("data/AAPL.csv")).unwrap();
    assert!(
        text.lines().last().unwrap().starts_with("9999-12-31,"),
        "{text}"
    );
}

#[test]
fn fetch_count_takes_the_first_tickers_and_goes_round_the_list() {
    let tickers = |count: &str| -> Vec<String> {
        let run = crate::common::run_jsonl(&[
            "fetch",
            "--tickers",
            "A,B,C",
            "--latency-ms",
            "0",
            "--backend",
            "thread",
            "--count",
            count,
        ]);
        run.records
            .iter()
            .map(|r| r["input"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(tickers("2"), ["A", "B"]);
    assert_eq!(tickers("7"), ["A", "B", "C", "A", "B", "C", "A"]);
}
