//! `coordinator demo`: the notebook, section by section, each run on the sequential, thread
//! and process backends with measured times, and each of the notebook's claims checked
//! against what was measured on this machine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use workpool::datagen::{self, GenSpec};
use workpool::workload::fetch::{FetchSettings, DEFAULT_TICKERS};
use workpool::workload::files::FileSettings;
use workpool::workload::{Cpu, CpuInput, Fetch, FetchInput, FilePath, Files, Io, IoInput};

use crate::builtin::{Builtin, Input, Record, Value};

use crate::app::exit;
use crate::cli::DemoArgs;
use crate::machine::Machine;
use workpool::pool::{BackendKind, Order, PoolBuilder, WorkerBinary};

/// One measured run of a batch on one backend.
struct Measured {
    backend: BackendKind,
    workers: usize,
    /// Pool start-up and shutdown included, as a user of a fresh pool pays them (Python's
    /// `with ProcessPoolExecutor()` waits for its workers to exit too).
    wall_s: f64,
    pool_start_ms: f64,
    pool_shutdown_ms: f64,
    records: Vec<Record>,
}

/// Settings of one demo pass, scaled down by `--quick`.
struct Scale {
    io_ms: u64,
    cpu_iters: u64,
    latency: (u64, u64),
    slow_ms: u64,
    fast_ms: u64,
    file_delay_ms: u64,
}

impl Scale {
    fn new(quick: bool) -> Scale {
        if quick {
            Scale {
                io_ms: 30,
                cpu_iters: 10_000_000,
                latency: (10, 50),
                slow_ms: 80,
                fast_ms: 20,
                file_delay_ms: 10,
            }
        } else {
            Scale {
                io_ms: 300,
                cpu_iters: 200_000_000,
                latency: (100, 500),
                slow_ms: 800,
                fast_ms: 200,
                file_delay_ms: 100,
            }
        }
    }
}

struct Demo {
    bin: WorkerBinary,
    cores: usize,
    /// One row per measured workload, for the final table.
    summary: Vec<SummaryRow>,
}

struct SummaryRow {
    workload: String,
    sequential_s: f64,
    /// (backend label, speedup over sequential)
    speedups: Vec<(String, f64)>,
}

pub fn run(args: &DemoArgs) -> Result<u8> {
    let bin = WorkerBinary::locate(args.worker_bin.as_deref())?;
    let machine = Machine::read();
    let scale = Scale::new(args.quick);
    let mut demo = Demo {
        bin,
        cores: machine.logical_cores,
        summary: Vec::new(),
    };
    println!(
        "workpool demo{} — the notebook \"Threading & I/O-Bound Tasks\", measured on {} \
         ({} logical cores, {} MiB)\n",
        if args.quick { " (quick)" } else { "" },
        machine.cpu,
        machine.logical_cores,
        machine.memory_total_mib
    );
    let started = Instant::now();
    demo.io_vs_cpu(&scale, args.gil)?;
    demo.map(&scale)?;
    demo.as_completed(&scale)?;
    demo.errors(&scale)?;
    demo.files(&scale)?;
    demo.final_summary();
    println!("\ndemo took {:.1} s", started.elapsed().as_secs_f64());
    Ok(exit::OK)
}

impl Demo {
    fn measure<T: Builtin + Clone>(
        &self,
        backend: BackendKind,
        workers: usize,
        order: Order,
        task: &T,
        inputs: Vec<T::Input>,
        retries: u32,
    ) -> Result<Measured> {
        let config = PoolBuilder::new()
            .backend(backend)
            .workers(workers)
            .order(order)
            .retries(retries)
            .backoff(std::time::Duration::from_millis(if retries > 0 {
                20
            } else {
                0
            }))
            .worker_program(self.bin.clone());
        let started = Instant::now();
        let mut pool = config
            .build(task.clone())
            .context("cannot start the pool")?;
        let pool_start_ms = pool.start_time().as_secs_f64() * 1000.0;
        let records: Vec<Record> = pool.run(inputs).map(T::record).collect();
        let workers = pool.workers();
        let pool_shutdown_ms = pool.shutdown().as_secs_f64() * 1000.0;
        Ok(Measured {
            backend,
            workers,
            wall_s: started.elapsed().as_secs_f64(),
            pool_start_ms,
            pool_shutdown_ms,
            records,
        })
    }

