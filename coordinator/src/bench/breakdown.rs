//! The breakdown suite: where one no-op's round trip goes, phase by phase, measured on
//! every task with timestamps on the monotonic clock both processes share.

use std::time::Instant;

use anyhow::{anyhow, Result};
use workpool::workload::{Noop, NoopInput};

use super::model::{Measurement, Report};
use super::Bench;
use workpool::pool::{BackendKind, Chunk, Phases};

/// Reads one phase of a traced round trip.
type Phase = fn(&Phases) -> f64;

/// Phase names and how to read them, in the order a task goes through them.
const PHASES: [(&str, Phase); 10] = [
    ("queued", |p| p.queued_us),
    ("encode", |p| p.encode_us),
    ("transfer to runner", |p| p.transfer_to_us),
    ("decode", |p| p.decode_us),
    ("wait in runner", |p| p.worker_wait_us),
    ("run", |p| p.run_us),
    ("encode result + transfer back", |p| p.transfer_back_us),
    ("decode result", |p| p.decode_result_us),
    ("wait in coordinator", |p| p.coordinator_wait_us),
    ("reorder buffer", |p| p.reorder_us),
];

pub fn breakdown(bench: &Bench, report: &mut Report) -> Result<()> {
    let samples = if bench.quick { 300 } else { 3000 };
    for backend in [BackendKind::Process, BackendKind::Thread] {
        let builder = bench
            .builder(backend, 1, Chunk::Fixed(1), Some(1))
            .trace(true);
        let mut pool = super::start(builder, Noop)?;
        let input = NoopInput {
            payload: Vec::new(),
            fault: None,
        };
        let mut phases = Vec::with_capacity(samples);
        let mut outside = Vec::with_capacity(samples);
        for i in 0..samples + 100 {
            let t = Instant::now();
            let record = pool
                .map(std::iter::once(input.clone()))
                .next()
                .ok_or_else(|| anyhow!("no outcome"))?;
            let round_trip = t.elapsed().as_secs_f64() * 1e6;
            if i >= 100 {
                outside.push(round_trip);
                phases.push(*record.phases.ok_or_else(|| anyhow!("no trace"))?);
            }
        }
        pool.shutdown();
        let rt = backend.as_str();
        for (name, read) in PHASES {
            let values: Vec<f64> = phases.iter().map(read).collect();
            report.measurements.extend(Measurement::new(
                "breakdown",
                format!("phase: {name}"),
                rt,
                Some(1),
                None,
                "us",
                &values,
            ));
        }
        let totals: Vec<f64> = phases.iter().map(|p| p.total_us).collect();
        report.measurements.extend(Measurement::new(
            "breakdown",
            "sum of phases",
            rt,
            Some(1),
            None,
            "us",
            &totals,
        ));
        report.measurements.extend(Measurement::new(
            "breakdown",
            "round trip (timed outside)",
            rt,
            Some(1),
            None,
            "us",
            &outside,
        ));
    }
    Ok(())
}
