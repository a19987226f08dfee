//! The built-in workloads as the command line reports them: one input and one value type
//! over all five, so that a report or an export is written once for every workload. Each
//! workload is a task type of its own in the library; converting its records here is a
//! move per record, no copy.

use workpool::workload::fault::Fault;
use workpool::workload::fetch::Quote;
use workpool::workload::files::FileStats;
use workpool::workload::{
    Cpu, CpuInput, Fetch, FetchInput, FilePath, Files, Io, IoInput, Noop, NoopInput, NoopOutput,
};
use workpool::Task;

/// A task's input, whatever its workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Return at once, echoing `payload` back (unless `fault` strikes first).
    Noop {
        payload: Vec<u8>,
        fault: Option<Fault>,
    },
    /// Sleep for `ms` milliseconds (the notebook's `io_bound_task`).
    Io { ms: u64 },
    /// Sum `i * i` for `i in 0..iters` (the notebook's `cpu_bound_task`).
    Cpu { iters: u64 },
    /// Fetch a simulated quote for a ticker (the notebook's `simulate_fetch_stock_data`).
    Fetch { ticker: String },
    /// Summarise one CSV of daily prices (the notebook's `process_stock_file`).
    File { path: FilePath },
}

/// What a successful task produced, whatever its workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The echoed payload.
    Noop { payload: Vec<u8> },
    /// How long the task slept.
    Io { slept_ms: u64 },
    /// The wrapping sum of squares.
    Cpu { total: u64 },
    /// A simulated stock quote.
    Quote(Quote),
    /// Summary statistics of one price file.
    FileStats(FileStats),
}

/// The final outcome of one task, as reports and exports see it.
pub type Record = workpool::Record<Input, Value>;

/// The reason a task was reported `cancelled` without having reached a worker, if it was:
/// after a stop (`--first`, `--fail-fast`, an interrupt) these follow one another without
/// waiting, by the million, so the writer leaves them to fill the output's buffer rather
/// than flushing them one by one (a write per record took most of the time of such a
/// stop), and the table says a run of them in one line.
pub fn never_ran(record: &Record) -> Option<&str> {
    match &record.result {
        Err(err) if record.worker.is_none() && err.kind == workpool::ErrorKind::Cancelled => {
            Some(&err.message)
        }
        _ => None,
    }
}

/// A built-in workload: its task type, and how its inputs and outputs are reported.
pub trait Builtin: Task {
    /// The input as reports see it.
    fn input(input: Self::Input) -> Input;
    /// The output as reports see it.
    fn value(output: Self::Output) -> Value;

    /// A record of this workload as reports see it.
    fn record(record: workpool::Record<Self::Input, Self::Output>) -> Record {
        record.map(Self::input, Self::value)
    }
}

impl Builtin for Noop {
    fn input(input: NoopInput) -> Input {
        Input::Noop {
            payload: input.payload,
            fault: input.fault,
        }
    }
    fn value(output: NoopOutput) -> Value {
        Value::Noop {
            payload: output.payload,
        }
    }
}

impl Builtin for Io {
    fn input(input: IoInput) -> Input {
        Input::Io { ms: input.ms }
    }
    fn value(slept_ms: u64) -> Value {
        Value::Io { slept_ms }
    }
}

impl Builtin for Cpu {
    fn input(input: CpuInput) -> Input {
        Input::Cpu { iters: input.iters }
    }
    fn value(total: u64) -> Value {
        Value::Cpu { total }
    }
}

impl Builtin for Fetch {
    fn input(input: FetchInput) -> Input {
        Input::Fetch {
            ticker: input.ticker,
        }
    }
    fn value(output: Quote) -> Value {
        Value::Quote(output)
    }
}

impl Builtin for Files {
    fn input(path: FilePath) -> Input {
        Input::File { path }
    }
    fn value(output: FileStats) -> Value {
        Value::FileStats(output)
    }
}
