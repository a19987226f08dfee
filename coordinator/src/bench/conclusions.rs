//! What a run's measurements say, in a few plain sentences. Every figure in them is read
//! from the measurements; where the run contradicts what is usually true, the sentence
//! says what was seen instead. A pure function, so tests can feed it measurements.

use super::model::Measurement;
use super::overhead::{copy_param, COPY_BYTES, COPY_CASE, COPY_OFFSETS};
use super::units::{compare, factor_text, format};

/// Below this speedup, a parallel run is reported as "no speedup".
const NO_SPEEDUP: f64 = 1.3;

/// The plain-words summary of `measurements`, taken on a machine of `logical_cores`.
pub fn of(measurements: &[Measurement], logical_cores: usize) -> Vec<String> {
    let find = Find(measurements);
    [
        startup(&find),
        round_trip(&find),
        batching(&find),
        break_even(&find),
        scaling(&find, "cpu", "CPU-bound work", logical_cores),
        scaling(&find, "io", "Waiting (io)", logical_cores),
        memory(&find),
        copies(&find),
        python(&find),
        broker(&find),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Looks measurements up.
struct Find<'a>(&'a [Measurement]);

impl<'a> Find<'a> {
    fn get(
        &self,
        suite: &str,
        case: &str,
        runtime: &str,
        workers: Option<usize>,
        param: Option<&str>,
    ) -> Option<&'a Measurement> {
        self.0
            .iter()
            .find(|m| m.suite == suite && m.is(case, runtime, workers, param))
    }

    fn median(
        &self,
        suite: &str,
        case: &str,
        runtime: &str,
        workers: Option<usize>,
        param: Option<&str>,
    ) -> Option<f64> {
        self.get(suite, case, runtime, workers, param)
            .map(|m| m.stats.median)
    }
}

/// Start-up of the largest pool measured on both backends.
fn startup(find: &Find) -> Option<String> {
    let (workers, process, thread) = find
        .0
        .iter()
        .filter(|m| m.suite == "startup" && m.case == "pool ready" && m.runtime == "process")
        .filter_map(|p| {
            let t = find.median("startup", "pool ready", "thread", p.workers, None)?;
            Some((p.workers?, p.stats.median, t))
        })
        .max_by_key(|(w, _, _)| *w)?;
    let (p, t) = (format(process, "ms"), format(thread, "ms"));
    Some(if process > thread {
        format!(
            "A pool of {workers} worker processes is ready in {p} (threads: {t}), {} more: \
             start a pool once and give it many batches.",
            factor_text(process / thread)
        )
    } else {
        format!(
            "A pool of {workers} worker processes was ready in {p}, no slower than threads \
             ({t}) on this run: unusual, the thread measurement was probably disturbed."
        )
    })
}

/// One no-op's round trip on a warm pool, against the bare echo of the machine.
fn round_trip(find: &Find) -> Option<String> {
    let process = find.median("latency", "noop round trip", "process", Some(1), None)?;
    let thread = find.median("latency", "noop round trip", "thread", Some(1), None)?;
    let (p, t) = (format(process, "us"), format(thread, "us"));
    let mut sentence = if process > thread {
        format!("A task's round trip costs {p} on a worker process and {t} on a thread")
    } else {
        format!(
            "A task's round trip took {p} on a worker process, no more than on a thread \
             ({t}), on this run: unusual, the machine was probably busy while threads were \
             measured"
        )
    };
    if let Some(floor) = find.median("floor", "echo round trip", "floor-ipc", None, None) {
        let f = format(floor, "us");
        if process > floor {
            sentence += &format!(
                "; a bare ipc echo between two processes takes {f}, so the pool adds {}",
                format(process - floor, "us")
            );
        } else {
            sentence += &format!("; that beats a bare ipc echo between two processes ({f})");
        }
    }
    Some(sentence + ".")
}

/// The work per task below which batching matters, and what batching gained here.
fn batching(find: &Find) -> Option<String> {
    let per_task = find.median("latency", "noop round trip", "process", Some(1), None);
    let one = find.median(
        "throughput",
        "noop throughput",
        "process",
        Some(2),
        Some("chunk=1 inflight=1"),
    );
    let auto = find.median(
        "throughput",
        "noop throughput",
        "process",
        Some(2),
        Some("chunk=auto"),
    );
    let gain = match (one, auto) {
        (Some(one), Some(auto)) if auto > one => Some(format!(
            "here `--chunk auto` moved {} against {} one per message ({} more)",
            format(auto, "tasks/s"),
            format(one, "tasks/s"),
            factor_text(auto / one)
        )),
        (Some(one), Some(auto)) => Some(format!(
            "yet on this run `--chunk auto` ({}) did not beat one task per message ({})",
            format(auto, "tasks/s"),
            format(one, "tasks/s")
        )),
        _ => None,
    };
    match (per_task, gain) {
        (Some(per_task), gain) => Some(format!(
            "Below about {} of work per task, sending tasks one by one to processes spends \
             over 10% on round trips: batch them (`--chunk auto` does){}.",
            format(per_task * 10.0, "us"),
            gain.map_or(String::new(), |g| format!("; {g}"))
        )),
        (None, Some(gain)) => Some(format!("Batching tasks matters: {gain}.")),
        (None, None) => None,
    }
}

