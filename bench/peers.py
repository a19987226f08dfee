#!/usr/bin/env python3
"""Python peer measurements for ``workpool``'s ``coordinator bench``.

The Rust bench runs this script to put Python's own executors next to
workpool's process pool and thread pool.  It measures the executors from
``concurrent.futures`` on the workloads of notebook 02 ("Threading & I/O-Bound
Tasks"):

* ``python-thread``         -- ``ThreadPoolExecutor``
* ``python-process-fork``   -- ``ProcessPoolExecutor`` with the ``fork`` context
* ``python-process-spawn``  -- ``ProcessPoolExecutor`` with the ``spawn`` context
* ``python-sequential``     -- a plain loop (the notebook's baseline)

Suites (select with ``--suites``):

``startup``
    "pool ready": ms from before the executor is created until each of its N
    workers has started and answered a hello task; "shutdown": ms taken by
    ``shutdown(wait=True)``.  Thread, fork and spawn, for every N in
    ``--workers``.
``latency``
    "noop round trip": us for ``ex.submit(noop, 0).result()`` on a warm
    single-worker executor, one value per round trip.  Thread and fork.
``payload``
    "round trip": us for ``ex.submit(noop, data).result()`` with ``data`` a
    ``bytes`` of 1 KiB, 64 KiB, 1 MiB and 16 MiB (param "1 KiB" ...
    "16384 KiB", as the Rust suite labels its sizes) on a warm single-worker
    executor, one value per round trip; about 64 MiB moved per size (20 to
    2000 round trips; --quick: about 16 MiB, 5 to 20).  Thread and fork.
``throughput``
    "noop throughput": tasks/s for ``--throughput-tasks`` no-ops on a warm
    2-worker executor; param "submit" (``submit`` + ``as_completed``) or
    "map chunksize=K" for K in 1, 16, 256.  Thread and fork.
``memory``
    "worker rss" / "worker pss" (KiB, one value per worker process) for fork
    pools of 2 and max(--workers) workers; "per-thread rss" (KiB) for a thread
    pool of max(--workers) workers.  Measured in a fresh child interpreter so
    that what earlier suites left in this process does not inflate it.
``scaling``
    "io" (``time.sleep``) and "cpu" (the notebook's ``total += i * i`` loop):
    ms of wall time for the whole batch, *including* creating and shutting
    down the executor.  Sequential, thread and fork for every N in
    ``--workers``.

Driving it::

    python3 bench/peers.py --suites startup,latency,payload,throughput,memory,scaling \\
        --workers 1,2,4,8 --runs 5 --warmup 1 [--quick] --io-count 8 \\
        --io-ms 300 --cpu-count 4 --cpu-iters 2000000 --latency-count 2000 \\
        --throughput-tasks 20000

Every flag is optional and defaults to the value shown.  ``--quick`` caps each
setting at a small value (runs 2, warmup 1, latency 300, throughput 1000,
io-ms 50, cpu-iters 200000, case budget 0.1 s, min runs 1; spawn start-up gets
one measured run and no warm-up) whether or not the setting was given
explicitly, so the caller may always pass its full set of flags and add
``--quick``.

Long measurements are bounded by ``--case-budget`` seconds (default 1.0): a
further run is started only while time spent + average run time stays within
the budget, yet ``--min-runs`` (default 2) runs are always made unless the
first run alone exceeded the budget.  So cheap cases get all ``--runs`` runs
and multi-second ones (the sequential I/O batch takes 2.4 s a run, a
20000-task process-pool submit ~5 s) get one or two.  This keeps the default
full run under a minute on a 2-core machine without dropping any case.
Warm-up runs are not counted against the budget.

Output: ONE JSON document on stdout::

    {"python": "<sys.version>",
     "measurements": [{"suite": ..., "case": ..., "runtime": ...,
                       "workers": int | null, "param": str | null,
                       "unit": ..., "values": [float, ...]}, ...]}

``values`` are raw (one per run, or one per sample/worker where stated); the
Rust side computes median/mean/stddev.  Progress and diagnostics go to stderr.
A failing measurement (e.g. the spawn start method being unavailable) is
reported on stderr and left out; any other unexpected error exits with
status 1.

Standard library only; Linux is assumed for the memory suite (``/proc``).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import (
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from typing import Callable, Iterable

SUITES = ("startup", "latency", "payload", "throughput", "memory", "scaling")

THREAD = "python-thread"
FORK = "python-process-fork"
SPAWN = "python-process-spawn"
SEQUENTIAL = "python-sequential"

# Seconds each start-up hello task sleeps (see suite_startup).
HELLO_SLEEP_S = 0.05
# Calls used to warm an executor before latency / throughput timing.
WARM_CALLS = 100
# Chunksizes for the throughput suite's map cases.
MAP_CHUNKSIZES = (1, 16, 256)
# Sizes echoed by the payload suite.
PAYLOAD_SIZES = (1 << 10, 64 << 10, 1 << 20, 16 << 20)

# Caps applied by --quick (see apply_quick).
QUICK_CAPS = {
    "runs": 2,
    "warmup": 1,
    "latency_count": 300,
    "throughput_tasks": 1000,
    "io_ms": 50,
    "cpu_iters": 200_000,
    "case_budget": 0.1,
    "min_runs": 1,
}
QUICK_SPAWN_RUNS = 1


# --------------------------------------------------------------------------
# Tasks.  Everything submitted to a process pool must be a top-level function
# so that it pickles (and, for spawn, so the child can import it).
# --------------------------------------------------------------------------


def noop(x):
    """The cheapest possible task: return the argument."""
    return x


def hello(delay_s: float) -> tuple[int, int]:
    """Sleep, then say which worker ran us: (pid, thread ident)."""
    time.sleep(delay_s)
    return os.getpid(), threading.get_ident()


def io_bound_task(task_id: int, seconds: float) -> str:
    """Notebook 02's io_bound_task: simulated network I/O (a sleep)."""
    time.sleep(seconds)
    return f"Task {task_id} completed"


