//! `--plot DIR`: SVG charts of a bench report, drawn with plotters.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use plotters::prelude::*;

use super::model::Report;

/// Writes every chart the report has data for; returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let path = dir.join("speedup.svg");
    if speedup(report, &path)? {
        written.push(path);
    }
    let path = dir.join("breakdown.svg");
    if breakdown(report, &path)? {
        written.push(path);
    }
    for (runtime, buckets) in &report.histograms {
        let path = dir.join(format!("latency-{runtime}.svg"));
        histogram(runtime, buckets, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw chart: {e}")
}

/// Speedup over sequential against workers, one line per workload and backend (warm).
fn speedup(report: &Report, path: &Path) -> Result<bool> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for m in report.measurements.iter().filter(|m| {
        m.suite == "scaling" && m.param.as_deref() == Some("warm") && m.workers.is_some()
    }) {
        let Some(speedup) = m.ratios.get("speedup") else {
            continue;
        };
        let label = format!("{} {}", m.case.split(' ').next().unwrap_or(""), m.runtime);
        let point = (m.workers.unwrap_or(1) as f64, *speedup);
        match series.iter_mut().find(|(l, _)| *l == label) {
            Some((_, points)) => points.push(point),
            None => series.push((label, vec![point])),
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("speedup over sequential (warm pool)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..max_x + 0.5, 0.0..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("speedup (x)")
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// One no-op round trip at a time: how the samples spread.
fn histogram(runtime: &str, buckets: &[(f64, f64, usize)], path: &Path) -> Result<()> {
    let max_count = buckets.iter().map(|b| b.2).max().unwrap_or(1) as f64;
    let (lo, hi) = (
        buckets.first().map_or(0.0, |b| b.0),
        buckets.last().map_or(1.0, |b| b.1),
    );
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("no-op round trip, {runtime} backend"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi.max(lo + 1e-9), 0.0..max_count * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("microseconds")
        .y_desc("samples")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(buckets.iter().map(|&(from, to, count)| {
            Rectangle::new([(from, 0.0), (to, count as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Median time per phase of a no-op round trip, process and thread side by side.
fn breakdown(report: &Report, path: &Path) -> Result<bool> {
    let phases: Vec<&str> = report
        .measurements
        .iter()
        .filter(|m| m.suite == "breakdown" && m.runtime == "process")
        .filter_map(|m| m.case.strip_prefix("phase: "))
        .collect();
    if phases.is_empty() {
        return Ok(false);
    }
    let median = |runtime: &str, phase: &str| {
        report
            .find(&format!("phase: {phase}"), runtime, Some(1), None)
            .map_or(0.0, |m| m.stats.median)
    };
    let runtimes = [("process", RED), ("thread", BLUE)];
    let max_y = phases
        .iter()
        .flat_map(|p| runtimes.iter().map(move |(r, _)| (r, p)))
        .map(|(r, p)| median(r, p))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels = phases.clone();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "where a no-op round trip goes (median per phase)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..phases.len() as f64 - 0.5, 0.0..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(phases.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels
                    .get(i as usize)
                    .map_or(String::new(), |l| l.to_string())
            } else {
                String::new()
            }
        })
        .y_desc("microseconds")
        .draw()
        .map_err(err)?;
    for (k, (runtime, color)) in runtimes.iter().enumerate() {
        let offset = -0.4 + 0.4 * k as f64;
        chart
            .draw_series(phases.iter().enumerate().map(|(i, p)| {
                let x = i as f64 + offset;
                Rectangle::new(
                    [(x, 0.0), (x + 0.38, median(runtime, p))],
                    color.mix(0.7).filled(),
                )
            }))
            .map_err(err)?
            .label(*runtime)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}
