//! Peers: the same suites on Python's `ThreadPoolExecutor` and `ProcessPoolExecutor`, run
//! by a standard-library script shipped inside this binary, shown as extra rows. With
//! `--load`, the latency suite runs a second time under the same CPU hogs as ours.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use super::load::{die_with_parent, Load};
use super::model::{Measurement, Report};
use super::Bench;
use crate::cli::Suite;

/// The script, compiled in so that `bench` needs nothing beside its binaries.
const SCRIPT: &str = include_str!("../../../bench/peers.py");

#[derive(Deserialize)]
struct Output {
    python: String,
    measurements: Vec<Raw>,
}

#[derive(Deserialize)]
struct Raw {
    suite: String,
    case: String,
    runtime: String,
    workers: Option<usize>,
    param: Option<String>,
    unit: String,
    values: Vec<f64>,
}

/// Suites the script knows; names must stay `'static` in the report.
fn suite_name(name: &str) -> Option<&'static str> {
    Suite::ALL.iter().map(|s| s.name()).find(|s| *s == name)
}

fn unit(name: &str) -> &'static str {
    match name {
        "ms" => "ms",
        "us" => "us",
        "tasks/s" => "tasks/s",
        "KiB" => "KiB",
        _ => "?",
    }
}

/// The suites the script measures.
const PYTHON_SUITES: [Suite; 6] = [
    Suite::Startup,
    Suite::Latency,
    Suite::Throughput,
    Suite::Payload,
    Suite::Memory,
    Suite::Scaling,
];

pub fn python(bench: &Bench, suites: &[Suite], report: &mut Report) -> Result<()> {
    let wanted: Vec<&str> = suites
        .iter()
        .filter(|s| PYTHON_SUITES.contains(s))
        .map(|s| s.name())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let dir = super::temp_dir("peers");
    std::fs::create_dir_all(&dir).context("cannot create a temporary folder")?;
    let script = dir.join("peers.py");
    let result = std::fs::write(&script, SCRIPT)
        .context("cannot write the peers script")
        .and_then(|()| {
            let parsed = run_script(bench, &script, &wanted)?;
            report.notes.push(format!(
                "python peers: {}",
                parsed.python.lines().next().unwrap_or("")
            ));
            add(report, parsed.measurements, None);
            if let (Some(hogs), true) = (bench.load, wanted.contains(&"latency")) {
                let _load = Load::start(hogs)?;
                let parsed = run_script(bench, &script, &["latency"])?;
                add(report, parsed.measurements, Some(Load::label(hogs)));
            }
            Ok(())
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the script on `suites` and reads what it printed.
fn run_script(bench: &Bench, script: &Path, suites: &[&str]) -> Result<Output> {
    let sweep: Vec<String> = bench.sweep.iter().map(|w| w.to_string()).collect();
    let mut command = Command::new("python3");
    command
        .arg(script)
        .args(["--suites", &suites.join(",")])
        .args(["--workers", &sweep.join(",")])
        .args(["--runs", &bench.runs.to_string()])
        .args(["--warmup", &bench.warmup.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if bench.quick {
        command.arg("--quick");
    }
    let output = match die_with_parent(&mut command).output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            bail!("python3 is not installed")
        }
        Err(err) => return Err(err).context("cannot run python3"),
    };
    if !output.status.success() {
        bail!("the peers script failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("the peers script printed no valid JSON")
}

/// Adds the script's measurements to the report; `param`, when given, labels them all (the
/// load they were taken under).
fn add(report: &mut Report, measurements: Vec<Raw>, param: Option<String>) {
    for raw in measurements {
        let Some(suite) = suite_name(&raw.suite) else {
            continue;
        };
        report.measurements.extend(Measurement::new(
            suite,
            raw.case,
            raw.runtime,
            raw.workers,
            param.clone().or(raw.param),
            unit(&raw.unit),
            &raw.values,
        ));
    }
}

/// "x python": how many times better than the corresponding Python executor.
pub fn add_ratios(report: &mut Report) {
    let snapshot = report.clone();
    let med = |case: &str, rt: &str, w: Option<usize>, p: Option<&str>| {
        snapshot.find(case, rt, w, p).map(|m| m.stats.median)
    };
    let best_map = |rt: &str| {
        snapshot
            .measurements
            .iter()
            .filter(|m| m.runtime == rt && m.case == "noop throughput")
            .filter(|m| m.param.as_deref().is_some_and(|p| p.starts_with("map")))
            .map(|m| m.stats.median)
            .fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| b.max(v)))
            })
    };
    for m in &mut report.measurements {
        let (case, w, p) = (m.case.as_str(), m.workers, m.param.as_deref());
        if m.suite == "scaling"
            && m.runtime.starts_with("python-")
            && m.runtime != "python-sequential"
        {
            if let Some(seq) = med(case, "python-sequential", None, None) {
                m.ratios.insert("speedup".into(), seq / m.stats.median);
            }
            continue;
        }
        let py_rt = match m.runtime.as_str() {
            "process" => "python-process-fork",
            "thread" => "python-thread",
            _ => continue,
        };
        // Lower is better for times and memory, higher for throughput.
        let ratio = match (case, p) {
            ("noop throughput", Some("chunk=auto")) => best_map(py_rt).map(|b| m.stats.median / b),
            ("noop throughput", Some(p)) if p == "chunk=1" || p.starts_with("chunk=1 ") => {
                med(case, py_rt, w, Some("submit")).map(|b| m.stats.median / b)
            }
            ("noop throughput", _) => None,
            ("pool ready", _) => med(case, py_rt, w, None).map(|b| b / m.stats.median),
            // Python's pools start with no server to exec: its one figure is the peer.
            (super::overhead::FIRST_POOL, _) => {
                med("pool ready", py_rt, w, None).map(|b| b / m.stats.median)
            }
            // Idle against idle, under load against the same load; payloads size by size.
            ("noop round trip" | "round trip", p) => {
                med(case, py_rt, w, p).map(|b| b / m.stats.median)
            }
            ("worker rss" | "worker pss", _) => {
                med(case, py_rt, w, None).map(|b| b / m.stats.median)
            }
            _ => None,
        };
        if let Some(r) = ratio {
            m.ratios.insert("x python".into(), r);
        }
        if case == "pool ready" && m.runtime == "process" {
            if let Some(b) = med(case, "python-process-spawn", w, None) {
                m.ratios.insert("x python spawn".into(), b / m.stats.median);
            }
        }
    }
}
