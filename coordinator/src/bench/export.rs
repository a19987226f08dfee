//! Bench exports: JSON (the whole report), CSV (one row per measurement) and Markdown
//! (a table per suite). Each is rewritten after every suite, so a failure later in the
//! run loses nothing already measured. `-` writes to standard output (once, at the end).

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::model::{Measurement, Report};

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

/// The report as Markdown: machine header, one table per suite, notes.
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
    let mut suites: Vec<&str> = Vec::new();
    for m in &report.measurements {
        if !suites.contains(&m.suite) {
            suites.push(m.suite);
        }
    }
    for suite in suites {
        let _ = writeln!(md, "## {suite}\n");
        let _ = writeln!(
            md,
            "| case | runtime | workers | param | median | mean ± σ | min | max | p99 | compared |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for m in report.measurements.iter().filter(|m| m.suite == suite) {
            let s = &m.stats;
            let spread = s
                .stddev
                .map_or(String::new(), |sd| format!(" ± {}", num(sd)));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} {} | {}{} | {} | {} | {} | {} |",
                m.case,
                m.runtime,
                m.workers.map_or(String::new(), |w| w.to_string()),
                m.param.clone().unwrap_or_default(),
                num(s.median),
                m.unit,
                num(s.mean),
                spread,
                num(s.min),
                num(s.max),
                num(s.p99),
                ratios(m)
            );
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

fn ratios(m: &Measurement) -> String {
    m.ratios
        .iter()
        .map(|(k, v)| format!("{} {k}", num(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Three significant digits: more would be noise on a shared machine.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(0.0), "0");
    }
}
