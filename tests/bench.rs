//! `coordinator bench` in a tiny configuration: every suite runs, and every export is
//! well formed with every field present. Nothing here looks at the speed measured.

use std::path::Path;

use serde_json::Value as Json;

use crate::common::{assert_contains, assert_exit, coordinator, output, stderr};
use workpool_cli::bench::units;

const SUITES: [&str; 10] = [
    "floor",
    "breakdown",
    "startup",
    "latency",
    "throughput",
    "payload",
    "memory",
    "scaling",
    "break-even",
    "recycle",
];

fn bench(dir: &Path, extra: &[&str]) -> (Json, String, String) {
    let json = dir.join("bench.json");
    let csv = dir.join("bench.csv");
    let md = dir.join("bench.md");
    let out = output(
        coordinator()
            .args([
                "bench",
                "--quick",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--workers",
                "1,2",
            ])
            .args(extra)
            .arg("--export-json")
            .arg(&json)
            .arg("--export-csv")
            .arg(&csv)
            .arg("--export-markdown")
            .arg(&md),
    );
    assert_exit(&out, 0);
    assert!(
        !stderr(&out).contains("warning: suite"),
        "a suite failed:\n{}",
        stderr(&out)
    );
    let report: Json = serde_json::from_str(&std::fs::read_to_string(json).unwrap())
        .expect("the JSON export parses");
    (
        report,
        std::fs::read_to_string(csv).unwrap(),
        std::fs::read_to_string(md).unwrap(),
    )
}

#[test]
fn every_suite_exports_well_formed_results() {
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("plots");
    let (report, csv, md) = bench(dir.path(), &["--plot", plots.to_str().unwrap()]);
    for chart in ["speedup.svg", "breakdown.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(plots.join(chart)).expect("chart written");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}"
        );
    }
    for key in ["logical_cores", "cpu", "memory_total_mib", "os", "kernel"] {
        assert!(
            report["machine"].get(key).is_some(),
            "machine.{key} missing"
        );
    }
    let measurements = report["measurements"].as_array().unwrap();
    for suite in SUITES {
        assert!(
            measurements.iter().any(|m| m["suite"] == suite),
            "no measurement from suite {suite}"
        );
    }
    for m in measurements {
        for key in [
            "suite", "case", "runtime", "workers", "param", "unit", "stats", "ratios", "warnings",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        for key in ["n", "mean", "median", "min", "max", "p95", "p99"] {
            assert!(m["stats"][key].is_number(), "stats.{key} missing in {m}");
        }
        let n = m["stats"]["n"].as_u64().unwrap();
        // One value has no spread: stddev is null exactly then.
        assert_eq!(m["stats"]["stddev"].is_null(), n < 2, "{m}");
        let s = &m["stats"];
        assert!(
            s["min"].as_f64() <= s["median"].as_f64() && s["median"].as_f64() <= s["max"].as_f64(),
            "{m}"
        );
    }
    // Comparisons in the same run: against the floor and against the other backend.
    let latency = measurements
        .iter()
        .find(|m| m["case"] == "noop round trip" && m["runtime"] == "process")
        .expect("process latency");
    assert!(latency["ratios"]["x floor"].is_number(), "{latency}");
    assert!(latency["ratios"]["process/thread"].is_number(), "{latency}");
    // Both histograms share one axis, cut at the larger p99.
    let buckets = |rt: &str| {
        report["histograms"][rt]["buckets"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (process, thread) = (buckets("process"), buckets("thread"));
    assert!(!process.is_empty());
    assert_eq!(
        process.first().map(|b| &b[0]),
        thread.first().map(|b| &b[0])
    );
    assert_eq!(process.last().map(|b| &b[1]), thread.last().map(|b| &b[1]));
    for rt in ["process", "thread"] {
        let h = &report["histograms"][rt];
        let drawn: u64 = buckets(rt).iter().map(|b| b[2].as_u64().unwrap()).sum();
        let samples = measurements
            .iter()
            .find(|m| m["case"] == "noop round trip" && m["runtime"] == rt)
            .unwrap()["stats"]["n"]
            .as_u64()
            .unwrap();
        assert_eq!(drawn + h["clipped"].as_u64().unwrap(), samples, "{rt}: {h}");
    }

    // The breakdown's phases add up to the round trip timed around the whole call.
    for runtime in ["process", "thread"] {
        let find = |case: &str| {
            measurements
                .iter()
                .find(|m| m["suite"] == "breakdown" && m["case"] == case && m["runtime"] == runtime)
                .unwrap_or_else(|| panic!("no breakdown {case} for {runtime}"))
        };
        let phases: f64 = measurements
            .iter()
            .filter(|m| m["suite"] == "breakdown" && m["runtime"] == runtime)
            .filter(|m| m["case"].as_str().unwrap().starts_with("phase: "))
            .map(|m| m["stats"]["mean"].as_f64().unwrap())
            .sum();
        let sum = find("sum of phases")["stats"]["mean"].as_f64().unwrap();
        let outside = find("round trip (timed outside)")["stats"]["mean"]
            .as_f64()
            .unwrap();
        assert!(
            (phases - sum).abs() <= 0.01 * sum + 0.01,
            "{runtime}: phases {phases} vs sum {sum}"
        );
        assert!(
            sum <= outside,
            "{runtime}: traced {sum} us exceeds the timed {outside} us"
        );
        assert!(
            sum >= 0.5 * outside,
            "{runtime}: traced {sum} us is far below the timed {outside} us"
        );
    }

    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("suite,case,runtime,workers,param,unit,n,median,mean,stddev"));
    assert_eq!(
        lines.count(),
        measurements.len(),
        "one CSV row per measurement"
    );

    for suite in SUITES {
        assert_contains(&md, &format!("## {suite}"), "the Markdown export");
    }
    assert_contains(&md, "| case | runtime |", "the Markdown export");
}

#[test]
fn exports_can_go_to_standard_output() {
    let out = output(coordinator().args([
        "bench",
        "--quick",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--suite",
        "floor",
        "--export-json",
        "-",
    ]));
    assert_exit(&out, 0);
    let report: Json = serde_json::from_slice(&out.stdout).expect("stdout is the JSON export");
    assert_eq!(report["measurements"].as_array().unwrap().len(), 2);
}

#[test]
fn python_peers_appear_as_extra_rows_or_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, md) = bench(
        dir.path(),
        &["--suite", "latency,startup", "--peers", "python"],
    );
    let has_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok();
    let measurements = report["measurements"].as_array().unwrap();
    if has_python {
        for runtime in ["python-thread", "python-process-fork"] {
            assert!(
                measurements
                    .iter()
                    .any(|m| m["runtime"] == runtime && m["case"] == "noop round trip"),
                "no {runtime} latency"
            );
        }
        let ours = measurements
            .iter()
            .find(|m| m["case"] == "noop round trip" && m["runtime"] == "process")
            .unwrap();
        assert!(ours["ratios"]["x python"].is_number(), "{ours}");
        assert_contains(&md, "python-process-fork", "the Markdown export");
    } else {
        assert_contains(
            &report["notes"].to_string(),
            "python3 is not installed",
            "notes",
        );
    }
}

