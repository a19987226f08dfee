//! What the tasks compute and where they ran: every task once, payloads intact, the CPU
//! sum equal to its closed form on every backend, one process per worker.

use serde::Deserialize;
use workpool::codec;
use workpool::protocol::{Job, ToWorkerRef};
use workpool::workload::NoopInput;

use crate::common::{assert_distinct, assert_exit, parse_jsonl, run_jsonl, run_output, stdout};

/// The fields of a `noop` record this test checks; parsing only these keeps 100,000
/// records quick to read in a debug build.
#[derive(Deserialize)]
struct NoopRecord {
    index: u64,
    ok: bool,
    value: Option<NoopValue>,
}

#[derive(Deserialize)]
struct NoopValue {
    payload_bytes: u64,
    payload_intact: bool,
}

#[test]
fn noop_100k_every_index_once_payload_intact() {
    const COUNT: usize = 100_000;
    let out = run_output(&[
        "noop",
        "--count",
        "100000",
        "-w",
        "2",
        "--payload",
        "16",
        "--format",
        "jsonl",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let (records, summary) = text
        .trim_end()
        .rsplit_once('\n')
        .expect("no records before the summary");
    let mut seen = vec![false; COUNT];
    for line in records.lines() {
        let record: NoopRecord = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a noop record ({err}): {line}"));
        let index = record.index as usize;
        assert!(index < COUNT, "index out of range: {line}");
        assert!(!seen[index], "index {index} printed twice");
        seen[index] = true;
        assert!(record.ok, "task failed: {line}");
        let value = record.value.unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.payload_intact, "payload damaged: {line}");
        assert_eq!(value.payload_bytes, 16, "{line}");
    }
    let missing: Vec<usize> = (0..COUNT).filter(|i| !seen[*i]).take(10).collect();
    assert!(
        missing.is_empty(),
        "indices never printed, e.g. {missing:?}"
    );
    let run = parse_jsonl(summary);
    assert_eq!(run.summary["backend"], "process");
    assert_eq!(run.summary_u64("tasks"), COUNT as u64);
    assert_eq!(run.summary_u64("succeeded"), COUNT as u64);
    assert_eq!(run.summary_u64("failed"), 0);
}

/// Payloads of every awkward size come back intact through every backend: empty, shorter
/// than the pattern's 8-byte word, not a multiple of it, and a large one.
#[test]
fn noop_payloads_of_every_size_come_back_intact_on_every_backend() {
    for backend in ["process", "thread", "sequential"] {
        for bytes in [0, 1, 7, 9, 4097, 1_048_579] {
            let size = bytes.to_string();
            let run = run_jsonl(&[
                "noop",
                "--count",
                "3",
                "-w",
                "2",
                "--payload",
                &size,
                "--backend",
                backend,
            ]);
            assert_eq!(run.records.len(), 3, "{backend} {bytes}");
            for record in &run.records {
                let what = format!("{backend}, {bytes} bytes: {record}");
                assert_eq!(record["ok"], true, "{what}");
                assert_eq!(record["value"]["payload_bytes"], bytes, "{what}");
                assert_eq!(record["value"]["payload_intact"], true, "{what}");
            }
        }
    }
}

/// The payload whose one-task batch frame is `frame_len` bytes long.
fn payload_with_task_frame_len(frame_len: usize) -> usize {
    let frame_of = |len: usize| {
        let job = Job {
            index: 0,
            attempt: 1,
            input: NoopInput {
                payload: vec![0; len],
                fault: None,
            },
        };
        codec::encode(&ToWorkerRef::Tasks(&[job]))
            .expect("encode")
            .len()
    };
    (frame_len - 16..frame_len)
        .find(|&len| frame_of(len) == frame_len)
        .expect("a payload of that frame size")
}

/// Around the size from which frames travel in shared memory, and at the largest payload,
/// tasks and their echoes cross the process boundary intact.
#[test]
fn noop_payloads_around_the_shared_memory_threshold_come_back_intact() {
    let threshold = codec::SHARED_MEMORY_THRESHOLD;
    let mut sizes: Vec<usize> = [threshold - 1, threshold, threshold + 1]
        .into_iter()
        .map(payload_with_task_frame_len)
        .collect();
    sizes.extend([0, codec::MAX_PAYLOAD_BYTES]);
    for bytes in sizes {
        let size = bytes.to_string();
        let run = run_jsonl(&[
            "noop",
            "--count",
            "1",
            "-w",
            "1",
            "--payload",
            &size,
            "--backend",
            "process",
        ]);
        assert_eq!(run.records.len(), 1, "{bytes} bytes");
        let record = &run.records[0];
        assert_eq!(record["ok"], true, "{bytes} bytes: {record}");
        assert_eq!(record["value"]["payload_bytes"], bytes, "{record}");
        assert_eq!(record["value"]["payload_intact"], true, "{record}");
    }
}

/// A worker killed while bulk frames are under way is replaced by one that gets its own
/// shared-memory regions: the tasks after it, and the retried one, come back intact.
#[test]
fn bulk_payloads_come_back_intact_after_a_worker_dies_mid_run() {
    let run = run_jsonl(&[
        "noop",
        "--count",
        "12",
        "-w",
        "1",
        "--chunk",
        "1",
        "--inflight",
        "3",
        "--payload",
        "1048576",
        "--fault",
        "kill@4/1,abort@9/1",
        "--retries",
        "1",
    ]);
    assert_eq!(run.indices(), (0..12).collect::<Vec<u64>>());
    for record in &run.records {
        assert_eq!(record["ok"], true, "{record}");
        assert_eq!(record["value"]["payload_bytes"], 1_048_576, "{record}");
        assert_eq!(record["value"]["payload_intact"], true, "{record}");
    }
    let mut pids = run.pids();
    pids.dedup();
    assert!(
        pids.len() >= 3,
        "two workers died, yet the pids were {pids:?}"
    );
}

#[test]
fn each_process_worker_is_its_own_process() {
    let run = run_jsonl(&["io", "--count", "8", "--ms", "300", "-w", "8"]);
    assert_eq!(run.records.len(), 8);
    assert_distinct(&run.pids(), "pids");
    assert_distinct(&run.workers(), "worker ids");
    assert_eq!(run.summary_u64("workers"), 8);
}

/// Sum of `i * i` for `i in 0..n`, mod 2^64: `(n-1) n (2n-1) / 6` exactly in `u128`
/// (ample for the `n` used here), then the low 64 bits.
fn sum_of_squares_mod_2_64(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let n = u128::from(n);
    let product = (n - 1)
        .checked_mul(n)
        .and_then(|p| p.checked_mul(2 * n - 1))
        .expect("n too large for this closed form");
    assert_eq!(product % 6, 0);
    (product / 6) as u64
}

#[test]
fn closed_form_helper_is_right() {
    assert_eq!(sum_of_squares_mod_2_64(1), 0);
    assert_eq!(sum_of_squares_mod_2_64(10), 285);
    assert_eq!(sum_of_squares_mod_2_64(1000), 332_833_500);
    // Past 2^64 the sum wraps, as the worker's wrapping u64 arithmetic does.
    let exact = (0..5_000_000u128).map(|i| i * i).sum::<u128>();
    assert!(exact > u128::from(u64::MAX));
    assert_eq!(sum_of_squares_mod_2_64(5_000_000), exact as u64);
}

/// Runs `cpu` on `backend` and checks every task's total against the closed form.
fn cpu_totals_match_closed_form(backend: &str) {
    for iters in [100_000u64, 5_000_000] {
        let run = run_jsonl(&[
            "cpu",
            "--count",
            "4",
            "--iters",
            &iters.to_string(),
            "-w",
            "2",
            "--backend",
            backend,
        ]);
        assert_eq!(run.indices(), [0, 1, 2, 3]);
        assert_eq!(run.summary["backend"], backend);
        let expected = sum_of_squares_mod_2_64(iters);
        for value in run.values() {
            assert_eq!(
                value["total"].as_u64(),
                Some(expected),
                "{backend} backend, iters={iters}: {value}"
            );
        }
    }
}

#[test]
fn cpu_totals_process() {
    cpu_totals_match_closed_form("process");
}

#[test]
fn cpu_totals_thread() {
    cpu_totals_match_closed_form("thread");
}

#[test]
fn cpu_totals_sequential() {
    cpu_totals_match_closed_form("sequential");
}
