//! The broker suite (`bench --broker URL`): what the network hop through Redis costs,
//! next to the process and thread backends measured the same way in the same run. It
//! starts its own `worker --broker` processes on this machine (two, eight threads each),
//! so the broker column is a lower bound on a real multi-host set-up's overhead: the
//! hop is loopback here.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use workpool::workload::{Io, IoInput, Noop};

use super::model::{Measurement, Report};
use super::overhead::noop;
use super::{ms_since, Bench};
use workpool::pool::{BackendKind, Chunk};

const SUITE: &str = "broker";
/// Remote workers started for the suite, and threads in each.
const WORKERS: usize = 2;
const CONCURRENCY: usize = 8;
/// Short, so the reclaim case ends quickly; renewals keep live workers' batches.
const LEASE: &str = "1s";
/// How long the floor's two streams outlive a bench killed while measuring it.
const FLOOR_TTL: Duration = Duration::from_secs(600);
const RUNTIMES: [BackendKind; 3] = [
    BackendKind::Redis,
    BackendKind::Process,
    BackendKind::Thread,
];

/// `worker --broker` processes, killed and reaped when dropped (on every error path too);
/// told this process's pid with --parent, so that they die with it even when it is
/// killed or interrupted and no destructor runs.
struct Workers(Vec<Child>);

impl Workers {
    fn start(bench: &Bench, url: &str, count: usize) -> Result<Workers> {
        let mut workers = Workers(Vec::new());
        for _ in 0..count {
            workers.add(bench, url)?;
        }
        Ok(workers)
    }

    fn add(&mut self, bench: &Bench, url: &str) -> Result<()> {
        let child = Command::new(&bench.bin.path)
            .args(["--concurrency", &CONCURRENCY.to_string(), "--lease", LEASE])
            .args(["--parent", &std::process::id().to_string()])
            // In the environment, not the arguments: a password stays out of `ps`.
            .env("WORKPOOL_BROKER", url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bench.bin.path.display()))?;
        self.0.push(child);
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Slots (or workers) each runtime gets: the broker's bound on queued batches, else as
/// many workers as the broker has threads in all, for a like-for-like comparison.
fn workers_of(backend: BackendKind) -> usize {
    match backend {
        BackendKind::Redis => 64,
        _ => WORKERS * CONCURRENCY,
    }
}

pub fn broker(bench: &Bench, report: &mut Report) -> Result<()> {
    let Some(url) = bench.broker.clone() else {
        bail!("no --broker URL given: the broker column needs a running redis-server");
    };
    let raw = bench.broker_raw.clone().unwrap_or_default();
    let mut workers = Workers::start(bench, &raw, WORKERS)?;
    // The workers are ready once one task has gone through.
    let mut warm = bench.pool(BackendKind::Redis, 64, Chunk::Auto, None, Noop)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while warm.map(std::iter::once(noop(0))).next().is_none() {
        if Instant::now() > deadline {
            bail!("no worker answered through the broker at {url} within 10 s");
        }
    }
    warm.shutdown();

    floor(bench, report, &url)?;
    startup(bench, report)?;
    round_trip(bench, report)?;
    throughput(bench, report)?;
    io_speedup(bench, report)?;
    reclaim(bench, report, &mut workers, &raw)?;
    add_ratios(report);
    Ok(())
}

/// The broker's floor: the same four legs as a task's round trip (an `XADD`, the wake-up
/// of a blocked `XREADGROUP`, an `XADD` back, the wake-up of a blocked `XREAD`) between two
/// threads of this process that do nothing else, in microseconds.
fn floor(bench: &Bench, report: &mut Report, url: &workpool::broker::BrokerUrl) -> Result<()> {
    let samples = if bench.quick { 300 } else { 2000 };
    let prefix = format!("workpool:bench:{}", std::process::id());
    let (ping, pong) = (format!("{prefix}:ping"), format!("{prefix}:pong"));
    let connect = || url.connect(Duration::from_secs(3), Some(Duration::from_secs(10)));
    let mut con = connect()?;
    // Both streams made at once with their TTL, so a bench killed mid-way leaves nothing
    // behind for long (they are deleted at the end otherwise).
    redis::pipe()
        .atomic()
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(&ping)
        .arg("echo")
        .arg("$")
        .arg("MKSTREAM")
        .ignore()
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(&pong)
        .arg("unused")
        .arg("$")
        .arg("MKSTREAM")
        .ignore()
        .cmd("EXPIRE")
        .arg(&ping)
        .arg(FLOOR_TTL.as_secs())
        .ignore()
        .cmd("EXPIRE")
        .arg(&pong)
        .arg(FLOOR_TTL.as_secs())
        .ignore()
        .query::<()>(&mut con)?;
    let mut echo_con = connect()?;
    let (echo_ping, echo_pong) = (ping.clone(), pong.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let echo = std::thread::spawn(move || -> redis::RedisResult<()> {
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let reply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("echo")
                .arg("e")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(2000)
                .arg("STREAMS")
                .arg(&echo_ping)
                .arg(">")
                .query::<redis::Value>(&mut echo_con);
            if reply? == redis::Value::Nil {
                continue;
            }
            add(&mut echo_con, &echo_pong)?;
        }
        Ok(())
    });
    let mut last = "0".to_string();
    let mut values = Vec::with_capacity(samples);
    for i in 0..samples + samples.min(50) {
        let t = Instant::now();
        add(&mut con, &ping)?;
        let reply: redis::Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(2000)
            .arg("STREAMS")
            .arg(&pong)
            .arg(&last)
            .query(&mut con)?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        last = last_id(&reply).ok_or_else(|| anyhow!("the echo thread did not answer"))?;
        if i >= samples.min(50) {
            values.push(us); // After a warm-up, as the other round trips.
        }
    }
    // Stopped by one more entry, which wakes it to see the flag; then the keys go.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    add(&mut con, &ping)?;
    echo.join()
        .map_err(|_| anyhow!("the echo thread panicked"))??;
    redis::cmd("DEL")
        .arg(&ping)
        .arg(&pong)
        .query::<()>(&mut con)?;
    let m = Measurement::new(
        SUITE,
        "echo round trip",
        "floor-redis",
        None,
        None,
        "us",
        &values,
    );
    report.add(m);
    Ok(())
}

/// Appends a one-byte entry to `stream`.
fn add(con: &mut redis::Connection, stream: &str) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("f")
        .arg("x")
        .query(con)
}