def cpu_bound_task(task_id: int, iters: int) -> str:
    """Notebook 02's cpu_bound_task: a pure-Python loop that holds the GIL."""
    total = 0
    for i in range(iters):
        total += i * i
    return f"Task {task_id}: {total}"


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


_T0 = time.perf_counter()
_TAG = "peers"  # "peers/child" in the memory suite's fresh interpreter


def log(msg: str) -> None:
    """Progress line on stderr, stamped with seconds since start."""
    print(f"[{_TAG} {time.perf_counter() - _T0:6.2f}s] {msg}", file=sys.stderr, flush=True)


def now_ns() -> int:
    return time.perf_counter_ns()


def make_executor(runtime: str, workers: int) -> Executor:
    """Create the executor for a runtime name."""
    if runtime == THREAD:
        return ThreadPoolExecutor(max_workers=workers)
    if runtime == FORK:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork")
        )
    if runtime == SPAWN:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
    raise ValueError(f"no executor for runtime {runtime!r}")


def worker_key(runtime: str, answer: tuple[int, int]) -> int:
    """Identify a worker: its pid for process pools, thread ident for threads."""
    pid, ident = answer
    return ident if runtime == THREAD else pid


def await_all_workers(ex: Executor, runtime: str, workers: int) -> tuple[set[int], int]:
    """Submit rounds of `workers` hello tasks until `workers` distinct workers
    have answered.  Returns (worker keys, rounds needed)."""
    seen: set[int] = set()
    rounds = 0
    while len(seen) < workers:
        rounds += 1
        futures = [ex.submit(hello, HELLO_SLEEP_S) for _ in range(workers)]
        for fut in futures:
            seen.add(worker_key(runtime, fut.result()))
        if rounds > 100:
            raise RuntimeError(f"only {len(seen)} of {workers} workers ever answered")
    return seen, rounds


def repeat_runs(
    run: Callable[[], object],
    runs: int,
    warmup: int,
    min_runs: int,
    budget_s: float,
    label: str,
) -> list:
    """Call `run` `warmup` times unmeasured, then up to `runs` times, and
    return the list of its results.

    A further run is started only if the time spent so far plus the average
    run time stays within `budget_s` seconds -- except that `min_runs` runs
    are always made unless the first run alone exceeded the budget (a single
    multi-second run, e.g. a sequential I/O batch, is left at one value).
    """
    for _ in range(warmup):
        run()
    results = []
    spent = 0.0
    for i in range(runs):
        over = spent + spent / i > budget_s if i else False
        if over and (i >= min_runs or spent > budget_s):
            log(f"  {label}: budget {budget_s:g}s reached, {i} of {runs} runs")
            break
        t0 = time.perf_counter()
        results.append(run())
        spent += time.perf_counter() - t0
    return results