    /// Runs the batch on all three backends and prints their times side by side.
    fn compare<T: Builtin + Clone>(
        &mut self,
        label: &str,
        workers: usize,
        task: &T,
        inputs: &[T::Input],
        retries: u32,
    ) -> Result<Vec<Measured>> {
        let mut runs = Vec::new();
        for backend in [
            BackendKind::Sequential,
            BackendKind::Thread,
            BackendKind::Process,
        ] {
            runs.push(self.measure(
                backend,
                workers,
                Order::Input,
                task,
                inputs.to_vec(),
                retries,
            )?);
        }
        self.print_times(label, &runs);
        Ok(runs)
    }

    fn print_times(&mut self, label: &str, runs: &[Measured]) {
        let seq = runs
            .iter()
            .find(|r| r.backend == BackendKind::Sequential)
            .map_or(f64::NAN, |r| r.wall_s);
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header([
            "backend",
            "workers",
            "time",
            "speedup",
            "pool start-up",
            "shutdown",
        ]);
        let mut speedups = Vec::new();
        for run in runs {
            let speedup = seq / run.wall_s;
            table.add_row([
                run.backend.as_str().to_string(),
                run.workers.to_string(),
                format!("{:.3} s", run.wall_s),
                format!("{speedup:.2}x"),
                format!("{:.1} ms", run.pool_start_ms),
                format!("{:.1} ms", run.pool_shutdown_ms),
            ]);
            if run.backend != BackendKind::Sequential {
                speedups.push((run.backend.as_str().to_string(), speedup));
            }
        }
        println!("{table}");
        self.summary.push(SummaryRow {
            workload: label.to_string(),
            sequential_s: seq,
            speedups,
        });
    }

    fn io_vs_cpu(&mut self, scale: &Scale, gil: bool) -> Result<()> {
        println!("== Section 1: I/O-bound vs CPU-bound ==");
        println!("8 tasks that each wait {} ms, on 8 workers:", scale.io_ms);
        let io: Vec<IoInput> = (0..8).map(|_| IoInput { ms: scale.io_ms }).collect();
        let runs = self.compare("io (8 x sleep)", 8, &Io, &io, 0)?;
        let thread = speedup_of(&runs, BackendKind::Thread);
        println!(
            "notebook: threads speed up I/O-bound work (about 8x with 8 threads).\n\
             measured: threads {thread:.2}x, processes {:.2}x: {}\n",
            speedup_of(&runs, BackendKind::Process),
            verdict(thread > 4.0)
        );

        println!(
            "4 tasks of {} iterations of total += i*i, on 4 workers ({} cores here):",
            scale.cpu_iters, self.cores
        );
        let cpu: Vec<CpuInput> = (0..4)
            .map(|_| CpuInput {
                iters: scale.cpu_iters,
            })
            .collect();
        let runs = self.compare("cpu (4 x sum i*i)", 4, &Cpu::default(), &cpu, 0)?;
        let expected = workpool::workload::cpu_closed_form(scale.cpu_iters);
        let all_right = runs
            .iter()
            .flat_map(|r| &r.records)
            .all(|r| matches!(&r.result, Ok(Value::Cpu { total }) if *total == expected));
        println!(
            "notebook: threads give no speedup on CPU-bound work (\"no speedup due to GIL!\").\n\
             measured: {} Every total equals the closed form: {}.",
            cpu_verdict(
                speedup_of(&runs, BackendKind::Thread),
                speedup_of(&runs, BackendKind::Process),
                self.cores
            ),
            if all_right { "yes" } else { "NO" }
        );
        if gil {
            let gil = Cpu { gil: true };
            let run = self.measure(BackendKind::Thread, 4, Order::Input, &gil, cpu, 0)?;
            let seq = self.summary.last().map_or(f64::NAN, |s| s.sequential_s);
            let speedup = seq / run.wall_s;
            println!(
                "with --gil (one lock held while CPU work runs, as CPython's GIL): threads \
                 {speedup:.2}x — {}",
                verdict(speedup < 1.3)
            );
            if let Some(last) = self.summary.last_mut() {
                last.speedups.push(("thread+gil".into(), speedup));
            }
        }
        println!();
        Ok(())
    }

