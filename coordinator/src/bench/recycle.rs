//! The `recycle` suite: what retiring a worker and starting its replacement costs, per
//! retirement, next to a task's round trip on a warm worker.

use std::time::Instant;

use anyhow::Result;
use workpool::pool::{BackendKind, Chunk};
use workpool::workload::Noop;

use super::model::{Measurement, Report};
use super::overhead::noop;
use super::{stats, Bench};

/// One worker, one no-op at a time, first on a warm worker, then with every task retiring
/// its worker (`--max-tasks-per-worker 1`): the difference per retirement is the cost of
/// asking a worker to exit, reaping it, and starting and greeting its replacement, less
/// what overlaps with the task.
pub fn recycle(bench: &Bench, report: &mut Report) -> Result<()> {
    let tasks: u64 = if bench.quick { 50 } else { 300 };
    let mut warm = bench.one_at_a_time(BackendKind::Process, Noop)?;
    warm.map((0..tasks).map(|_| noop(0))).for_each(drop);
    let round_trip = bench.repeat(|| {
        let t = Instant::now();
        let done = warm.map((0..tasks).map(|_| noop(0))).count();
        Ok(t.elapsed().as_secs_f64() * 1e6 / done as f64)
    })?;
    warm.shutdown();
    let round_trip_us = stats::Summary::of(&round_trip).map_or(0.0, |s| s.median);
    let per_retirement = bench.repeat(|| {
        let builder = bench
            .builder(BackendKind::Process, 1, Chunk::Fixed(1), Some(1))
            .max_tasks_per_worker(Some(1));
        let mut pool = super::start(builder, Noop)?;
        let t = Instant::now();
        let mut run = pool.map((0..tasks).map(|_| noop(0)));
        let done = run.by_ref().count() as f64;
        let wall_us = t.elapsed().as_secs_f64() * 1e6;
        let retired: u64 = run.stats().workers_retired.values().sum();
        drop(run);
        pool.shutdown();
        Ok((wall_us - done * round_trip_us) / retired.max(1) as f64)
    })?;
    report.add(Measurement::new(
        "recycle",
        "noop round trip",
        "process",
        Some(1),
        Some("no recycling".into()),
        "us",
        &round_trip,
    ));
    let retirement = Measurement::new(
        "recycle",
        "retire and replace a worker",
        "process",
        Some(1),
        Some("per retirement".into()),
        "us",
        &per_retirement,
    );
    report.add(retirement.map(|mut m| {
        if round_trip_us > 0.0 {
            m.ratios
                .insert("round trips".into(), m.stats.median / round_trip_us);
        }
        m
    }));
    Ok(())
}
