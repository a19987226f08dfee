//! The `files` workload: summary statistics of one CSV of daily prices.
//! (Interface fixed here; the implementation is being written.)

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TaskError;

/// Settings shared by every `files` task of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSettings {
    /// Simulated slow-storage delay before reading each file (the notebook uses 100 ms).
    pub io_delay_ms: u64,
}

/// Summary statistics of one file, as the notebook's `process_stock_file` computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStats {
    pub ticker: String,
    pub rows: u64,
    pub start_price: f64,
    pub end_price: f64,
    pub total_return_pct: f64,
    pub volatility_pct: Option<f64>,
    pub avg_volume: f64,
    pub sharpe: Option<f64>,
}

/// Reads and summarises one file.
pub fn summarize(path: &Path, _settings: &FileSettings) -> Result<FileStats, TaskError> {
    Err(TaskError::new(
        crate::ErrorKind::Io,
        format!("{}: not built yet", path.display()),
    ))
}
