//! The memory suite: what a worker process costs compared with a thread.

use anyhow::Result;
use workpool::workload::{Noop, NoopInput};

use super::model::{Measurement, Report};
use super::Bench;
use crate::machine::{pss_kib, rss_kib};
use workpool::pool::{BackendKind, Chunk, Pool};

/// Brings every runner to its steady state before memory is read.
fn warm(pool: &mut Pool<Noop>) {
    let inputs = (0..1000).map(|_| NoopInput {
        payload: Vec::new(),
        fault: None,
    });
    pool.map(inputs).for_each(drop);
}

fn kib(values: &[u64]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

pub fn memory(bench: &Bench, report: &mut Report) -> Result<()> {
    let me = std::process::id();
    let workers = bench.sweep.iter().copied().max().unwrap_or(2);
    if let Some(rss) = rss_kib(me) {
        let m = Measurement::new(
            "memory",
            "coordinator rss",
            "coordinator",
            None,
            Some("no pool".into()),
            "KiB",
            &[rss as f64],
        );
        report.measurements.extend(m);
    }

    let mut pool = bench.pool(BackendKind::Process, workers, Chunk::Auto, None, Noop)?;
    warm(&mut pool);
    let pids = pool.pids();
    let rss: Vec<u64> = pids.iter().filter_map(|&p| rss_kib(p)).collect();
    let pss: Vec<u64> = pids.iter().filter_map(|&p| pss_kib(p)).collect();
    let coordinator = rss_kib(me);
    pool.shutdown();
    let w = Some(workers);
    report.measurements.extend(Measurement::new(
        "memory",
        "worker rss",
        "process",
        w,
        None,
        "KiB",
        &kib(&rss),
    ));
    report.measurements.extend(Measurement::new(
        "memory",
        "worker pss",
        "process",
        w,
        None,
        "KiB",
        &kib(&pss),
    ));
    if let Some(c) = coordinator {
        report.measurements.extend(Measurement::new(
            "memory",
            "coordinator rss",
            "process",
            w,
            None,
            "KiB",
            &[c as f64],
        ));
    }

    // A thread's cost shows only as growth of this process: measured before and after.
    let before = rss_kib(me);
    let mut pool = bench.pool(BackendKind::Thread, workers, Chunk::Auto, None, Noop)?;
    warm(&mut pool);
    let after = rss_kib(me);
    pool.shutdown();
    if let (Some(before), Some(after)) = (before, after) {
        let per_thread = after.saturating_sub(before) as f64 / workers as f64;
        report.measurements.extend(Measurement::new(
            "memory",
            "per-worker rss",
            "thread",
            w,
            Some("growth of the coordinator".into()),
            "KiB",
            &[per_thread],
        ));
    }
    if let Some(m) = report.find("worker pss", "process", w, None).cloned() {
        report.notes.push(format!(
            "a worker process adds {:.0} KiB (PSS, median of {workers}); see per-worker rss \
             for a thread",
            m.stats.median
        ));
    }
    Ok(())
}
