//! Bench exports: JSON (the whole report), CSV (one row per measurement) and Markdown
//! (a table per suite). Each is rewritten after every suite, so a failure later in the
//! run loses nothing already measured. `-` writes to standard output (once, at the end).

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::model::{Measurement, Report};
use super::units::{self, num};

/// Where each export goes.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    pub json: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
}

impl Targets {
    /// Rewrites every file export; `final_pass` also writes the `-` (stdout) ones.
    pub fn write(&self, report: &Report, final_pass: bool) -> Result<()> {
        let exports: [(&Option<PathBuf>, Render); 3] = [
            (&self.json, json),
            (&self.csv, csv),
            (&self.markdown, |r| Ok(markdown(r))),
        ];
        for (target, render) in exports {
            let Some(path) = target else { continue };
            if path == Path::new("-") {
                if final_pass {
                    std::io::stdout().write_all(render(report)?.as_bytes())?;
                }
            } else {
                std::fs::write(path, render(report)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Turns a report into one export's text.
type Render = fn(&Report) -> Result<String>;

pub fn json(report: &Report) -> Result<String> {
    Ok(serde_json::to_string_pretty(report)? + "\n")
}

pub fn csv(report: &Report) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "suite", "case", "runtime", "workers", "param", "unit", "n", "median", "mean", "stddev",
        "min", "max", "p95", "p99", "ratios", "warnings",
    ])?;
    for m in &report.measurements {
        let s = &m.stats;
        out.write_record([
            m.suite.to_string(),
            m.case.clone(),
            m.runtime.clone(),
            m.workers.map_or(String::new(), |w| w.to_string()),
            m.param.clone().unwrap_or_default(),
            m.unit.to_string(),
            s.n.to_string(),
            num(s.median),
            num(s.mean),
            s.stddev.map_or(String::new(), num),
            num(s.min),
            num(s.max),
            num(s.p95),
            num(s.p99),
            ratios(m),
            m.warnings.join(" | "),
        ])?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

/// The report as Markdown: machine header, one table per suite, a line per suite whose
/// samples had outliers, what the run says in plain words, notes.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(md, "# workpool bench {}\n", report.version);
    let _ = writeln!(
        md,
        "Machine: {} ({} logical cores), {} MiB, {} (kernel {}).  ",
        m.cpu, m.logical_cores, m.memory_total_mib, m.os, m.kernel
    );
    let settings: Vec<String> = report
        .settings
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(md, "Settings: {}.\n", settings.join(", "));
    let suites = suites(report);
    for &suite in &suites {
        let _ = writeln!(md, "## {suite}\n");
        let _ = writeln!(
            md,
            "| case | runtime | workers | param | median | mean ± σ | min | max | p99 | compared |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for m in report.measurements.iter().filter(|m| m.suite == suite) {
            let s = &m.stats;
            let f = |v: f64| units::format(v, m.unit);
            let spread = s.stddev.map_or(String::new(), |sd| format!(" ± {}", f(sd)));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} |",
                m.case,
                m.runtime,
                m.workers.map_or(String::new(), |w| w.to_string()),
                m.param.clone().unwrap_or_default(),
                f(s.median),
                f(s.mean),
                spread,
                f(s.min),
                f(s.max),
                f(s.p99),
                m.comparisons().join(", ")
            );
        }
        md.push('\n');
    }
    let warned = warnings(report, &suites);
    if !warned.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for line in warned {
            let _ = writeln!(md, "- {line}");
        }
        md.push('\n');
    }
    if !report.conclusions.is_empty() {
        let _ = writeln!(md, "## In plain words\n");
        for sentence in &report.conclusions {
            let _ = writeln!(md, "- {sentence}");
        }
        md.push('\n');
    }
    if !report.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for note in &report.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

/// The suites of the report, in the order they ran.
fn suites(report: &Report) -> Vec<&'static str> {
    let mut suites: Vec<&'static str> = Vec::new();
    for m in &report.measurements {
        if !suites.contains(&m.suite) {
            suites.push(m.suite);
        }
    }
    suites
}

/// One line per suite whose measurements carry warnings (each warning is in the JSON
/// and CSV exports, with its measurement).
pub fn warnings(report: &Report, suites: &[&str]) -> Vec<String> {
    suites
        .iter()
        .filter_map(|&suite| {
            let of_suite = || report.measurements.iter().filter(move |m| m.suite == suite);
            let warned = of_suite().filter(|m| !m.warnings.is_empty()).count();
            (warned > 0).then(|| {
                format!(
                    "{suite}: {warned} of {} measurements had statistical outliers \
                     (modified Z-score > 3.5): the machine may have been busy; each is in \
                     the JSON and CSV exports",
                    of_suite().count()
                )
            })
        })
        .collect()
}

fn ratios(m: &Measurement) -> String {
    m.ratios
        .iter()
        .map(|(k, v)| format!("{} {k}", num(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}
