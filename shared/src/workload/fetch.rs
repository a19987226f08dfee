//! The `fetch` workload: the notebook's simulated stock-quote API (`simulate_fetch_stock_data`,
//! `fetch_with_variable_delay`, `unreliable_fetch` and exercise 1's 52-week range), made
//! deterministic: every random quantity comes from [`crate::seed::rng`].

use std::time::Duration;

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::{seed, ErrorKind, TaskError};

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
    /// The symbol asked for.
    pub ticker: String,
    /// Last price, in whole cents, in [10, 500).
    pub price: f64,
    /// Day's change, in whole cents, in [-5, 5).
    pub change: f64,
    /// Shares traded, in [100 000, 10 000 000).
    pub volume: u64,
    /// Highest close of the simulated 52-week path; at least `price`.
    pub high_52w: f64,
    /// Lowest close of the simulated 52-week path; at most `price`.
    pub low_52w: f64,
    /// Simulated network latency this attempt waited, in milliseconds.
    pub latency_ms: u64,
}

/// Longest accepted symbol; real ones are at most about 5, plus a share-class suffix.
pub const MAX_SYMBOL_LEN: usize = 10;

/// Trading days in the 52-week path (the usual annualisation constant, as in `files`).
const TRADING_DAYS: usize = 252;
/// Standard deviation of a simulated daily return.
const DAILY_VOLATILITY: f64 = 0.02;
/// Largest daily move of the path, in either direction.
const MAX_DAILY_MOVE: f64 = 0.5;

// One stream per purpose, so adding a draw to one never shifts the numbers of another.
const STREAM_QUOTE: u64 = 0x6665_7463_685f_7131; // "fetch_q1"
const STREAM_LATENCY: u64 = 0x6665_7463_685f_6c31; // "fetch_l1"
const STREAM_FAILURE: u64 = 0x6665_7463_685f_6631; // "fetch_f1"

/// Fetches simulated quotes; the settings of the simulated API are the task's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fetch(pub FetchSettings);

/// One `fetch` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchInput {
    /// The symbol to quote.
    pub ticker: String,
}

impl crate::Task for Fetch {
    const NAME: &'static str = "fetch";
    type Input = FetchInput;
    type Output = Quote;

    fn run(&self, input: &FetchInput, attempt: &crate::Attempt) -> Result<Quote, TaskError> {
        fetch(attempt.seed, &self.0, &input.ticker, attempt.number)
    }

    fn input_bytes(input: &FetchInput) -> usize {
        input.ticker.len()
    }
}

/// Fetches one quote: validates the ticker, waits the simulated latency, then returns the
/// quote or fails with a transient `network` error (the notebook's `unreliable_fetch`).
///
/// Validation comes first so a permanent error costs no latency. No lock is held while
/// sleeping, so threads overlap their waits as the notebook's `ThreadPoolExecutor` does.
pub fn fetch(
    seed: u64,
    settings: &FetchSettings,
    ticker: &str,
    attempt: u32,
) -> Result<Quote, TaskError> {
    validate(settings, ticker)?;
    let latency_ms = latency_ms(seed, settings, ticker, attempt);
    if latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(latency_ms));
    }
    if network_fails(seed, settings, ticker, attempt) {
        return Err(TaskError::new(
            ErrorKind::Network,
            format!("Network timeout for {ticker}"),
        ));
    }
    Ok(quote_for(seed, ticker, latency_ms))
}

/// Why `ticker` can never succeed, if it cannot: it is on `settings.reject` (exact match),
/// or it is not a [`plausible_symbol`]. These errors are permanent (`invalid_input`).
pub fn validate(settings: &FetchSettings, ticker: &str) -> Result<(), TaskError> {
    if settings.reject.iter().any(|r| r == ticker) {
        return Err(invalid(format!(
            "Invalid ticker symbol: {ticker} (on the reject list)"
        )));
    }
    if plausible_symbol(ticker) {
        return Ok(());
    }
    let upper = ticker.to_ascii_uppercase();
    let message = if plausible_symbol(&upper) {
        format!("Invalid ticker symbol: {ticker} (symbols are upper case: try {upper})")
    } else {
        format!(
            "Invalid ticker symbol: {} (expected 1 to {MAX_SYMBOL_LEN} of A-Z, 0-9, '.', '-', \
             starting with a letter)",
            shown(ticker)
        )
    };
    Err(invalid(message))
}

/// Whether `ticker` looks like an exchange symbol: 1 to [`MAX_SYMBOL_LEN`] characters of
/// `A-Z`, `0-9`, `.` and `-`, starting with a letter (so `BRK.B` and `BF-B` pass, `aapl`,
/// `""` and `$X` do not).
pub fn plausible_symbol(ticker: &str) -> bool {
    let bytes = ticker.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_uppercase() && bytes.len() <= MAX_SYMBOL_LEN => bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-')),
        _ => false,
    }
}

