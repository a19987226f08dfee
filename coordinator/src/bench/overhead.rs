//! The overhead suites: pool start-up, one-task latency, no-op throughput, payload cost,
//! the machine's floor, and the task duration at which a process pool breaks even.

use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use workpool::codec::{self, Envelope};
use workpool::protocol::Job;
use workpool::protocol::{ToWorker, ToWorkerRef};
use workpool::workload::{Io, IoInput, Noop, NoopInput};

use super::load::Load;
use super::model::{Histogram, Measurement, Report};
use super::{ms_since, stats, Bench};
use workpool::pool::{BackendKind, Chunk, EchoPeer, Pool};

const POOLED: [BackendKind; 2] = [BackendKind::Process, BackendKind::Thread];

pub(super) fn noop(payload: usize) -> NoopInput {
    NoopInput {
        payload: vec![0xA5; payload],
        fault: None,
    }
}

fn push(report: &mut Report, m: Option<Measurement>) {
    report.add(m);
}

/// Pool ready (spawned and handshaken, every worker answered) and shutdown, per backend
/// across the worker sweep; and the pool start-up of a fresh `coordinator run`, the
/// figure one command line pays (the program's own start comes before it).
pub fn startup(bench: &Bench, report: &mut Report) -> Result<()> {
    for backend in POOLED {
        for &workers in &bench.sweep {
            let first = bench.repeat(|| first_pool_start(bench, backend, workers))?;
            push(
                report,
                Measurement::new(
                    "startup",
                    FIRST_POOL,
                    backend.as_str(),
                    Some(workers),
                    None,
                    "ms",
                    &first,
                ),
            );
            let mut shutdowns = Vec::new();
            let ready = bench.repeat(|| {
                let t = Instant::now();
                let pool = bench.pool(backend, workers, Chunk::Auto, None, Noop)?;
                let ready = ms_since(t);
                shutdowns.push(pool.shutdown().as_secs_f64() * 1000.0);
                Ok(ready)
            })?;
            let shutdowns = &shutdowns[shutdowns.len() - ready.len()..];
            let rt = backend.as_str();
            push(
                report,
                Measurement::new(
                    "startup",
                    "pool ready",
                    rt,
                    Some(workers),
                    None,
                    "ms",
                    &ready,
                ),
            );
            push(
                report,
                Measurement::new(
                    "startup",
                    "shutdown",
                    rt,
                    Some(workers),
                    None,
                    "ms",
                    shutdowns,
                ),
            );
        }
    }
    Ok(())
}

/// The case of a program's first pool: `run`'s own `pool_start_ms`.
pub const FIRST_POOL: &str = "pool ready, first of a program";