/// The task length at which a fresh process pool's overhead is 10%, and the check.
fn break_even(find: &Find) -> Option<String> {
    let computed = find.median(
        "break-even",
        "task duration (computed)",
        "process",
        Some(1),
        Some("overhead 10%"),
    )?;
    let check = find.0.iter().find(|m| {
        m.suite == "break-even"
            && m.case == "measured overhead at that duration"
            && m.param
                .as_deref()
                .is_some_and(|p| p.ends_with("target 10%"))
    });
    let mut sentence = format!(
        "Counting start-up, 100 tasks on a fresh process pool need about {} of work each \
         for the overhead to stay under 10%",
        format(computed, "ms")
    );
    if let Some(check) = check {
        let measured = check.stats.median;
        let verdict = if measured <= 10.0 {
            "as computed"
        } else {
            "more than computed"
        };
        sentence += &format!(
            " (checked with real runs: {:.1}% overhead, {verdict})",
            measured
        );
    }
    Some(sentence + ".")
}

/// Warm speedup over sequential of the scaling workload `name`, at the most workers.
fn scaling(find: &Find, name: &str, what: &str, cores: usize) -> Option<String> {
    let speedup = |runtime: &str| {
        find.0
            .iter()
            .filter(|m| {
                m.suite == "scaling"
                    && m.runtime == runtime
                    && m.param.as_deref() == Some("warm")
                    && m.case.split(' ').next() == Some(name)
            })
            .filter_map(|m| Some((m.workers?, *m.ratios.get("speedup")?)))
            .max_by_key(|(w, _)| *w)
    };
    let (workers, thread) = speedup("thread")?;
    let (_, process) = speedup("process")?;
    // Two decimals: a speedup just under the threshold must not round up to it.
    let (t, p) = (format!("{thread:.2}x"), format!("{process:.2}x"));
    let cores_note = if name == "cpu" {
        format!(
            " ({cores} logical cores: at most {}x is possible)",
            workers.min(cores)
        )
    } else {
        String::new()
    };
    Some(if thread.max(process) < NO_SPEEDUP {
        let why = if name == "cpu" {
            format!(
                ": this run had about one core's worth of CPU to itself, of {cores} logical \
                 cores"
            )
        } else {
            ": something held the workers back (a busy machine?)".to_string()
        };
        format!(
            "{what} did not reach {NO_SPEEDUP}x on this run: {t} on {workers} threads, {p} on \
             {workers} processes{why}."
        )
    } else {
        format!(
            "{what} ran {t} as fast as sequential on {workers} threads and {p} on {workers} \
             processes{cores_note}."
        )
    })
}

/// What a worker process costs in memory, against a thread.
fn memory(find: &Find) -> Option<String> {
    let process = find
        .0
        .iter()
        .find(|m| m.suite == "memory" && m.case == "worker pss" && m.runtime == "process")?;
    let thread = find
        .0
        .iter()
        .find(|m| m.suite == "memory" && m.case == "per-worker rss" && m.runtime == "thread");
    let p = format(process.stats.median, "KiB");
    Some(match thread {
        Some(thread) if thread.stats.median < process.stats.median => format!(
            "A worker process costs {p} of memory (PSS), a thread {} (growth of this process).",
            format(thread.stats.median, "KiB")
        ),
        Some(thread) => format!(
            "A worker process costs {p} of memory (PSS), and a thread no less on this run ({}, \
             growth of this process: other allocations may have counted).",
            format(thread.stats.median, "KiB")
        ),
        None => format!("A worker process costs {p} of memory (PSS)."),
    })
}

/// Above this ratio, a copy's placement is reported as making it slow.
const SLOW_COPY: f64 = 3.0;

/// The glibc setting that keeps `memcpy` off `rep movsb` for every size a task's payload
/// may have (the thresholds are in bytes; this one is above any copy `rep movsb` takes).
pub const REP_MOVSB_OFF: &str = "GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1073741824";