/// The simulated latency of one attempt: `settings.slow_ms` for a slow ticker, otherwise a
/// uniform whole number of milliseconds in `settings.latency_ms` (inclusive; the bounds are
/// taken in either order). Keyed by the attempt as well as the ticker, so a retry after a
/// timeout draws a fresh latency while the first attempt's stays the same on every rerun.
pub fn latency_ms(seed: u64, settings: &FetchSettings, ticker: &str, attempt: u32) -> u64 {
    if settings.slow.iter().any(|s| s == ticker) {
        return settings.slow_ms;
    }
    let (a, b) = settings.latency_ms;
    let (lo, hi) = (a.min(b), a.max(b));
    if lo == hi {
        return lo;
    }
    seed::rng(
        seed,
        attempt_key(ticker, attempt).as_bytes(),
        STREAM_LATENCY,
    )
    .random_range(lo..=hi)
}

/// Whether this attempt fails with a simulated network error: a uniform draw in `[0, 1)`
/// below `settings.fail_rate`, keyed by (seed, ticker, attempt) so a rerun fails the same
/// attempts and a retry gets a new draw. A rate of 1 always fails; 0 (or NaN) never does.
pub fn network_fails(seed: u64, settings: &FetchSettings, ticker: &str, attempt: u32) -> bool {
    if settings.fail_rate.is_nan() || settings.fail_rate <= 0.0 {
        return false;
    }
    let draw: f64 = seed::rng(
        seed,
        attempt_key(ticker, attempt).as_bytes(),
        STREAM_FAILURE,
    )
    .random();
    draw < settings.fail_rate
}

/// The quote of `ticker` under `seed`, without the wait: a function of (seed, ticker) only,
/// so every attempt, backend and worker sees the same data. `latency_ms` is only recorded.
///
/// Price and change are drawn as whole cents, which is "uniform, rounded to cents" without
/// rounding ever reaching the open upper bound. The 52-week range comes from a 252-day path
/// walked backwards from the price, so the price is always inside it.
pub fn quote_for(seed: u64, ticker: &str, latency_ms: u64) -> Quote {
    let mut rng = seed::rng(seed, ticker.as_bytes(), STREAM_QUOTE);
    let price_cents: u32 = rng.random_range(1_000..50_000);
    let change_cents: i32 = rng.random_range(-500..500);
    let volume: u64 = rng.random_range(100_000..10_000_000);
    let price = f64::from(price_cents) / 100.0;

    let (mut high, mut low) = (price, price);
    let mut close = price;
    for _ in 1..TRADING_DAYS {
        // The previous day's close is today's divided by today's gross return; clamping the
        // return keeps the path positive whatever the normal draw.
        let daily_return = (rng.sample::<f64, _>(StandardNormal) * DAILY_VOLATILITY)
            .clamp(-MAX_DAILY_MOVE, MAX_DAILY_MOVE);
        close /= 1.0 + daily_return;
        high = high.max(close);
        low = low.min(close);
    }
    // Rounding is monotonic, but the explicit bounds make the invariant independent of it.
    let high_52w = round_cents(high).max(price);
    let low_52w = round_cents(low).max(0.01).min(price);

    Quote {
        ticker: ticker.to_string(),
        price,
        change: f64::from(change_cents) / 100.0,
        volume,
        high_52w,
        low_52w,
        latency_ms,
    }
}

/// The generator key of one attempt. Validated symbols never contain `#`, so no two
/// (ticker, attempt) pairs share a key.
fn attempt_key(ticker: &str, attempt: u32) -> String {
    format!("{ticker}#{attempt}")
}

fn invalid(message: String) -> TaskError {
    TaskError::new(ErrorKind::InvalidInput, message)
}