/// The id of the last entry of an `XREAD` reply.
fn last_id(reply: &redis::Value) -> Option<String> {
    use redis::Value;
    let Value::Array(streams) = reply else {
        return None;
    };
    let Some(Value::Array(stream)) = streams.first() else {
        return None;
    };
    let Some(Value::Array(entries)) = stream.get(1) else {
        return None;
    };
    let Some(Value::Array(entry)) = entries.last() else {
        return None;
    };
    match entry.first() {
        Some(Value::BulkString(id)) => String::from_utf8(id.clone()).ok(),
        _ => None,
    }
}

/// Pool ready: for the broker, connecting and registering the run (its workers are
/// already running, as on a real cluster); for the others, spawning their workers.
fn startup(bench: &Bench, report: &mut Report) -> Result<()> {
    for backend in RUNTIMES {
        let workers = workers_of(backend);
        let ready = bench.repeat(|| {
            let t = Instant::now();
            let pool = bench.pool(backend, workers, Chunk::Auto, None, Noop)?;
            let ready = ms_since(t);
            pool.shutdown();
            Ok(ready)
        })?;
        let m = Measurement::new(
            SUITE,
            "pool ready",
            backend.as_str(),
            Some(workers),
            None,
            "ms",
            &ready,
        );
        report.add(m);
    }
    Ok(())
}

/// One no-op at a time on a warm pool, in microseconds.
fn round_trip(bench: &Bench, report: &mut Report) -> Result<()> {
    let samples = if bench.quick { 300 } else { 2000 };
    for backend in RUNTIMES {
        let mut pool = bench.one_at_a_time(backend, Noop)?;
        let values = super::overhead::round_trips(&mut pool, samples, 0)?;
        pool.shutdown();
        let m = Measurement::new(
            SUITE,
            "noop round trip",
            backend.as_str(),
            Some(1),
            None,
            "us",
            &values,
        );
        report.add(m);
    }
    Ok(())
}

