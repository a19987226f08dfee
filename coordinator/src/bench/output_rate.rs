//! What writing the outcomes costs a user: `coordinator run noop` (this very binary, run
//! as a child, as a user would) with each export format written to a file, against the
//! same run with `-q`, which writes the summary only. Part of the throughput suite.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::model::{Measurement, Report};
use super::Bench;

/// The case of these measurements; `run`'s own pool has 2 workers, like the rest of the
/// throughput suite.
pub const CASE: &str = "run noop, outcomes written";
const WORKERS: usize = 2;

/// The runs compared: the flags after `run noop`, `-o FILE` added where a format is given.
const RUNS: [(&str, Option<&str>); 5] = [
    ("-q", None),
    ("--format jsonl -o FILE", Some("jsonl")),
    ("--format csv -o FILE", Some("csv")),
    ("--format json -o FILE", Some("json")),
    ("--format table -o FILE", Some("table")),
];

pub fn output_rates(bench: &Bench, report: &mut Report) -> Result<()> {
    let tasks: u64 = if bench.quick { 100_000 } else { 1_000_000 };
    let dir = super::temp_dir("bench");
    std::fs::create_dir_all(&dir).context("cannot create a temporary folder")?;
    let file = dir.join("outcomes");
    let result = (|| {
        for (param, format) in RUNS {
            let values = bench.repeat(|| {
                let mut command = bench.run_command("noop")?;
                command
                    .args(["--count", &tasks.to_string(), "-w", &WORKERS.to_string()])
                    .stdout(Stdio::null());
                match format {
                    None => command.arg("-q"),
                    Some(format) => command.args(["--format", format, "-o"]).arg(&file),
                };
                let t = Instant::now();
                let output = command.output().context("cannot run `coordinator run`")?;
                let seconds = t.elapsed().as_secs_f64();
                let _ = std::fs::remove_file(&file);
                if !output.status.success() {
                    bail!(
                        "`coordinator run noop {param}` failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                Ok(tasks as f64 / seconds)
            })?;
            report.add(Measurement::new(
                "throughput",
                CASE,
                "process",
                Some(WORKERS),
                Some(format!("{tasks} tasks, {param}")),
                "tasks/s",
                &values,
            ));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    add_ratios(report);
    result
}

/// Each export's rate against the `-q` run's: "x -q".
fn add_ratios(report: &mut Report) {
    let quiet = report
        .measurements
        .iter()
        .find(|m| m.case == CASE && m.param.as_deref().is_some_and(|p| p.ends_with(", -q")))
        .map(|m| m.stats.median);
    let Some(quiet) = quiet.filter(|q| *q > 0.0) else {
        return;
    };
    for m in report.measurements.iter_mut().filter(|m| m.case == CASE) {
        if m.param.as_deref().is_some_and(|p| !p.ends_with(", -q")) {
            m.ratios.insert("x -q".into(), m.stats.median / quiet);
        }
    }
}