/// A bounded, quoted rendering of untrusted input for an error message: control characters
/// escaped and a huge input cut short, so one bad ticker cannot flood the report.
fn shown(ticker: &str) -> String {
    const MAX_SHOWN: usize = 24;
    if ticker.chars().count() <= MAX_SHOWN {
        format!("{ticker:?}")
    } else {
        let head: String = ticker.chars().take(MAX_SHOWN).collect();
        format!("{head:?}...")
    }
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings that never sleep, so tests stay fast; no test asserts wall-clock time.
    fn instant() -> FetchSettings {
        FetchSettings {
            latency_ms: (0, 0),
            ..FetchSettings::default()
        }
    }

    fn tickers() -> Vec<String> {
        let mut all: Vec<String> = DEFAULT_TICKERS.iter().map(|t| t.to_string()).collect();
        all.extend((0..200).map(|i| format!("T{i}")));
        all
    }

    fn kind(result: Result<Quote, TaskError>) -> Option<ErrorKind> {
        result.err().map(|e| e.kind)
    }

    #[test]
    fn same_seed_and_ticker_give_the_same_quote() {
        let settings = instant();
        for ticker in DEFAULT_TICKERS {
            let first = fetch(7, &settings, ticker, 1);
            assert_eq!(first, fetch(7, &settings, ticker, 1));
            assert!(first.is_ok(), "{ticker}: {first:?}");
        }
    }

    #[test]
    fn a_retry_returns_the_same_quote() {
        let settings = instant();
        assert_eq!(
            fetch(3, &settings, "AAPL", 1),
            fetch(3, &settings, "AAPL", 4)
        );
    }

    #[test]
    fn different_seeds_give_different_data() {
        for ticker in DEFAULT_TICKERS {
            let (a, b) = (quote_for(1, ticker, 0), quote_for(2, ticker, 0));
            assert_ne!((a.price, a.volume), (b.price, b.volume), "{ticker}");
        }
    }

    #[test]
    fn different_tickers_give_different_data() {
        let quotes: Vec<Quote> = DEFAULT_TICKERS
            .iter()
            .map(|t| quote_for(42, t, 0))
            .collect();
        for (i, a) in quotes.iter().enumerate() {
            for b in &quotes[i + 1..] {
                assert_ne!(
                    (a.price, a.volume),
                    (b.price, b.volume),
                    "{} {}",
                    a.ticker,
                    b.ticker
                );
            }
        }
    }

    #[test]
    fn quotes_stay_in_range_and_inside_their_52_week_range() {
        let is_cents = |x: f64| ((x * 100.0).round() / 100.0 - x).abs() < 1e-9;
        for seed in 0..20 {
            for ticker in tickers() {
                let q = quote_for(seed, &ticker, 0);
                assert!((10.0..500.0).contains(&q.price), "{q:?}");
                assert!((-5.0..5.0).contains(&q.change), "{q:?}");
                assert!((100_000..10_000_000).contains(&q.volume), "{q:?}");
                assert!(0.0 < q.low_52w && q.low_52w <= q.price, "{q:?}");
                assert!(q.price <= q.high_52w, "{q:?}");
                for x in [q.price, q.change, q.high_52w, q.low_52w] {
                    assert!(is_cents(x), "{x} in {q:?}");
                }
            }
        }
    }

    #[test]
    fn the_52_week_range_is_usually_wider_than_the_price() {
        let wide = tickers()
            .iter()
            .map(|t| quote_for(42, t, 0))
            .filter(|q| q.low_52w < q.price && q.price < q.high_52w)
            .count();
        assert!(
            wide > tickers().len() / 2,
            "only {wide} quotes have a real range"
        );
    }

    #[test]
    fn plausible_symbols() {
        for ok in ["A", "AAPL", "BRK.B", "BF-B", "GOOGL", "X1", "ABCDEFGHIJ"] {
            assert!(plausible_symbol(ok), "{ok}");
        }
        for bad in [
            "",
            "aapl",
            "Aapl",
            "1AB",
            ".A",
            "A B",
            "$X",
            "ABCDEFGHIJK",
            "É",
            "A\n",
        ] {
            assert!(!plausible_symbol(bad), "{bad:?}");
        }
    }

    #[test]
    fn rejected_and_implausible_tickers_are_invalid_before_any_wait() {
        // A latency of an hour would hang the test if validation came after the sleep.
        let settings = FetchSettings {
            latency_ms: (3_600_000, 3_600_000),
            fail_rate: 1.0,
            ..FetchSettings::default()
        };
        for ticker in [
            "BAD",
            "INVALID",
            "ERROR",
            "",
            "aapl",
            "NOT A TICKER",
            "ABCDEFGHIJK",
        ] {
            let err = fetch(1, &settings, ticker, 1).expect_err(ticker);
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{ticker:?}");
            assert!(!err.kind.is_transient());
            assert!(err.message.starts_with("Invalid ticker symbol: "), "{err}");
        }
    }

    #[test]
    fn invalid_messages_help() {
        let settings = instant();
        let message = |t: &str| fetch(1, &settings, t, 1).expect_err(t).message;
        assert_eq!(
            message("BAD"),
            "Invalid ticker symbol: BAD (on the reject list)"
        );
        assert!(message("aapl").contains("try AAPL"));
        let long = "x".repeat(10_000);
        assert!(message(&long).len() < 200, "a long ticker is cut short");
        assert!(
            message("A\u{1b}").contains("\\u{1b}"),
            "control characters are escaped"
        );
    }

    #[test]
    fn the_reject_list_is_an_exact_match() {
        let settings = FetchSettings {
            reject: vec!["MSFT".to_string()],
            ..instant()
        };
        assert_eq!(
            kind(fetch(1, &settings, "MSFT", 1)),
            Some(ErrorKind::InvalidInput)
        );
        assert!(fetch(1, &settings, "MSF", 1).is_ok());
        assert!(
            fetch(1, &settings, "BAD", 1).is_ok(),
            "the default list was replaced"
        );
    }

    #[test]
    fn fail_rate_one_always_fails_and_zero_never() {
        let always = FetchSettings {
            fail_rate: 1.0,
            ..instant()
        };
        let never = FetchSettings {
            fail_rate: 0.0,
            ..instant()
        };
        for ticker in tickers() {
            for attempt in 1..4 {
                let err = fetch(5, &always, &ticker, attempt).expect_err(&ticker);
                assert_eq!(err.kind, ErrorKind::Network);
                assert!(err.kind.is_transient());
                assert_eq!(err.message, format!("Network timeout for {ticker}"));
                assert!(fetch(5, &never, &ticker, attempt).is_ok());
            }
        }
    }

    #[test]
    fn failures_are_reproducible_and_vary_by_attempt() {
        let settings = FetchSettings {
            fail_rate: 0.5,
            ..instant()
        };
        let all = tickers();
        for seed in 0..5 {
            let run = |attempt| -> Vec<bool> {
                all.iter()
                    .map(|t| network_fails(seed, &settings, t, attempt))
                    .collect()
            };
            assert_eq!(run(1), run(1), "a rerun fails the same attempts");
            assert_ne!(run(1), run(2), "a retry draws again");
        }
        // The retry story end to end: some ticker fails once, then succeeds.
        let recovered = (0..100).find_map(|seed| {
            all.iter().find(|t| {
                kind(fetch(seed, &settings, t, 1)) == Some(ErrorKind::Network)
                    && fetch(seed, &settings, t, 2).is_ok()
            })
        });
        assert!(recovered.is_some());
        // About half fail.
        let failed = all
            .iter()
            .filter(|t| network_fails(9, &settings, t, 1))
            .count();
        assert!(
            (all.len() / 4..all.len() * 3 / 4).contains(&failed),
            "{failed}"
        );
    }

    #[test]
    fn nan_or_negative_fail_rates_never_fail() {
        for fail_rate in [f64::NAN, -1.0] {
            let settings = FetchSettings {
                fail_rate,
                ..instant()
            };
            assert!(!network_fails(1, &settings, "AAPL", 1));
        }
    }

    #[test]
    fn slow_tickers_report_slow_ms() {
        let settings = FetchSettings {
            slow: vec!["TSLA".to_string()],
            slow_ms: 0,
            latency_ms: (200, 200),
            ..FetchSettings::default()
        };
        assert_eq!(fetch(1, &settings, "TSLA", 1).map(|q| q.latency_ms), Ok(0));
        let settings = FetchSettings {
            slow_ms: 800,
            ..settings
        };
        assert_eq!(latency_ms(1, &settings, "TSLA", 1), 800);
        assert_eq!(latency_ms(1, &settings, "AAPL", 1), 200);
    }

    #[test]
    fn latency_is_uniform_in_its_inclusive_range_and_reproducible() {
        let settings = FetchSettings {
            latency_ms: (100, 104),
            ..FetchSettings::default()
        };
        let draws: Vec<u64> = tickers()
            .iter()
            .map(|t| latency_ms(42, &settings, t, 1))
            .collect();
        assert!(draws.iter().all(|ms| (100..=104).contains(ms)));
        for ms in 100..=104 {
            assert!(draws.contains(&ms), "{ms} never drawn");
        }
        let again: Vec<u64> = tickers()
            .iter()
            .map(|t| latency_ms(42, &settings, t, 1))
            .collect();
        assert_eq!(draws, again);
        let reversed = FetchSettings {
            latency_ms: (104, 100),
            ..settings
        };
        assert_eq!(latency_ms(42, &reversed, "AAPL", 1), draws[0]);
    }

    #[test]
    fn the_quote_records_the_latency_waited() {
        let settings = FetchSettings {
            latency_ms: (1, 3),
            ..FetchSettings::default()
        };
        let quote = fetch(42, &settings, "AAPL", 1);
        assert_eq!(
            quote.map(|q| q.latency_ms),
            Ok(latency_ms(42, &settings, "AAPL", 1))
        );
    }
}