    fn map(&mut self, scale: &Scale) -> Result<()> {
        println!("== Section 2: executor.map — results in input order ==");
        let context = Fetch(FetchSettings {
            latency_ms: scale.latency,
            ..FetchSettings::default()
        });
        let inputs = tickers(&DEFAULT_TICKERS);
        println!(
            "fetching {} quotes, each with {}..{} ms of simulated latency, on 8 workers:",
            inputs.len(),
            scale.latency.0,
            scale.latency.1
        );
        let runs = self.compare("fetch (map)", 8, &context, &inputs, 0)?;
        let thread = &runs[1];
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["ticker", "price", "change", "volume", "52w high", "52w low"]);
        for record in &thread.records {
            if let Ok(Value::Quote(q)) = &record.result {
                table.add_row([
                    q.ticker.clone(),
                    format!("{:.2}", q.price),
                    format!("{:+.2}", q.change),
                    q.volume.to_string(),
                    format!("{:.2}", q.high_52w),
                    format!("{:.2}", q.low_52w),
                ]);
            }
        }
        println!("{table}");
        let in_order = thread.records.windows(2).all(|w| w[0].index < w[1].index);
        let same = runs
            .iter()
            .all(|r| quotes(&r.records) == quotes(&runs[0].records));
        println!(
            "notebook: map returns results in input order. measured: {}. The same seed gave \
             identical quotes on all three backends: {}.\n",
            verdict(in_order),
            if same { "yes" } else { "NO" }
        );
        Ok(())
    }

    fn as_completed(&mut self, scale: &Scale) -> Result<()> {
        println!("== Section 3: submit + as_completed — results as they finish ==");
        let slow = ["TSLA", "META", "NVDA"];
        let context = Fetch(FetchSettings {
            latency_ms: (scale.fast_ms, scale.fast_ms),
            slow: slow.iter().map(|s| s.to_string()).collect(),
            slow_ms: scale.slow_ms,
            ..FetchSettings::default()
        });
        let inputs = tickers(&DEFAULT_TICKERS);
        println!(
            "TSLA, META and NVDA take {} ms, the rest {} ms; 8 threads, completion order:",
            scale.slow_ms, scale.fast_ms
        );
        let run = self.measure(
            BackendKind::Thread,
            8,
            Order::Completion,
            &context,
            inputs.clone(),
            0,
        )?;
        for record in &run.records {
            if let Ok(Value::Quote(q)) = &record.result {
                println!(
                    "  [{:.2}s] Got {}: ${:.2} (took {:.2}s)",
                    record.finished_ms / 1000.0,
                    q.ticker,
                    q.price,
                    q.latency_ms as f64 / 1000.0
                );
            }
        }
        let arrival: Vec<&str> = run
            .records
            .iter()
            .filter_map(|r| match &r.input {
                Input::Fetch { ticker } => Some(ticker.as_str()),
                _ => None,
            })
            .collect();
        let slow_last = arrival[arrival.len() - slow.len()..]
            .iter()
            .all(|t| slow.contains(t));
        println!(
            "notebook: fast results are processed first, slow ones do not hold them up. \
             measured: the three slow tickers arrived last: {}.",
            verdict(slow_last)
        );
        self.compare("fetch (as_completed)", 8, &context, &inputs, 0)?;
        println!();
        Ok(())
    }

    fn errors(&mut self, scale: &Scale) -> Result<()> {
        println!("== Section 4 and exercise 2: errors, then retries ==");
        let context = Fetch(FetchSettings {
            latency_ms: scale.latency,
            // The notebook uses 10%; with 19 tickers that often shows no failure at all.
            fail_rate: 0.25,
            ..FetchSettings::default()
        });
        let list = ["AAPL", "INVALID", "GOOGL", "BAD", "MSFT", "ERROR"];
        let mut inputs = tickers(&list);
        inputs.extend(tickers(&DEFAULT_TICKERS[3..]));
        for retries in [0, 3] {
            println!(
                "{} tickers, 3 of them invalid, 25% transient network failures, retries {retries}:",
                inputs.len()
            );
            let run = self.measure(
                BackendKind::Thread,
                4,
                Order::Input,
                &context,
                inputs.clone(),
                retries,
            )?;
            let (mut ok, mut invalid, mut network) = (0, 0, 0);
            let invalid_once = run.records.iter().all(|r| {
                !matches!(&r.result, Err(e) if e.kind == workpool::ErrorKind::InvalidInput)
                    || r.attempts == 1
            });
            let retried = run.records.iter().filter(|r| r.attempts > 1).count();
            for record in &run.records {
                match &record.result {
                    Ok(Value::Quote(q)) => {
                        ok += 1;
                        if retries == 0 || record.attempts > 1 {
                            println!(
                                "  SUCCESS: {} = ${:.2} (attempts: {})",
                                q.ticker, q.price, record.attempts
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        match err.kind {
                            workpool::ErrorKind::InvalidInput => invalid += 1,
                            _ => network += 1,
                        }
                        let kind = match err.kind {
                            workpool::ErrorKind::InvalidInput => "invalid",
                            _ => "network",
                        };
                        println!(
                            "  FAILED ({kind}): {} (attempts: {})",
                            err.message, record.attempts
                        );
                    }
                }
            }
            println!(
                "  successful: {ok}, failed: {} (invalid {invalid}, network {network}); \
                 tasks retried: {retried}; invalid tickers tried once only: {}",
                invalid + network,
                if invalid_once { "yes" } else { "NO" }
            );
        }
        println!(
            "notebook: handle exceptions per task, so one failure does not stop the batch; \
             retry transient errors, never invalid input.\n"
        );
        Ok(())
    }

    fn files(&mut self, scale: &Scale) -> Result<()> {
        println!("== Section 5: parallel file processing ==");
        let dir = std::env::temp_dir().join(format!("workpool-demo-{}", std::process::id()));
        let _cleanup = RemoveOnDrop(dir.clone());
        let written = datagen::generate(&GenSpec::notebook(dir.clone(), 42))
            .context("cannot write the demo's sample files")?;
        println!(
            "generated {} CSV files of {} rows in {}; each read waits {} ms (slow storage):",
            written.len(),
            datagen::NOTEBOOK_DAYS,
            dir.display(),
            scale.file_delay_ms
        );
        let context = Files(FileSettings {
            io_delay_ms: scale.file_delay_ms,
            ..FileSettings::default()
        });
        let inputs: Vec<FilePath> = written.iter().map(|p| p.as_path().into()).collect();
        let runs = self.compare("files (8 CSV)", 4, &context, &inputs, 0)?;
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header([
            "ticker",
            "start",
            "end",
            "return %",
            "volatility %",
            "avg volume",
            "sharpe",
        ]);
        for record in &runs[2].records {
            if let Ok(Value::FileStats(s)) = &record.result {
                table.add_row([
                    s.ticker.clone(),
                    format!("{:.2}", s.start_price),
                    format!("{:.2}", s.end_price),
                    format!("{:.2}", s.total_return_pct),
                    s.volatility_pct
                        .map_or("null".into(), |v| format!("{v:.2}")),
                    format!("{:.0}", s.avg_volume),
                    s.sharpe.map_or("null".into(), |v| format!("{v:.3}")),
                ]);
            }
        }
        println!("{table}");
        let same = runs
            .iter()
            .all(|r| stats_of(&r.records) == stats_of(&runs[0].records));
        println!(
            "identical statistics from all three backends: {}\n",
            if same { "yes" } else { "NO" }
        );
        Ok(())
    }

    fn final_summary(&self) {
        println!("== Summary: speedup over sequential, by workload and backend ==");
        let mut labels: Vec<String> = Vec::new();
        for row in &self.summary {
            for (label, _) in &row.speedups {
                if !labels.contains(label) {
                    labels.push(label.clone());
                }
            }
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec!["workload".to_string(), "sequential".to_string()];
        header.extend(labels.iter().cloned());
        table.set_header(header);
        for summary in &self.summary {
            let mut row = vec![
                summary.workload.clone(),
                format!("{:.3} s", summary.sequential_s),
            ];
            for label in &labels {
                row.push(
                    summary
                        .speedups
                        .iter()
                        .find(|(l, _)| l == label)
                        .map_or(String::new(), |(_, s)| format!("{s:.2}x")),
                );
            }
            table.add_row(row);
        }
        println!("{table}");
        println!("{}", closing(&self.summary, self.cores));
    }
}

/// Below this speedup over sequential, a run is said not to have sped up.
const NO_SPEEDUP: f64 = 1.3;

/// The largest speedup of (backend, lowest, highest) figures.
fn best_of(by_backend: &[(&str, f64, f64)]) -> f64 {
    by_backend.iter().map(|b| b.2).fold(0.0, f64::max)
}

/// What the CPU-bound section measured, in words: threads' and processes' speedups over
/// sequential, on a machine of `cores` logical cores.
fn cpu_verdict(thread: f64, process: f64, cores: usize) -> String {
    let figures = format!("Rust threads {thread:.2}x, processes {process:.2}x");
    if thread >= NO_SPEEDUP {
        format!(
            "{figures} on {cores} logical cores: Rust threads run CPU work in parallel (Rust \
             has no GIL), so the claim does not hold for them."
        )
    } else if process >= NO_SPEEDUP {
        format!(
            "{figures} on {cores} logical cores: processes sped up and threads did not on \
             this run; Rust has no GIL, so something else held the threads back (a busy \
             machine?) — run it again to see."
        )
    } else if cores <= 1 {
        format!(
            "{figures}: this machine has one logical core, so no CPU work can run in \
             parallel here, on threads or processes; the run cannot show a GIL's effect."
        )
    } else {
        format!(
            "{figures}: neither reached {NO_SPEEDUP}x, though the machine reports {cores} logical cores — \
             this run had about one core's worth of CPU (a busy or throttled machine), so it \
             cannot show a GIL's effect either way."
        )
    }
}

/// The demo's last words, from the summary rows: how much waiting and CPU work sped up
/// on each backend.
fn closing(rows: &[SummaryRow], cores: usize) -> String {
    let mut sentences = vec!["Times include starting the pool.".to_string()];
    let (cpu, waiting): (Vec<&SummaryRow>, Vec<&SummaryRow>) =
        rows.iter().partition(|r| r.workload.starts_with("cpu"));
    for (rows, what) in [(waiting, "Waiting"), (cpu, "CPU-bound work")] {
        let by_backend: Vec<(&str, f64, f64)> = [("thread", "threads"), ("process", "processes")]
            .into_iter()
            .filter_map(|(backend, plural)| {
                let speedups: Vec<f64> = rows
                    .iter()
                    .flat_map(|r| &r.speedups)
                    .filter(|(label, _)| label == backend)
                    .map(|(_, s)| *s)
                    .collect();
                let lo = speedups.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = speedups.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (!speedups.is_empty()).then_some((plural, lo, hi))
            })
            .collect();
        if by_backend.is_empty() {
            continue;
        }
        let figures: Vec<String> = by_backend
            .iter()
            .enumerate()
            .map(|(i, (backends, lo, hi))| {
                let range = if format!("{lo:.2}") == format!("{hi:.2}") {
                    format!("{hi:.2}x")
                } else {
                    format!("{lo:.2}-{hi:.2}x")
                };
                // The first figure says what it measures, the others follow it.
                let against = if i == 0 && best_of(&by_backend) >= NO_SPEEDUP {
                    " as fast as sequential"
                } else {
                    ""
                };
                format!("{range}{against} on {backends}")
            })
            .collect();
        let best = best_of(&by_backend);
        let cores_note = if what == "Waiting" {
            String::new()
        } else {
            format!(", with {cores} logical cores")
        };
        sentences.push(if best < NO_SPEEDUP {
            format!(
                "{what} did not reach {NO_SPEEDUP}x on this run ({}{cores_note}).",
                figures.join(", ")
            )
        } else {
            format!("{what} ran {}{cores_note}.", figures.join(" and "))
        });
        // More than the cores can give: the sequential run was slowed by something else.
        if what != "Waiting" && best > cores as f64 * 1.1 {
            sentences.push(format!(
                "That is more than {cores} cores can give: the machine was busier during the \
                 sequential run, so read these CPU figures with care."
            ));
        }
    }
    sentences.join(" ")
}

fn speedup_of(runs: &[Measured], backend: BackendKind) -> f64 {
    let seq = runs
        .iter()
        .find(|r| r.backend == BackendKind::Sequential)
        .map_or(f64::NAN, |r| r.wall_s);
    runs.iter()
        .find(|r| r.backend == backend)
        .map_or(f64::NAN, |r| seq / r.wall_s)
}

fn verdict(holds: bool) -> &'static str {
    if holds {
        "holds"
    } else {
        "does NOT hold here"
    }
}

fn tickers(list: &[&str]) -> Vec<FetchInput> {
    list.iter()
        .map(|t| FetchInput {
            ticker: t.to_string(),
        })
        .collect()
}

fn quotes(records: &[Record]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| match &r.result {
            Ok(Value::Quote(q)) => (r.index, format!("{} {} {}", q.ticker, q.price, q.volume)),
            other => (r.index, format!("{other:?}")),
        })
        .collect()
}