/// No-ops per second with `--chunk auto` (batches grow to about 2 ms of work).
fn throughput(bench: &Bench, report: &mut Report) -> Result<()> {
    let tasks: u64 = if bench.quick { 50_000 } else { 300_000 };
    for backend in RUNTIMES {
        let workers = match backend {
            BackendKind::Redis => 64,
            // The other backends' best on two cores: one worker per core.
            _ => 2,
        };
        let mut pool = bench.pool(backend, workers, Chunk::Auto, None, Noop)?;
        let values = super::overhead::noops_per_second(bench, &mut pool, tasks)?;
        pool.shutdown();
        let m = Measurement::new(
            SUITE,
            "noop throughput",
            backend.as_str(),
            Some(workers),
            Some("chunk=auto".into()),
            "tasks/s",
            &values,
        );
        report.add(m);
    }
    Ok(())
}

/// 64 sleeps of 100 ms on 16-way parallelism (two workers of eight threads for the
/// broker): speedup over running them one after another (6.4 s, not measured: a sleep
/// takes its time on any backend).
fn io_speedup(bench: &Bench, report: &mut Report) -> Result<()> {
    let (count, ms) = if bench.quick { (32, 50) } else { (64, 100) };
    let serial_ms = (count * ms) as f64;
    let param = format!("{count}x{ms}ms, 2x8");
    for backend in RUNTIMES {
        let workers = workers_of(backend);
        let mut pool = bench.pool(backend, workers, Chunk::Auto, None, Io)?;
        let values = bench.repeat(|| {
            let t = Instant::now();
            let ok = pool
                .map((0..count).map(|_| IoInput { ms }))
                .filter(|r| r.result.is_ok())
                .count();
            if ok != count as usize {
                bail!("{} of {count} io tasks failed", count as usize - ok);
            }
            Ok(serial_ms / ms_since(t))
        })?;
        pool.shutdown();
        let m = Measurement::new(
            SUITE,
            "io speedup",
            backend.as_str(),
            Some(workers),
            Some(param.clone()),
            "x",
            &values,
        );
        report.add(m);
    }
    Ok(())
}

/// A worker SIGKILLed mid-run: from the kill until the run has every outcome, with the
/// suite's lease. Its batches are claimed by the other worker once the lease runs out.
fn reclaim(bench: &Bench, report: &mut Report, workers: &mut Workers, url: &str) -> Result<()> {
    let runs = bench.runs.min(3);
    let mut values = Vec::new();
    for _ in 0..runs {
        let mut pool = bench.pool(BackendKind::Redis, 64, Chunk::Fixed(1), None, Io)?;
        let victim = workers.0.remove(0);
        let mut victim = Workers(vec![victim]);
        let started = Instant::now();
        let mut killed: Option<Instant> = None;
        let mut ok = 0;
        for record in pool.map((0..32).map(|_| IoInput { ms: 200 })) {
            ok += usize::from(record.result.is_ok());
            if killed.is_none() && started.elapsed() > Duration::from_millis(100) {
                drop(victim);
                victim = Workers(Vec::new());
                killed = Some(Instant::now());
            }
        }
        drop(victim);
        pool.shutdown();
        let killed = killed.ok_or_else(|| anyhow!("the run ended before the kill"))?;
        if ok != 32 {
            bail!("{} of 32 tasks failed after a worker was killed", 32 - ok);
        }
        values.push(ms_since(killed));
        workers.add(bench, url)?;
    }
    let m = Measurement::new(
        SUITE,
        "kill to run complete",
        "redis",
        Some(WORKERS),
        Some(format!("lease {LEASE}, 32x200ms")),
        "ms",
        &values,
    );
    report.add(m);
    Ok(())
}

/// The broker against each local backend, case by case, and against its floor.
fn add_ratios(report: &mut Report) {
    let floor = report
        .find("echo round trip", "floor-redis", None, None)
        .map(|m| m.stats.median);
    if let Some(floor) = floor.filter(|f| *f > 0.0) {
        for m in report.measurements.iter_mut() {
            if m.suite == SUITE && m.runtime == "redis" && m.case == "noop round trip" {
                m.ratios.insert("x floor".into(), m.stats.median / floor);
            }
        }
    }
    let snapshot = report.clone();
    for m in report
        .measurements
        .iter_mut()
        .filter(|m| m.suite == SUITE && m.runtime == "redis")
    {
        for other in ["process", "thread"] {
            let found = snapshot.measurements.iter().find(|o| {
                o.suite == SUITE && o.runtime == other && o.case == m.case && o.param == m.param
            });
            if let Some(o) = found.filter(|o| o.stats.median > 0.0) {
                m.ratios
                    .insert(format!("redis/{other}"), m.stats.median / o.stats.median);
            }
        }
    }
}