/// The terminal report ends with sentences computed from this run's measurements: the
/// figures in them are the medians of the JSON export, in the units a person reads.
#[test]
fn bench_ends_with_plain_words_computed_from_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = output(
        coordinator()
            .args([
                "bench",
                "--quick",
                "--runs",
                "2",
                "--warmup",
                "0",
                "--workers",
                "1,2",
            ])
            .args(["--suite", "floor,startup,latency"])
            .arg("--export-json")
            .arg(&json),
    );
    assert_exit(&out, 0);
    let report: Json = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let err = stderr(&out);
    let words = err
        .split("## In plain words")
        .nth(1)
        .unwrap_or_else(|| panic!("no plain-words section:\n{err}"));
    let median = |suite: &str, case: &str, rt: &str, workers: u64| {
        let m = report["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["suite"] == suite
                    && m["case"] == case
                    && m["runtime"] == rt
                    && m["workers"] == workers
            })
            .unwrap_or_else(|| panic!("no {suite} {case} {rt}"));
        units::format(
            m["stats"]["median"].as_f64().unwrap(),
            m["unit"].as_str().unwrap(),
        )
    };
    let startup = (
        median("startup", "pool ready", "process", 2),
        median("startup", "pool ready", "thread", 2),
    );
    assert_contains(words, "A pool of 2 worker processes", "the plain words");
    assert_contains(words, &startup.0, "the startup sentence");
    assert_contains(words, &startup.1, "the startup sentence");
    assert_contains(
        words,
        &median("latency", "noop round trip", "process", 1),
        "the round-trip sentence",
    );
    assert_contains(
        words,
        &median("latency", "noop round trip", "thread", 1),
        "the round-trip sentence",
    );
    // The sentences are those of the JSON export, in order.
    for sentence in report["conclusions"].as_array().unwrap() {
        assert_contains(words, sentence.as_str().unwrap(), "the plain words");
    }
    // Outliers are summed up per suite, not listed one by one before the results.
    assert!(!err.contains("warning: latency /"), "{err}");
    // Comparisons read one way.
    assert!(!err.contains("process/thread"), "{err}");
}
