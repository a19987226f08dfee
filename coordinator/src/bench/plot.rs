//! `--plot DIR`: SVG charts of a bench report, drawn with plotters.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::model::{Histogram, Report};
use super::units;

/// Writes every chart the report has data for; returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let charts: [(&str, Chart); 3] = [
        ("speedup.svg", speedup),
        ("breakdown.svg", breakdown),
        ("latency.svg", latency),
    ];
    for (name, draw) in charts {
        let path = dir.join(name);
        if draw(report, &path)? {
            written.push(path);
        }
    }
    Ok(written)
}

/// Draws one chart into a file; false when the report has no data for it.
type Chart = fn(&Report, &Path) -> Result<bool>;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw chart: {e}")
}

const FONT: &str = "sans-serif";

/// Speedup over sequential against workers, one line per workload and backend (warm),
/// with the legend beside the plot so that it hides no point.
fn speedup(report: &Report, path: &Path) -> Result<bool> {
    let mut series: Vec<(String, Vec<(u32, f64)>)> = Vec::new();
    for m in report.measurements.iter().filter(|m| {
        m.suite == "scaling" && m.param.as_deref() == Some("warm") && m.workers.is_some()
    }) {
        let (Some(speedup), Some(workers)) = (m.ratios.get("speedup"), m.workers) else {
            continue;
        };
        let label = format!("{} on {}", m.case, m.runtime);
        let point = (u32::try_from(workers).unwrap_or(u32::MAX), *speedup);
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
        .max()
        .unwrap_or(1);
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(640);
    let mut chart = ChartBuilder::on(&plot)
        .caption("speedup over sequential (warm pool)", (FONT, 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0..max_x + 1, 0.0..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 2)
        .x_desc("workers")
        .y_desc("speedup (x)")
        .draw()
        .map_err(err)?;
    // The line of no speedup.
    chart
        .draw_series(LineSeries::new(
            [(0, 1.0), (max_x + 1, 1.0)],
            BLACK.mix(0.3).stroke_width(1),
        ))
        .map_err(err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
        let y = 60 + 24 * i as i32;
        legend
            .draw(&PathElement::new(
                vec![(10, y), (40, y)],
                color.stroke_width(3),
            ))
            .map_err(err)?;
        legend
            .draw(&Text::new(label.clone(), (48, y - 7), (FONT, 14)))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// One no-op round trip at a time: how the samples spread, every runtime on the same
/// axis (log scale, up to the largest p99; the samples above it are counted in the titles).
fn latency(report: &Report, path: &Path) -> Result<bool> {
    let histograms: Vec<(&String, &Histogram)> = report
        .histograms
        .iter()
        .filter(|(_, h)| !h.buckets.is_empty())
        .collect();
    if histograms.is_empty() {
        return Ok(false);
    }
    let buckets = || histograms.iter().flat_map(|(_, h)| h.buckets.iter());
    let lo = buckets().map(|b| b.0).fold(f64::INFINITY, f64::min);
    let hi = buckets().map(|b| b.1).fold(lo, f64::max).max(lo * 1.01);
    let max_count = buckets().map(|b| b.2).max().unwrap_or(1).max(1);
    let panels = histograms.len() as u32;
    let root = SVGBackend::new(path, (900, 60 + 260 * panels)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "no-op round trip, one task at a time on a warm pool",
            (FONT, 20),
        )
        .map_err(err)?;
    for (area, (runtime, h)) in root
        .split_evenly((histograms.len(), 1))
        .iter()
        .zip(&histograms)
    {
        let clipped = match h.clipped {
            0 => String::new(),
            n => format!(
                "; {n} sample{} above {} not drawn (largest {})",
                if n == 1 { "" } else { "s" },
                units::format(hi, "us"),
                units::format(h.max, "us")
            ),
        };
        let caption = format!(
            "{runtime}: median {}, p99 {}{clipped}",
            units::format(h.median, "us"),
            units::format(h.p99, "us"),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 15))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(ticks_1_2_5(lo, hi)),
                0..max_count + max_count / 10 + 1,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("microseconds (log scale)")
            .y_desc("samples")
            .x_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(h.buckets.iter().map(|&(from, to, count)| {
                Rectangle::new([(from, 0), (to, count)], BLUE.mix(0.6).filled())
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// Ticks of a log axis from `lo` to `hi` at 1, 2 and 5 times the powers of ten.
fn ticks_1_2_5(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi.is_finite()) {
        return Vec::new();
    }
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        ticks.extend(
            [1.0, 2.0, 5.0]
                .iter()
                .map(|m| m * decade)
                .filter(|t| (lo..=hi).contains(t)),
        );
        decade *= 10.0;
    }
    ticks
}

/// Median time per phase of a no-op round trip, process and thread side by side: one
/// row per phase, its name on the left where it has room.
fn breakdown(report: &Report, path: &Path) -> Result<bool> {
    let phases: Vec<&str> = report
        .measurements
        .iter()
        .filter(|m| m.suite == "breakdown" && m.runtime == "process" && m.param.is_none())
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
    let max_x = phases
        .iter()
        .flat_map(|p| runtimes.iter().map(move |(r, _)| median(r, p)))
        .fold(0.0, f64::max)
        .max(1e-3);
    let rows = phases.len();
    let root = SVGBackend::new(path, (900, 80 + 40 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // The first phase on top: row i of the chart is phase rows - 1 - i.
    let name = |row: usize| phases.get(rows - 1 - row).copied().unwrap_or("");
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "where a no-op round trip goes (median per phase)",
            (FONT, 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..max_x * 1.1, (0..rows - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(row) => name(*row).to_string(),
            _ => String::new(),
        })
        .x_desc("microseconds")
        .draw()
        .map_err(err)?;
    for (k, (runtime, color)) in runtimes.iter().enumerate() {
        chart
            .draw_series((0..rows).map(|row| {
                // Process in the upper half of a row, thread in the lower.
                let (bottom, top) = if k == 0 {
                    (SegmentValue::CenterOf(row), SegmentValue::Exact(row + 1))
                } else {
                    (SegmentValue::Exact(row), SegmentValue::CenterOf(row))
                };
                let value = median(runtime, name(row));
                let mut bar =
                    Rectangle::new([(0.0, bottom), (value, top)], color.mix(0.7).filled());
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(err)?
            .label(*runtime)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}
