//! The breakdown suite: where one no-op's round trip goes, phase by phase, measured on
//! every task with timestamps on the monotonic clock both processes share; then the same
//! with a 1 MiB payload, where copies and wake-ups take over.

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

/// The payload of the second breakdown: big enough to go through shared memory.
const PAYLOAD: usize = 1 << 20;

pub fn breakdown(bench: &Bench, report: &mut Report) -> Result<()> {
    let samples = if bench.quick { 300 } else { 3000 };
    for backend in [BackendKind::Process, BackendKind::Thread] {
        breakdown_of(bench, report, backend, 0, samples)?;
    }
    // A round trip of a MiB takes some 20 times a no-op's: fewer samples say as much.
    let samples = samples / 10;
    for backend in [BackendKind::Process, BackendKind::Thread] {
        breakdown_of(bench, report, backend, PAYLOAD, samples)?;
    }
    Ok(())
}

/// The phases of `samples` traced round trips of a no-op carrying `payload` bytes, on a
/// one-worker pool of `backend`; the payload's size is the measurements' parameter (none
/// for an empty one).
fn breakdown_of(
    bench: &Bench,
    report: &mut Report,
    backend: BackendKind,
    payload: usize,
    samples: usize,
) -> Result<()> {
    let builder = bench
        .builder(backend, 1, Chunk::Fixed(1), Some(1))
        .trace(true);
    let mut pool = super::start(builder, Noop)?;
    let input = NoopInput {
        payload: vec![0xA5; payload],
        fault: None,
    };
    let warmup = (samples / 30).max(10);
    let mut phases = Vec::with_capacity(samples);
    let mut outside = Vec::with_capacity(samples);
    for i in 0..samples + warmup {
        let t = Instant::now();
        let record = pool
            .map(std::iter::once(input.clone()))
            .next()
            .ok_or_else(|| anyhow!("no outcome"))?;
        let round_trip = t.elapsed().as_secs_f64() * 1e6;
        if i >= warmup {
            outside.push(round_trip);
            phases.push(*record.phases.ok_or_else(|| anyhow!("no trace"))?);
        }
    }
    pool.shutdown();
    let rt = backend.as_str();
    let param = (payload > 0).then(|| format!("{} KiB", payload >> 10));
    let mut push = |case: String, values: &[f64]| {
        report.measurements.extend(Measurement::new(
            "breakdown",
            case,
            rt,
            Some(1),
            param.clone(),
            "us",
            values,
        ));
    };
    for (name, read) in PHASES {
        let values: Vec<f64> = phases.iter().map(read).collect();
        push(format!("phase: {name}"), &values);
    }
    let totals: Vec<f64> = phases.iter().map(|p| p.total_us).collect();
    push("sum of phases".into(), &totals);
    push("round trip (timed outside)".into(), &outside);
    Ok(())
}