def read_proc_kib(path: str, field: str) -> float | None:
    """Read a 'Field:   1234 kB' line from a /proc file; None if unreadable."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class Recorder:
    """Collects measurements and reports progress on stderr."""

    def __init__(self) -> None:
        self.measurements: list[dict] = []
        self.failures = 0

    def add(
        self,
        suite: str,
        case: str,
        runtime: str,
        workers: int | None,
        param: str | None,
        unit: str,
        values: Iterable[float],
    ) -> None:
        vals = [round(float(v), 3) for v in values]
        if not vals:
            log(f"  {suite}/{case} {runtime} w={workers}: no values, skipped")
            return
        self.measurements.append(
            {
                "suite": suite,
                "case": case,
                "runtime": runtime,
                "workers": workers,
                "param": param,
                "unit": unit,
                "values": vals,
            }
        )
        extra = f" [{param}]" if param else ""
        log(
            f"  {suite}/{case}{extra} {runtime} w={workers}: "
            f"median {statistics.median(vals):.3f} {unit} (n={len(vals)})"
        )

    def attempt(self, label: str, fn: Callable[[], None]) -> None:
        """Run one measurement; on failure report it and carry on."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 -- a skipped measurement, not fatal
            self.failures += 1
            log(f"  FAILED {label}: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)


# --------------------------------------------------------------------------
# Suites.
# --------------------------------------------------------------------------


def suite_startup(cfg: argparse.Namespace, rec: Recorder) -> None:
    for runtime in (THREAD, FORK, SPAWN):
        runs, warmup = cfg.runs, cfg.warmup
        if runtime == SPAWN and cfg.quick:
            # A spawn start-up costs up to ~1 s at 8 workers on 2 cores.
            runs, warmup = min(runs, QUICK_SPAWN_RUNS), 0
        for n in cfg.workers:

            def once(runtime=runtime, n=n) -> tuple[float, float, int]:
                # "Ready" = every worker has started and answered.  Each hello
                # task sleeps HELLO_SLEEP_S so a fast worker cannot take every
                # task; we then subtract that one sleep from the wall time, so
                # the number is comparable with a pool that counts as ready
                # when each worker has said hello (no sleep involved).
                t0 = now_ns()
                ex = make_executor(runtime, n)
                try:
                    _, rounds = await_all_workers(ex, runtime, n)
                    ready_ms = (now_ns() - t0) / 1e6 - HELLO_SLEEP_S * 1e3
                finally:
                    t1 = now_ns()
                    ex.shutdown(wait=True)
                    shutdown_ms = (now_ns() - t1) / 1e6
                return ready_ms, shutdown_ms, rounds

            def measure(runtime=runtime, n=n, runs=runs, warmup=warmup,
                        once=once) -> None:
                # Warm-up runs (at this runtime's first worker count only)
                # absorb first-use costs -- lazy imports, page cache, the
                # first fork/exec -- that do not depend on N.
                results = repeat_runs(
                    once, runs, warmup if n == cfg.workers[0] else 0,
                    cfg.min_runs, cfg.case_budget,
                    f"startup {runtime} w={n}",
                )
                extra_rounds = [r for _, _, r in results if r > 1]
                if extra_rounds:
                    log(
                        f"  startup {runtime} w={n}: {len(extra_rounds)} run(s) "
                        f"needed more than one hello round (max {max(extra_rounds)})"
                    )
                rec.add("startup", "pool ready", runtime, n, None, "ms",
                        [r for r, _, _ in results])
                rec.add("startup", "shutdown", runtime, n, None, "ms",
                        [s for _, s, _ in results])

            rec.attempt(f"startup {runtime} w={n}", measure)


def suite_latency(cfg: argparse.Namespace, rec: Recorder) -> None:
    for runtime in (THREAD, FORK):

        def measure(runtime=runtime) -> None:
            with make_executor(runtime, 1) as ex:
                for _ in range(WARM_CALLS):
                    ex.submit(noop, 0).result()
                samples = []
                for _ in range(cfg.latency_count):
                    t0 = now_ns()
                    ex.submit(noop, 0).result()
                    samples.append((now_ns() - t0) / 1e3)
            rec.add("latency", "noop round trip", runtime, 1, None, "us", samples)

        rec.attempt(f"latency {runtime}", measure)


def payload_samples(quick: bool, size: int) -> int:
    """Round trips for one payload size: the same rule as the Rust suite's."""
    if quick:
        return max(5, min(20, (16 << 20) // size))
    return max(20, min(2000, (64 << 20) // size))


def suite_payload(cfg: argparse.Namespace, rec: Recorder) -> None:
    for runtime in (THREAD, FORK):

        def measure(runtime=runtime) -> None:
            with make_executor(runtime, 1) as ex:
                for _ in range(WARM_CALLS):
                    ex.submit(noop, 0).result()
                for size in PAYLOAD_SIZES:
                    data = b"\xa5" * size
                    count = payload_samples(cfg.quick, size)
                    # Warm at this size too, as the Rust suite does.
                    for _ in range(min(count, 100)):
                        ex.submit(noop, data).result()
                    samples = []
                    for _ in range(count):
                        t0 = now_ns()
                        back = ex.submit(noop, data).result()
                        samples.append((now_ns() - t0) / 1e3)
                    if len(back) != size:
                        raise RuntimeError(f"echo of {size} bytes came back as {len(back)}")
                    rec.add("payload", "round trip", runtime, 1, f"{size >> 10} KiB", "us",
                            samples)

        rec.attempt(f"payload {runtime}", measure)


def suite_throughput(cfg: argparse.Namespace, rec: Recorder) -> None:
    workers = 2
    tasks = cfg.throughput_tasks
    # Warm-up runs use a tenth of the batch (at most 1000 tasks): they only
    # need to exercise the code paths; a full 20000-task warm-up on a process
    # pool costs seconds.
    warm_tasks = max(1, min(1000, tasks // 10))

    def via_submit(ex: Executor, count: int) -> None:
        futures = [ex.submit(noop, i) for i in range(count)]
        for _ in as_completed(futures):
            pass

    def via_map(ex: Executor, count: int, chunksize: int) -> None:
        # ThreadPoolExecutor.map ignores chunksize, so for threads the three
        # map cases measure the same thing (a useful consistency check).
        for _ in ex.map(noop, range(count), chunksize=chunksize):
            pass

    variants: list[tuple[str, Callable[[Executor, int], None]]] = [("submit", via_submit)]
    for k in MAP_CHUNKSIZES:
        variants.append((f"map chunksize={k}", lambda ex, c, k=k: via_map(ex, c, k)))

    for runtime in (THREAD, FORK):

        def measure(runtime=runtime) -> None:
            with make_executor(runtime, workers) as ex:
                # Pool created and all workers started before any timing.
                await_all_workers(ex, runtime, workers)
                for _ in range(WARM_CALLS):
                    ex.submit(noop, 0).result()
                for param, drive in variants:

                    def once(drive=drive) -> float:
                        t0 = now_ns()
                        drive(ex, tasks)
                        return tasks / ((now_ns() - t0) / 1e9)

                    for _ in range(cfg.warmup):
                        drive(ex, warm_tasks)
                    values = repeat_runs(
                        once, cfg.runs, 0, cfg.min_runs, cfg.case_budget,
                        f"throughput {runtime} {param}",
                    )
                    rec.add("throughput", "noop throughput", runtime, workers, param,
                            "tasks/s", values)

        rec.attempt(f"throughput {runtime}", measure)


def suite_memory(cfg: argparse.Namespace, rec: Recorder) -> None:
    """Run the memory measurements in a fresh interpreter.

    A forked worker starts with its parent's whole address space, so its RSS
    is mostly the parent's: after the throughput suite this process holds
    ~55 MiB (freed futures are not returned to the OS), against ~15 MiB
    fresh, and every fork worker would report that.  A child interpreter that
    runs only this suite measures what a pool forked from a minimal Python
    parent costs, whatever ran before.
    """
    if cfg.fresh_process:
        measure_memory(cfg, rec)
        return
    cmd = [
        sys.executable, os.path.abspath(__file__), "--suites", "memory",
        "--fresh-process", "--workers", ",".join(map(str, cfg.workers)),
        "--runs", str(cfg.runs), "--warmup", str(cfg.warmup),
        "--case-budget", repr(cfg.case_budget), "--min-runs", str(cfg.min_runs),
    ]

    def run_child() -> None:
        # The child's progress lines go straight to our stderr.
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child exited with status {proc.returncode}")
        for m in json.loads(proc.stdout)["measurements"]:
            rec.measurements.append(m)

    rec.attempt("memory (fresh interpreter)", run_child)


def measure_memory(cfg: argparse.Namespace, rec: Recorder) -> None:
    max_n = max(cfg.workers)

    # Fork workers: one value per worker process.  RSS counts pages shared
    # copy-on-write with the parent in full; PSS divides them among sharers.
    for n in sorted({2, max_n}):

        def measure_fork(n=n) -> None:
            with make_executor(FORK, n) as ex:
                pids, _ = await_all_workers(ex, FORK, n)
                rss = [read_proc_kib(f"/proc/{p}/status", "VmRSS") for p in sorted(pids)]
                pss = [read_proc_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in sorted(pids)]
            if any(v is None for v in rss):
                raise RuntimeError("could not read VmRSS from /proc/<pid>/status")
            rec.add("memory", "worker rss", FORK, n, None, "KiB", rss)
            if any(v is None for v in pss):
                log(f"  memory worker pss w={n}: smaps_rollup unreadable, skipped")
            else:
                rec.add("memory", "worker pss", FORK, n, None, "KiB", pss)

        rec.attempt(f"memory {FORK} w={n}", measure_fork)

    # Threads: growth of this process's RSS per started thread, one value per
    # run.  Only touched pages count: a thread's 8 MiB stack is mostly virtual.
    def measure_threads() -> None:
        status = f"/proc/{os.getpid()}/status"

        def once() -> float:
            gc.collect()
            before = read_proc_kib(status, "VmRSS")
            with make_executor(THREAD, max_n) as ex:
                await_all_workers(ex, THREAD, max_n)
                after = read_proc_kib(status, "VmRSS")
            if before is None or after is None:
                raise RuntimeError(f"could not read VmRSS from {status}")
            return (after - before) / max_n

        values = repeat_runs(once, cfg.runs, 0, cfg.min_runs, cfg.case_budget,
                             "memory per-thread rss")
        rec.add("memory", "per-thread rss", THREAD, max_n, None, "KiB", values)

    rec.attempt(f"memory {THREAD} w={max_n}", measure_threads)


def suite_scaling(cfg: argparse.Namespace, rec: Recorder) -> None:
    io_s = cfg.io_ms / 1000.0
    cases = {
        "io": (io_bound_task, cfg.io_count, io_s),
        "cpu": (cpu_bound_task, cfg.cpu_count, cfg.cpu_iters),
    }
    # No warm-up runs here: creating the executor is part of what is timed,
    # each run is long, and earlier imports already happened at module load.
    for case, (task, count, arg) in cases.items():
        param = None  # the workload's size is logged, not part of the key
        log(f"  scaling {case}: {count} tasks x "
            + (f"{cfg.io_ms:g} ms sleep" if case == "io" else f"{cfg.cpu_iters} iterations"))

        def sequential(task=task, count=count, arg=arg) -> float:
            t0 = now_ns()
            for i in range(count):
                task(i, arg)
            return (now_ns() - t0) / 1e6

        def measure_seq(case=case, param=param, sequential=sequential) -> None:
            values = repeat_runs(sequential, cfg.runs, 0, cfg.min_runs,
                                 cfg.case_budget, f"scaling {case} sequential")
            rec.add("scaling", case, SEQUENTIAL, None, param, "ms", values)

        rec.attempt(f"scaling {case} {SEQUENTIAL}", measure_seq)

        for runtime in (THREAD, FORK):
            for n in cfg.workers:

                def pooled(runtime=runtime, n=n, task=task, count=count, arg=arg) -> float:
                    t0 = now_ns()
                    with make_executor(runtime, n) as ex:
                        for _ in ex.map(task, range(count), [arg] * count):
                            pass
                    return (now_ns() - t0) / 1e6

                def measure(case=case, param=param, runtime=runtime, n=n,
                            pooled=pooled) -> None:
                    values = repeat_runs(pooled, cfg.runs, 0, cfg.min_runs,
                                         cfg.case_budget,
                                         f"scaling {case} {runtime} w={n}")
                    rec.add("scaling", case, runtime, n, param, "ms", values)

                rec.attempt(f"scaling {case} {runtime} w={n}", measure)


SUITE_FUNCS = {
    "startup": suite_startup,
    "latency": suite_latency,
    "payload": suite_payload,
    "throughput": suite_throughput,
    "memory": suite_memory,
    "scaling": suite_scaling,
}


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def csv_list(kind: Callable[[str], object]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        try:
            return [kind(s) for s in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def suite_name(text: str) -> str:
    if text not in SUITES:
        raise ValueError(f"unknown suite {text!r} (choose from {', '.join(SUITES)})")
    return text


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def worker_count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"worker counts must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure Python's concurrent.futures executors for workpool's bench; "
        "prints one JSON document on stdout.",
    )
    p.add_argument("--suites", type=csv_list(suite_name), default=list(SUITES),
                   help="comma-separated suites (default: all: %(default)s)")
    p.add_argument("--workers", type=csv_list(worker_count), default=[1, 2, 4, 8],
                   help="comma-separated worker counts (default: 1,2,4,8)")
    p.add_argument("--runs", type=positive_int, default=5,
                   help="measured runs per measurement (default: %(default)s)")
    p.add_argument("--warmup", type=non_negative_int, default=1,
                   help="unmeasured warm-up runs (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="cap sizes for a fast smoke run (see module docstring)")
    p.add_argument("--io-count", type=positive_int, default=8,
                   help="I/O tasks in the scaling suite (default: %(default)s)")
    p.add_argument("--io-ms", type=float, default=300.0,
                   help="sleep per I/O task in ms (default: %(default)s)")
    p.add_argument("--cpu-count", type=positive_int, default=4,
                   help="CPU tasks in the scaling suite (default: %(default)s)")
    p.add_argument("--cpu-iters", type=positive_int, default=2_000_000,
                   help="loop iterations per CPU task (default: %(default)s)")
    p.add_argument("--latency-count", type=positive_int, default=2000,
                   help="round trips in the latency suite (default: %(default)s)")
    p.add_argument("--throughput-tasks", type=positive_int, default=20000,
                   help="no-op tasks per throughput run (default: %(default)s)")
    p.add_argument("--case-budget", type=float, default=1.0,
                   help="seconds after which a measurement starts no further runs, "
                   "once --min-runs are done (default: %(default)s)")
    p.add_argument("--min-runs", type=positive_int, default=2,
                   help="runs always measured, whatever the budget (default: %(default)s; "
                   "never more than --runs)")
    # Internal: set on the child interpreter that suite_memory starts.
    p.add_argument("--fresh-process", action="store_true", help=argparse.SUPPRESS)
    cfg = p.parse_args(argv)
    if cfg.io_ms < 0:
        p.error("--io-ms must be >= 0")
    # Keep order, drop duplicates.
    cfg.suites = list(dict.fromkeys(cfg.suites))
    cfg.workers = list(dict.fromkeys(cfg.workers))
    if cfg.quick:
        apply_quick(cfg)
    cfg.min_runs = min(cfg.min_runs, cfg.runs)
    return cfg


def apply_quick(cfg: argparse.Namespace) -> None:
    """Cap every size at its quick value (explicit smaller values are kept)."""
    for name, cap in QUICK_CAPS.items():
        setattr(cfg, name, min(getattr(cfg, name), cap))


def main(argv: list[str] | None = None) -> int:
    global _TAG
    cfg = parse_args(argv)
    if cfg.fresh_process:
        _TAG = "peers/child"
    # Keep stdout for the JSON document alone: anything printed by accident
    # (here or in forked workers) goes to stderr instead.
    out = sys.stdout
    sys.stdout = sys.stderr
    log(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, suites {','.join(cfg.suites)}, "
        f"workers {cfg.workers}, runs {cfg.runs}, warmup {cfg.warmup}"
        + (" (quick)" if cfg.quick else "")
    )
    rec = Recorder()
    started = time.perf_counter()
    for name in cfg.suites:
        t0 = time.perf_counter()
        log(f"suite {name}")
        SUITE_FUNCS[name](cfg, rec)
        log(f"suite {name} done in {time.perf_counter() - t0:.1f}s")
    log(
        f"{len(rec.measurements)} measurements, {rec.failures} failed, "
        f"{time.perf_counter() - started:.1f}s"
    )
    json.dump({"python": sys.version, "measurements": rec.measurements}, out, indent=1)
    out.write("\n")
    out.flush()
    if rec.failures and not rec.measurements:
        log("error: every measurement failed")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("peers.py: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 -- report clearly, exit 1
        traceback.print_exc(file=sys.stderr)
        print(f"peers.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
