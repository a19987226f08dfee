//! `coordinator bench` in a tiny configuration: every suite runs, and every export is
//! well formed with every field present. Nothing here looks at the speed measured.

use std::path::Path;

use serde_json::Value as Json;

use crate::common::{assert_contains, assert_exit, coordinator, output, stderr};
use workpool_cli::bench::units;
use workpool_cli::cli::Suite;

/// Every suite `bench` runs when none is named.
fn suites() -> impl Iterator<Item = &'static str> {
    Suite::ALL.into_iter().map(Suite::name)
}

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
    let report: Json =
        serde_json::from_str(&std::fs::read_to_string(json).expect("the JSON export"))
            .expect("the JSON export parses");
    (
        report,
        std::fs::read_to_string(csv).expect("the CSV export"),
        std::fs::read_to_string(md).expect("the Markdown export"),
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
    for suite in suites() {
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
    // `run` itself, writing its outcomes in each format, against the same run with -q.
    let written = |flags: &str| {
        measurements
            .iter()
            .find(|m| {
                m["case"] == "run noop, outcomes written"
                    && m["param"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(&format!(", {flags}")))
            })
            .unwrap_or_else(|| panic!("no `run noop {flags}` rate"))
    };
    assert!(written("-q")["stats"]["median"].as_f64() > Some(0.0));
    for format in ["jsonl", "csv", "json", "table"] {
        let m = written(&format!("--format {format} -o FILE"));
        assert!(m["ratios"]["x -q"].as_f64() > Some(0.0), "{m}");
    }
    // Payloads up to 16 MiB, through processes and threads.
    for runtime in ["process", "thread"] {
        assert!(
            measurements.iter().any(|m| m["case"] == "round trip"
                && m["runtime"] == runtime
                && m["param"] == "16384 KiB"),
            "no 16 MiB round trip on {runtime}"
        );
    }
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

    // The breakdown's phases add up to the round trip timed around the whole call, for a
    // no-op and for one carrying a MiB.
    for (runtime, param) in [("process", None), ("thread", None)]
        .into_iter()
        .chain([("process", Some("1024 KiB")), ("thread", Some("1024 KiB"))])
    {
        let ours = |m: &&Json| {
            m["suite"] == "breakdown" && m["runtime"] == runtime && m["param"].as_str() == param
        };
        let find = |case: &str| {
            measurements
                .iter()
                .filter(ours)
                .find(|m| m["case"] == case)
                .unwrap_or_else(|| panic!("no breakdown {case} for {runtime} {param:?}"))
        };
        let phases: f64 = measurements
            .iter()
            .filter(ours)
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

    for suite in suites() {
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
    // Two echoes, and one copy at each of two placements.
    assert_eq!(report["measurements"].as_array().unwrap().len(), 4);
}

#[test]
fn python_peers_appear_as_extra_rows_or_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, md) = bench(
        dir.path(),
        &["--suite", "latency,startup,payload", "--peers", "python"],
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
        // A program's first pool, read from `coordinator run`, beside Python's fork pool.
        let first = measurements
            .iter()
            .find(|m| m["case"] == "pool ready, first of a program" && m["runtime"] == "process")
            .expect("no first-pool start-up");
        assert!(first["ratios"]["x python"].is_number(), "{first}");
        assert!(first["stats"]["median"].as_f64() > Some(0.0), "{first}");
        // Python's echo of the same payloads, compared size by size.
        for size in ["1 KiB", "64 KiB", "1024 KiB", "16384 KiB"] {
            let echo = |runtime: &str| {
                measurements
                    .iter()
                    .find(|m| {
                        m["case"] == "round trip" && m["runtime"] == runtime && m["param"] == size
                    })
                    .unwrap_or_else(|| panic!("no {size} round trip on {runtime}"))
            };
            echo("python-process-fork");
            assert!(echo("process")["ratios"]["x python"].is_number(), "{size}");
        }
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
    let copy = |offset: &str| {
        let m = report["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["case"] == "copy 64 KiB" && m["param"] == offset)
            .unwrap_or_else(|| panic!("no copy at {offset}"));
        units::format(m["stats"]["median"].as_f64().unwrap(), "us")
    };
    assert_contains(words, "Copying 64 KiB takes", "the plain words");
    assert_contains(words, &copy("+16 B"), "the copy sentence");
    assert_contains(words, &copy("+0 B"), "the copy sentence");
    // The sentences are those of the JSON export, in order.
    for sentence in report["conclusions"].as_array().unwrap() {
        assert_contains(words, sentence.as_str().unwrap(), "the plain words");
    }
    // Outliers are summed up per suite, not listed one by one before the results.
    assert!(!err.contains("warning: latency /"), "{err}");
    // Comparisons read one way.
    assert!(!err.contains("process/thread"), "{err}");
}

/// `bench --load 2`: two CPU hogs spin while the latency suite measures again (its rows
/// labelled with the load), and they are gone once the bench is, however it ends: at the
/// end of its run, interrupted (SIGINT, as Ctrl-C: it keeps what it measured, exit 130)
/// or killed (SIGKILL, when no code of the bench runs any more).
#[test]
fn load_hogs_spin_during_the_latency_suite_and_never_outlive_the_bench() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const LIMIT: Duration = Duration::from_secs(30);
    let has_python = Command::new("python3").arg("--version").output().is_ok();
    for ending in [None, Some(libc::SIGINT), Some(libc::SIGKILL)] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bench.json");
        let mut cmd = Command::new(crate::common::COORDINATOR);
        cmd.env("WORKPOOL_WORKER", crate::common::WORKER)
            .args(["bench", "--quick", "--runs", "1", "--warmup", "0"])
            .args(["--suite", "latency", "--load", "2", "--export-json"])
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: signal() only resets a disposition in the child: a shell starts
        // background jobs with SIGINT ignored, and Ctrl-C reaches a foreground program
        // with the default action.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut bench = cmd.spawn().expect("cannot start bench");
        let marker = format!("workpool-load-of-{}", bench.id());
        let started = Instant::now();
        let status = match ending {
            None => bench.wait().expect("wait on bench"),
            Some(signal) => {
                while hogs(&marker).len() < 2 {
                    if started.elapsed() > LIMIT || !has_python {
                        let _ = bench.kill();
                        let _ = bench.wait();
                        panic!("the bench never had two hogs spinning (python3: {has_python})");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let pid = i32::try_from(bench.id()).expect("pid out of range");
                // SAFETY: kill only sends a signal, to our own child, not yet reaped.
                assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
                bench.wait().expect("wait on bench")
            }
        };
        match ending {
            None => assert!(status.success(), "bench failed: {status}"),
            Some(libc::SIGINT) => assert_eq!(status.code(), Some(130), "{status}"),
            Some(signal) => assert_eq!(status.signal(), Some(signal), "{status}"),
        }
        let started = Instant::now();
        loop {
            let left = hogs(&marker);
            if left.is_empty() {
                break;
            }
            if started.elapsed() > LIMIT {
                for &pid in &left {
                    // SAFETY: kill only sends a signal, to a hog seen a moment ago.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                panic!("after {ending:?}: hogs {left:?} outlived the bench");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if ending.is_none() {
            let report: Json =
                serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            let text = report.to_string();
            if !has_python {
                assert_contains(&text, "--load needs python3", "the notes");
                return;
            }
            for runtime in ["process", "thread"] {
                assert!(
                    report["measurements"].as_array().unwrap().iter().any(|m| {
                        m["case"] == "noop round trip"
                            && m["runtime"] == runtime
                            && m["param"] == "under 2 CPU hogs"
                    }),
                    "no {runtime} round trip under load: {text}"
                );
            }
        }
    }
}

/// The live processes whose command line carries `marker` (a zombie's is empty).
fn hogs(marker: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker)
        })
        .collect()
}