/// Whether the same copy runs much slower with its destination a few bytes past its
/// source within a page, as consecutive heap buffers lie.
fn copies(find: &Find) -> Option<String> {
    let [near, aligned] = COPY_OFFSETS.map(|offset| {
        find.median(
            "floor",
            COPY_CASE,
            "floor-memcpy",
            None,
            Some(&copy_param(offset)),
        )
    });
    let (near, aligned) = (near?, aligned?);
    let (n, a) = (format(near, "us"), format(aligned, "us"));
    let (kib, past) = (COPY_BYTES >> 10, COPY_OFFSETS[0]);
    Some(if near > SLOW_COPY * aligned {
        format!(
            "Copying {kib} KiB takes {n} when the destination lies {past} bytes past the source \
             within a page, as two heap buffers do one after the other, and {a} page-aligned: \
             {} slower, and every payload copied that way pays it. glibc copies such blocks \
             with `rep movsb`, which some AMD CPUs run slowly at these placements; starting \
             the coordinator with `{REP_MOVSB_OFF}` (its workers inherit it) copies them \
             another way.",
            factor_text(near / aligned)
        )
    } else {
        format!(
            "Copying {kib} KiB takes {a}, and about as long wherever the buffers lie ({n} with \
             the destination {past} bytes past the source within a page)."
        )
    })
}