/// The `pool_start_ms` of `coordinator run noop` with `workers` tasks and workers, run as
/// a program of its own.
fn first_pool_start(bench: &Bench, backend: BackendKind, workers: usize) -> Result<f64> {
    let n = workers.to_string();
    let mut command = bench.run_command("noop")?;
    command
        .args(["--count", &n, "-w", &n, "--backend", backend.as_str()])
        .args(["--format", "jsonl"])
        .stdout(std::process::Stdio::piped());
    let output = command.output().context("cannot run `coordinator run`")?;
    let summary = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .and_then(|json| json["summary"]["pool_start_ms"].as_f64());
    match summary {
        Some(ms) if output.status.success() => Ok(ms),
        _ => Err(anyhow!(
            "`coordinator run noop -w {n} --backend {}` failed ({}): {}",
            backend.as_str(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Samples of one no-op at a time on a warm one-worker pool, in microseconds.
pub(super) fn round_trips(
    pool: &mut Pool<Noop>,
    samples: usize,
    payload: usize,
) -> Result<Vec<f64>> {
    let input = noop(payload);
    for _ in 0..samples.min(100) {
        pool.map(std::iter::once(input.clone())).for_each(drop);
    }
    let mut values = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let record = pool
            .map(std::iter::once(input.clone()))
            .next()
            .ok_or_else(|| anyhow!("no outcome"))?;
        values.push(t.elapsed().as_secs_f64() * 1e6);
        record.result.map_err(|e| anyhow!("no-op failed: {e}"))?;
    }
    Ok(values)
}

fn latency_samples(bench: &Bench) -> usize {
    if bench.quick {
        500
    } else {
        5000
    }
}

/// One no-op at a time on a warm pool: median, p95, p99, max, and histograms on one axis;
/// then, with `--load`, the same again while CPU hogs spin (fewer samples: each takes
/// longer, and the median is what a busy machine changes).
pub fn latency(bench: &Bench, report: &mut Report) -> Result<()> {
    let mut samples = Vec::new();
    for backend in POOLED {
        let values = latency_of(bench, backend, latency_samples(bench))?;
        push(report, latency_measurement(backend, None, &values));
        samples.push((backend.as_str(), values));
    }
    report.histograms.extend(histograms(&samples));
    if let Some(hogs) = bench.load {
        let _load = Load::start(hogs)?;
        for backend in POOLED {
            let values = latency_of(bench, backend, latency_samples(bench) / 5)?;
            push(
                report,
                latency_measurement(backend, Some(Load::label(hogs)), &values),
            );
        }
    }
    Ok(())
}

fn latency_of(bench: &Bench, backend: BackendKind, samples: usize) -> Result<Vec<f64>> {
    let mut pool = bench.one_at_a_time(backend, Noop)?;
    let values = round_trips(&mut pool, samples, 0)?;
    pool.shutdown();
    Ok(values)
}

fn latency_measurement(
    backend: BackendKind,
    param: Option<String>,
    values: &[f64],
) -> Option<Measurement> {
    Measurement::new(
        "latency",
        "noop round trip",
        backend.as_str(),
        Some(1),
        param,
        "us",
        values,
    )
}

/// Histograms of each runtime's samples on one axis: from the smallest sample to the
/// largest p99, so that process and thread read on the same scale and a few outliers do
/// not stretch it (they are counted as clipped).
fn histograms(samples: &[(&str, Vec<f64>)]) -> Vec<(String, Histogram)> {
    let summaries: Vec<_> = samples
        .iter()
        .filter_map(|(rt, values)| Some((*rt, values, stats::Summary::of(values)?)))
        .collect();
    let lo = summaries
        .iter()
        .map(|s| s.2.min)
        .fold(f64::INFINITY, f64::min);
    let hi = summaries.iter().map(|s| s.2.p99).fold(0.0, f64::max);
    summaries
        .into_iter()
        .map(|(rt, values, summary)| {
            let (buckets, clipped) = stats::log_histogram(values, lo, hi, 40);
            let histogram = Histogram {
                buckets,
                clipped,
                max: summary.max,
                median: summary.median,
                p99: summary.p99,
            };
            (rt.to_string(), histogram)
        })
        .collect()
}

/// No-op tasks per second with 2 workers, per backend, across batch sizes and pipeline
/// depths.
pub fn throughput(bench: &Bench, report: &mut Report) -> Result<()> {
    let workers = 2;
    // `None` is the depth the pool picks for itself, what a user gets without --inflight.
    let depths: &[Option<usize>] = if bench.quick {
        &[Some(1), Some(4), None]
    } else {
        &[Some(1), Some(2), Some(4), None]
    };
    for backend in POOLED {
        let mut configs: Vec<(Chunk, Option<usize>)> = Vec::new();
        for chunk in [Chunk::Fixed(1), Chunk::Fixed(16), Chunk::Fixed(256)] {
            configs.extend(depths.iter().map(|&d| (chunk, d)));
        }
        configs.push((Chunk::Auto, None));
        for (chunk, inflight) in configs {
            let tasks: u64 = match (chunk, bench.quick) {
                (Chunk::Fixed(1), true) => 5_000,
                (Chunk::Fixed(1), false) => 20_000,
                (_, true) => 50_000,
                (_, false) => 300_000,
            };
            let mut pool = bench.pool(backend, workers, chunk, inflight, Noop)?;
            let values = noops_per_second(bench, &mut pool, tasks)?;
            pool.shutdown();
            let param = match (chunk, inflight) {
                (Chunk::Auto, _) => "chunk=auto".to_string(),
                (Chunk::Fixed(n), Some(d)) => format!("chunk={n} inflight={d}"),
                (Chunk::Fixed(n), None) => format!("chunk={n}"),
            };
            push(
                report,
                Measurement::new(
                    "throughput",
                    "noop throughput",
                    backend.as_str(),
                    Some(workers),
                    Some(param),
                    "tasks/s",
                    &values,
                ),
            );
        }
    }
    super::output_rate::output_rates(bench, report)
}

/// No-ops per second through `pool`, `tasks` at a time, over the bench's runs.
pub(super) fn noops_per_second(
    bench: &Bench,
    pool: &mut Pool<Noop>,
    tasks: u64,
) -> Result<Vec<f64>> {
    bench.repeat(|| {
        let t = Instant::now();
        let done = pool.map((0..tasks).map(|_| noop(0))).count() as f64;
        Ok(done / t.elapsed().as_secs_f64())
    })
}

/// The payload sizes measured; Python's peers echo the same, where the size is one of
/// theirs (1 KiB, 64 KiB, 1 MiB, 16 MiB).
pub const PAYLOAD_SIZES: [usize; 6] = [1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 16 << 20];

/// Round trips measured for a payload of `size` bytes: about 64 MiB moved in all, within
/// bounds (`--quick`: about 16 MiB, 5 to 20).
pub fn payload_samples(quick: bool, size: usize) -> usize {
    if quick {
        ((16 << 20) / size).clamp(5, 20)
    } else {
        ((64 << 20) / size).clamp(20, 2000)
    }
}

/// Payloads of 1 KiB to 16 MiB: encode and decode alone, in this process, against the
/// whole round trip through a worker process (and a thread, which needs no encoding).
pub fn payload(bench: &Bench, report: &mut Report) -> Result<()> {
    for size in PAYLOAD_SIZES {
        let param = Some(format!("{} KiB", size >> 10));
        let samples = payload_samples(bench.quick, size);
        let task = Job {
            index: 0,
            attempt: 1,
            input: noop(size),
        };
        let mut codec_us = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            // Both directions, as a round trip does: the task out, its echo back.
            let frame = codec::encode(&ToWorkerRef::Tasks(std::slice::from_ref(&task)))?;
            let decoded: ToWorker<NoopInput> = codec::decode(&frame)?;
            let back = codec::encode(&decoded)?;
            let _: ToWorker<NoopInput> = codec::decode(&back)?;
            codec_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        push(
            report,
            Measurement::new(
                "payload",
                "encode+decode both ways",
                "in-process",
                None,
                param.clone(),
                "us",
                &codec_us,
            ),
        );
        for backend in POOLED {
            let mut pool = bench.one_at_a_time(backend, Noop)?;
            let values = round_trips(&mut pool, samples, size)?;
            pool.shutdown();
            push(
                report,
                Measurement::new(
                    "payload",
                    "round trip",
                    backend.as_str(),
                    Some(1),
                    param.clone(),
                    "us",
                    &values,
                ),
            );
        }
    }
    Ok(())
}

/// The machine's floor: a bare ipc-channel echo between two processes (no pool logic)
/// and a bare channel echo between two threads; then the copy every payload pays.
pub fn floor(bench: &Bench, report: &mut Report) -> Result<()> {
    echo_floor(bench, report)?;
    copy_floor(bench, report);
    Ok(())
}

/// The bytes [`copy_floor`] copies: the size of a mid-sized payload, where the slow case
/// it looks for shows (glibc copies far bigger blocks another way).
pub const COPY_BYTES: usize = 64 << 10;

/// The case [`copy_floor`] reports, named by [`COPY_BYTES`].
pub const COPY_CASE: &str = "copy 64 KiB";

/// Where [`copy_floor`] puts the destination: this many bytes past the source, counted
/// within a 4 KiB page. 16 is where two heap buffers of a whole number of pages land
/// one after the other (the allocator's header between them); 0 is the control.
pub const COPY_OFFSETS: [usize; 2] = [16, 0];

/// How [`copy_floor`] names an offset of [`COPY_OFFSETS`] (the measurement's parameter).
pub fn copy_param(offset: usize) -> String {
    format!("+{offset} B")
}

/// One copy of [`COPY_BYTES`] with the destination at each of [`COPY_OFFSETS`] past the
/// source. On some AMD CPUs, glibc (2.36 here) copies blocks of this size with
/// `rep movsb`, which runs many times slower when the destination lies a few bytes past
/// the source within a page: a payload's clone, or its copy into a frame, can take
/// twenty times as long as the same copy a few bytes further on.
fn copy_floor(bench: &Bench, report: &mut Report) {
    const PAGE: usize = 4096;
    let samples = latency_samples(bench);
    // Both buffers start on a page of their own, so the offset alone sets the distance.
    let source = vec![0xA5u8; COPY_BYTES + 2 * PAGE];
    let mut target = vec![0u8; COPY_BYTES + 2 * PAGE];
    let to_page = |address: usize| (PAGE - address % PAGE) % PAGE;
    let source_start = to_page(source.as_ptr().addr());
    let target_start = to_page(target.as_ptr().addr());
    for offset in COPY_OFFSETS {
        let from = &source[source_start..source_start + COPY_BYTES];
        let to = &mut target[target_start + offset..target_start + offset + COPY_BYTES];
        let mut times = Vec::with_capacity(samples);
        for i in 0..samples + 100 {
            let t = Instant::now();
            to.copy_from_slice(std::hint::black_box(from));
            std::hint::black_box(&mut *to);
            if i >= 100 {
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        push(
            report,
            Measurement::new(
                "floor",
                COPY_CASE,
                "floor-memcpy",
                None,
                Some(copy_param(offset)),
                "us",
                &times,
            ),
        );
    }
}

/// A bare ipc-channel echo between two processes and a bare channel echo between two
/// threads.
fn echo_floor(bench: &Bench, report: &mut Report) -> Result<()> {
    let samples = latency_samples(bench);
    let peer = EchoPeer::start(&bench.bin)?;
    // The size of a one-task no-op batch frame, so the floor moves the same bytes.
    let frame = codec::encode(&ToWorkerRef::Tasks(&[Job {
        index: 1,
        attempt: 1,
        input: noop(0),
    }]))?;
    let envelope = Envelope::Inline(frame.clone());
    let mut ipc = Vec::with_capacity(samples);
    for i in 0..samples + 100 {
        let t = Instant::now();
        peer.round_trip(&envelope).map_err(|e| anyhow!(e))?;
        if i >= 100 {
            ipc.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(peer);
    push(
        report,
        Measurement::new(
            "floor",
            "echo round trip",
            "floor-ipc",
            None,
            None,
            "us",
            &ipc,
        ),
    );

    let (to_thread, inbox) = flume::bounded::<Vec<u8>>(1);
    let (to_main, replies) = flume::bounded::<Vec<u8>>(1);
    let echo = std::thread::spawn(move || {
        for message in inbox {
            if to_main.send(message).is_err() {
                break;
            }
        }
    });
    let mut threads = Vec::with_capacity(samples);
    for i in 0..samples + 100 {
        let t = Instant::now();
        to_thread.send(frame.to_vec())?;
        replies.recv()?;
        if i >= 100 {
            threads.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(to_thread);
    let _ = echo.join();
    push(
        report,
        Measurement::new(
            "floor",
            "echo round trip",
            "floor-thread",
            None,
            None,
            "us",
            &threads,
        ),
    );
    Ok(())
}

/// The task duration at which the process backend's overhead falls to 10% and 1% of the
/// work, from the measured start-up and per-task costs, checked with real runs.
pub fn break_even(bench: &Bench, report: &mut Report) -> Result<()> {
    const TASKS: u64 = 100;
    let t = Instant::now();
    let mut pool = bench.one_at_a_time(BackendKind::Process, Noop)?;
    let start_ms = ms_since(t);
    let per_task_us = stats::Summary::of(&round_trips(&mut pool, latency_samples(bench) / 5, 0)?)
        .map_or(0.0, |s| s.median);
    pool.shutdown();
    // A batch of n tasks of length d on one worker costs start + n * per_task on top of
    // n * d; overhead / work = share  =>  d = (start / n + per_task) / share.
    for (share, label) in [(0.10, "10%"), (0.01, "1%")] {
        let d_us = (start_ms * 1000.0 / TASKS as f64 + per_task_us) / share;
        let d_ms = (d_us / 1000.0).ceil().max(1.0) as u64;
        let param = Some(format!("overhead {label}"));
        push(
            report,
            Measurement::new(
                "break-even",
                "task duration (computed)",
                "process",
                Some(1),
                param.clone(),
                "ms",
                &[d_us / 1000.0],
            ),
        );
        // Check: a cold pool running TASKS sleeps of d_ms, overhead measured against the
        // run time the worker itself reported.
        let checked = bench.repeat(|| {
            let t = Instant::now();
            let mut pool = bench.one_at_a_time(BackendKind::Process, Io)?;
            let work_ms: f64 = pool
                .map((0..TASKS).map(|_| IoInput { ms: d_ms }))
                .map(|r| r.elapsed_ms)
                .sum();
            let wall = ms_since(t);
            pool.shutdown();
            Ok((wall - work_ms) / work_ms * 100.0)
        })?;
        push(
            report,
            Measurement::new(
                "break-even",
                "measured overhead at that duration",
                "process",
                Some(1),
                Some(format!("{TASKS} x {d_ms} ms, target {label}")),
                "%",
                &checked,
            ),
        );
    }
    Ok(())
}

/// Ratios taken within this run: process against thread, and against the floor.
pub fn add_ratios(report: &mut Report) {
    let median = |r: &Report, case: &str, rt: &str, w: Option<usize>, p: Option<&str>| {
        r.find(case, rt, w, p).map(|m| m.stats.median)
    };
    let floor_ipc = median(report, "echo round trip", "floor-ipc", None, None);
    let floor_thread = median(report, "echo round trip", "floor-thread", None, None);
    let snapshot = report.clone();
    for m in &mut report.measurements {
        let other = match m.runtime.as_str() {
            "process" => "thread",
            "thread" => "process",
            _ => continue,
        };
        if let Some(o) = median(&snapshot, &m.case, other, m.workers, m.param.as_deref()) {
            if m.runtime == "process" && o > 0.0 {
                m.ratios.insert("process/thread".into(), m.stats.median / o);
            }
        }
        let floor = if m.runtime == "process" {
            floor_ipc
        } else {
            floor_thread
        };
        // Against the idle floor only what was measured idle.
        let idle_round_trip = m.case == "noop round trip" && m.param.is_none();
        if let (Some(f), true) = (floor, idle_round_trip) {
            if f > 0.0 {
                m.ratios.insert("x floor".into(), m.stats.median / f);
            }
        }
    }
}
