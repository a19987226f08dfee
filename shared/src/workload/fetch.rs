//! The `fetch` workload: the notebook's simulated stock-quote API.
//! (Interface fixed here; the implementation is being written.)

use serde::{Deserialize, Serialize};

use crate::TaskError;

/// The notebook's sixteen tickers, the default input of `run fetch`.
pub const DEFAULT_TICKERS: [&str; 16] = [
    "AAPL", "GOOGL", "MSFT", "AMZN", "META", "NVDA", "TSLA", "JPM", "BAC", "WMT", "PG", "JNJ",
    "UNH", "HD", "V", "MA",
];

/// Settings of the simulated API shared by every task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchSettings {
    /// Latency range in milliseconds, inclusive; `lo == hi` means fixed.
    pub latency_ms: (u64, u64),
    /// Tickers that always take `slow_ms` (the notebook's section 3).
    pub slow: Vec<String>,
    /// Latency of the slow tickers.
    pub slow_ms: u64,
    /// Tickers that fail with a permanent `invalid_input` error.
    pub reject: Vec<String>,
    /// Probability that an attempt fails with a transient `network` error.
    pub fail_rate: f64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            latency_ms: (100, 500),
            slow: Vec::new(),
            slow_ms: 800,
            reject: ["BAD", "INVALID", "ERROR"].map(String::from).to_vec(),
            fail_rate: 0.0,
        }
    }
}

/// One simulated quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub ticker: String,
    pub price: f64,
    pub change: f64,
    pub volume: u64,
    pub high_52w: f64,
    pub low_52w: f64,
    pub latency_ms: u64,
}

/// Fetches one quote: waits the simulated latency, then returns the quote or fails.
pub fn fetch(
    _seed: u64,
    _settings: &FetchSettings,
    ticker: &str,
    _attempt: u32,
) -> Result<Quote, TaskError> {
    Err(TaskError::new(
        crate::ErrorKind::InvalidInput,
        format!("fetch of {ticker}: not built yet"),
    ))
}
