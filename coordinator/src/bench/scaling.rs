//! The scaling suite: speedup over sequential on `io`, `cpu` and `files`, for the thread
//! and process backends across the worker sweep, cold (pool start-up included) and warm.

use std::time::Instant;

use anyhow::{Context as _, Result};
use workpool::datagen::{self, GenSpec};
use workpool::workload::files::FileSettings;
use workpool::workload::{Cpu, CpuInput, FilePath, Files, Io, IoInput};
use workpool::Task;

use super::model::{Measurement, Report};
use super::{ms_since, Bench};
use workpool::pool::{BackendKind, Chunk};

pub fn scaling(bench: &Bench, report: &mut Report) -> Result<()> {
    let dir = super::temp_dir("bench");
    let files = datagen::generate(&GenSpec::notebook(dir.clone(), 42))
        .context("cannot write the sample files")?;
    let result = measure(bench, report, &files);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(bench: &Bench, report: &mut Report, files: &[std::path::PathBuf]) -> Result<()> {
    let (io_ms, iters, delay) = if bench.quick {
        (30, 20_000_000, 10)
    } else {
        (100, 100_000_000, 50)
    };
    let io: Vec<IoInput> = (0..8).map(|_| IoInput { ms: io_ms }).collect();
    measure_workload(bench, report, "io", Io, &io)?;
    let cpu: Vec<CpuInput> = (0..4).map(|_| CpuInput { iters }).collect();
    measure_workload(bench, report, "cpu", Cpu::default(), &cpu)?;
    let task = Files(FileSettings {
        io_delay_ms: delay,
        ..FileSettings::default()
    });
    let paths: Vec<FilePath> = files.iter().map(|p| p.as_path().into()).collect();
    measure_workload(bench, report, "files", task, &paths)
}

fn measure_workload<T: Task + Clone>(
    bench: &Bench,
    report: &mut Report,
    name: &str,
    task: T,
    inputs: &[T::Input],
) -> Result<()> {
    let runs = if bench.quick { 1 } else { bench.runs.min(3) };
    {
        let case = format!("{name} ({} tasks)", inputs.len());
        let sequential = timed(runs, || {
            let mut pool =
                bench.pool(BackendKind::Sequential, 1, Chunk::Auto, None, task.clone())?;
            let t = Instant::now();
            pool.map(inputs.iter().cloned()).for_each(drop);
            Ok(ms_since(t))
        })?;
        let seq = median(&sequential);
        report.measurements.extend(Measurement::new(
            "scaling",
            case.clone(),
            "sequential",
            None,
            None,
            "ms",
            &sequential,
        ));
        for backend in [BackendKind::Thread, BackendKind::Process] {
            for &workers in &bench.sweep {
                let mut warm = Vec::new();
                let cold = timed(runs, || {
                    let t = Instant::now();
                    let mut pool = bench.pool(backend, workers, Chunk::Auto, None, task.clone())?;
                    pool.map(inputs.iter().cloned()).for_each(drop);
                    let cold = ms_since(t);
                    let t = Instant::now();
                    pool.map(inputs.iter().cloned()).for_each(drop);
                    warm.push(ms_since(t));
                    pool.shutdown();
                    Ok(cold)
                })?;
                for (param, values) in [("cold", &cold), ("warm", &warm)] {
                    if let Some(mut m) = Measurement::new(
                        "scaling",
                        case.clone(),
                        backend.as_str(),
                        Some(workers),
                        Some(param.into()),
                        "ms",
                        values,
                    ) {
                        m.ratios.insert("speedup".into(), seq / m.stats.median);
                        report.measurements.push(m);
                    }
                }
            }
        }
    }
    Ok(())
}

fn timed(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
    (0..runs).map(|_| f()).collect()
}

fn median(values: &[f64]) -> f64 {
    super::stats::Summary::of(values).map_or(f64::NAN, |s| s.median)
}
