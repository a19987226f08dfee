//! A task: one unit of work, as planned by the coordinator and run by a worker.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One task to run, as it crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Position of the task in the input; the key of every outcome.
    pub index: u64,
    /// 1 for the first try, incremented by each retry.
    pub attempt: u32,
    /// What to do.
    pub input: Input,
}

/// The per-task input of each workload. Settings shared by every task of a run live in
/// [`Context`], sent once per worker rather than once per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// Return at once, echoing `payload` back (unless `fault` strikes first).
    Noop {
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        fault: Option<crate::workload::fault::Fault>,
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

impl Input {
    /// Bytes of bulk data the input carries; the chunker keeps a batch's frame bounded by it.
    pub fn payload_len(&self) -> usize {
        match self {
            Input::Noop { payload, .. } => payload.len(),
            Input::Fetch { ticker } => ticker.len(),
            Input::File { path } => path.len_bytes(),
            Input::Io { .. } | Input::Cpu { .. } => 0,
        }
    }
}

/// A file's path as it crosses the process boundary: the operating system's bytes, exactly
/// (Unix paths are bytes), so that a name which is not UTF-8 still opens the file it names.
/// Text only for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FilePath(#[serde(with = "serde_bytes")] Vec<u8>);

impl FilePath {
    /// The path, borrowed: no copy on the way to `open`.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The path for people: bytes that are not UTF-8 become U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Length in bytes, for the chunker's frame budget.
    pub fn len_bytes(&self) -> usize {
        self.0.len()
    }
}

impl From<&Path> for FilePath {
    fn from(path: &Path) -> FilePath {
        FilePath(path.as_os_str().as_bytes().to_vec())
    }
}

impl From<PathBuf> for FilePath {
    fn from(path: PathBuf) -> FilePath {
        FilePath(path.into_os_string().into_vec())
    }
}

/// Settings shared by every task of a run, sent to each worker once after the handshake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Seed every random quantity of the run derives from.
    pub seed: u64,
    /// Settings of the `fetch` workload.
    pub fetch: crate::workload::fetch::FetchSettings,
    /// Settings of the `files` workload.
    pub files: crate::workload::files::FileSettings,
    /// Hold one process-wide lock while CPU work runs, as CPython's GIL does.
    pub gil: bool,
    /// Send each outcome as soon as its task ends instead of batching them (needed to
    /// tell which task of a batch overran a timeout).
    pub report_each_task: bool,
    /// Timestamp every task's journey (see [`crate::outcome::Trace`]), for `bench`.
    pub trace: bool,
}