/// The round trip against Python's executors, when they ran.
fn python(find: &Find) -> Option<String> {
    let parts: Vec<String> = ["process", "thread"]
        .iter()
        .filter_map(|rt| find.get("latency", "noop round trip", rt, Some(1), None))
        .filter_map(|m| {
            let better = m.ratios.get("x python")?;
            let reference = if m.runtime == "process" {
                "Python's process pool (fork)"
            } else {
                "Python's thread pool"
            };
            Some(format!(
                "{} on {}s",
                compare(*better, m.unit, reference),
                m.runtime
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "Against Python, a task's round trip is {}.",
            parts.join("; ")
        )
    })
}

/// The network hop through Redis, when the broker suite ran.
fn broker(find: &Find) -> Option<String> {
    let redis = find.get("broker", "noop round trip", "redis", Some(1), None)?;
    let process = find.median("broker", "noop round trip", "process", Some(1), None)?;
    Some(format!(
        "Through Redis a task's round trip costs {} ({} on a local worker process): give \
         broker workers tasks of at least {} to keep that hop under 10%.",
        format(redis.stats.median, "us"),
        format(process, "us"),
        format(redis.stats.median * 10.0, "us")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(
        suite: &'static str,
        case: &str,
        rt: &str,
        w: Option<usize>,
        p: Option<&str>,
        unit: &'static str,
        v: f64,
    ) -> Measurement {
        Measurement::new(suite, case, rt, w, p.map(String::from), unit, &[v]).expect("one value")
    }

    fn with_speedup(mut m: Measurement, speedup: f64) -> Measurement {
        m.ratios.insert("speedup".into(), speedup);
        m
    }

    /// A run as a 2-core machine usually measures it.
    fn typical() -> Vec<Measurement> {
        vec![
            m(
                "startup",
                "pool ready",
                "process",
                Some(8),
                None,
                "ms",
                10.0,
            ),
            m("startup", "pool ready", "thread", Some(8), None, "ms", 0.6),
            m("startup", "pool ready", "process", Some(1), None, "ms", 1.7),
            m(
                "startup",
                "pool ready",
                "thread",
                Some(1),
                None,
                "ms",
                0.015,
            ),
            m(
                "latency",
                "noop round trip",
                "process",
                Some(1),
                None,
                "us",
                9.0,
            ),
            m(
                "latency",
                "noop round trip",
                "thread",
                Some(1),
                None,
                "us",
                2.0,
            ),
            m(
                "floor",
                "echo round trip",
                "floor-ipc",
                None,
                None,
                "us",
                7.0,
            ),
            m(
                "throughput",
                "noop throughput",
                "process",
                Some(2),
                Some("chunk=1 inflight=1"),
                "tasks/s",
                80_000.0,
            ),
            m(
                "throughput",
                "noop throughput",
                "process",
                Some(2),
                Some("chunk=auto"),
                "tasks/s",
                2_400_000.0,
            ),
            with_speedup(
                m(
                    "scaling",
                    "cpu (4 tasks)",
                    "thread",
                    Some(4),
                    Some("warm"),
                    "ms",
                    150.0,
                ),
                1.9,
            ),
            with_speedup(
                m(
                    "scaling",
                    "cpu (4 tasks)",
                    "process",
                    Some(4),
                    Some("warm"),
                    "ms",
                    155.0,
                ),
                1.84,
            ),
            with_speedup(
                m(
                    "scaling",
                    "cpu (4 tasks)",
                    "process",
                    Some(2),
                    Some("warm"),
                    "ms",
                    160.0,
                ),
                1.8,
            ),
        ]
    }

    fn find<'a>(sentences: &'a [String], start: &str) -> &'a str {
        sentences
            .iter()
            .find(|s| s.starts_with(start))
            .unwrap_or_else(|| panic!("no sentence starting {start:?} in {sentences:#?}"))
    }

    #[test]
    fn sentences_carry_the_measured_figures() {
        let said = of(&typical(), 2);
        assert_eq!(
            find(&said, "A pool of"),
            "A pool of 8 worker processes is ready in 10.0 ms (threads: 600 µs), 17x more: \
             start a pool once and give it many batches."
        );
        assert_eq!(
            find(&said, "A task's round trip"),
            "A task's round trip costs 9.00 µs on a worker process and 2.00 µs on a thread; \
             a bare ipc echo between two processes takes 7.00 µs, so the pool adds 2.00 µs."
        );
        assert_eq!(
            find(&said, "Below about"),
            "Below about 90.0 µs of work per task, sending tasks one by one to processes \
             spends over 10% on round trips: batch them (`--chunk auto` does); here \
             `--chunk auto` moved 2.40 M tasks/s against 80.0 k tasks/s one per message \
             (30x more)."
        );
        assert_eq!(
            find(&said, "CPU-bound"),
            "CPU-bound work ran 1.90x as fast as sequential on 4 threads and 1.84x on 4 \
             processes (2 logical cores: at most 2x is possible)."
        );
        // Nothing is said about suites that did not run.
        assert!(!said
            .iter()
            .any(|s| s.contains("memory") || s.contains("Redis")));
    }

    #[test]
    fn a_changed_measurement_changes_the_sentence() {
        let mut run = typical();
        run[4].stats.median = 12.5;
        let said = of(&run, 2);
        assert!(find(&said, "A task's round trip").contains("costs 12.5 µs on a worker"));
        assert!(find(&said, "Below about").starts_with("Below about 125 µs of work"));
    }

    #[test]
    fn a_run_that_contradicts_the_rule_says_so() {
        let mut run = typical();
        // Processes started faster than threads, and the round trip too.
        run[0].stats.median = 0.5;
        run[4].stats.median = 1.5;
        // No CPU speedup: the machine gave one core.
        for s in &mut run[9..] {
            s.ratios.insert("speedup".into(), 1.02);
        }
        // Batching did not help.
        run[8].stats.median = 70_000.0;
        let said = of(&run, 2);
        assert!(find(&said, "A pool of").contains("no slower than threads (600 µs) on this run"));
        assert!(find(&said, "A task's round trip").contains("no more than on a thread (2.00 µs)"));
        assert!(find(&said, "A task's round trip").contains("beats a bare ipc echo"));
        assert!(find(&said, "Below about").contains("did not beat one task per message"));
        assert_eq!(
            find(&said, "CPU-bound"),
            "CPU-bound work did not reach 1.3x on this run: 1.02x on 4 threads, 1.02x on 4 \
             processes: this run had about one core's worth of CPU to itself, of 2 logical \
             cores."
        );
    }

    #[test]
    fn a_copy_slowed_by_its_placement_names_the_setting_that_avoids_it() {
        let copy = |offset, us| {
            m(
                "floor",
                COPY_CASE,
                "floor-memcpy",
                None,
                Some(&copy_param(offset)),
                "us",
                us,
            )
        };
        let said = of(&[copy(16, 22.0), copy(0, 1.3)], 2);
        assert_eq!(
            find(&said, "Copying 64 KiB"),
            format!(
                "Copying 64 KiB takes 22.0 µs when the destination lies 16 bytes past the \
                 source within a page, as two heap buffers do one after the other, and 1.30 µs \
                 page-aligned: 17x slower, and every payload copied that way pays it. glibc \
                 copies such blocks with `rep movsb`, which some AMD CPUs run slowly at these \
                 placements; starting the coordinator with `{REP_MOVSB_OFF}` (its workers \
                 inherit it) copies them another way."
            )
        );
        let said = of(&[copy(16, 1.4), copy(0, 1.3)], 2);
        assert_eq!(
            find(&said, "Copying 64 KiB"),
            "Copying 64 KiB takes 1.30 µs, and about as long wherever the buffers lie (1.40 µs \
             with the destination 16 bytes past the source within a page)."
        );
    }

    #[test]
    fn nothing_measured_nothing_said() {
        assert!(of(&[], 2).is_empty());
    }
}