fn stats_of(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| format!("{:?}", r.result)).collect()
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, thread: f64, process: f64) -> SummaryRow {
        SummaryRow {
            workload: workload.into(),
            sequential_s: 1.0,
            speedups: vec![("thread".into(), thread), ("process".into(), process)],
        }
    }

    #[test]
    fn the_cpu_verdict_follows_the_measurement() {
        assert!(cpu_verdict(1.9, 1.8, 2).contains("the claim does not hold for them"));
        let one_core_of_two = cpu_verdict(1.02, 0.97, 2);
        assert!(one_core_of_two.starts_with("Rust threads 1.02x, processes 0.97x"));
        assert!(one_core_of_two.contains("about one core's worth"));
        assert!(!one_core_of_two.contains("no GIL"));
        assert!(cpu_verdict(1.0, 1.0, 1).contains("this machine has one logical core"));
        assert!(cpu_verdict(1.0, 1.9, 2).contains("processes sped up and threads did not"));
    }

    #[test]
    fn the_closing_line_says_what_the_table_shows() {
        let rows = [
            row("io (8 x sleep)", 7.8, 7.5),
            row("cpu (4 x sum i*i)", 1.95, 1.85),
            row("files (8 CSV)", 3.6, 3.1),
        ];
        assert_eq!(
            closing(&rows, 2),
            "Times include starting the pool. Waiting ran 3.60-7.80x as fast as sequential on \
             threads and 3.10-7.50x on processes. CPU-bound work ran 1.95x as fast as \
             sequential on threads and 1.85x on processes, with 2 logical cores."
        );
        // The VM gave one core: the closing line no longer claims a CPU speedup.
        let rows = [
            row("io (8 x sleep)", 7.8, 7.5),
            row("cpu (4 x sum i*i)", 1.02, 0.93),
        ];
        assert_eq!(
            closing(&rows, 2),
            "Times include starting the pool. Waiting ran 7.80x as fast as sequential on \
             threads and 7.50x on processes. CPU-bound work did not reach 1.3x on this run \
             (1.02x on threads, 0.93x on processes, with 2 logical cores)."
        );
        // A speedup the cores cannot give is said to be one.
        let rows = [row("cpu (4 x sum i*i)", 2.61, 2.89)];
        assert!(
            closing(&rows, 2).ends_with("read these CPU figures with care."),
            "{}",
            closing(&rows, 2)
        );
    }
}
