//! The plan: what the command line asked for, turned into the workload's task (the
//! settings every task of the run shares) and a lazy stream of its inputs (a million tasks
//! are never all in memory).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use workpool::workload::fetch::{FetchSettings, DEFAULT_TICKERS};
use workpool::workload::files::FileSettings;
use workpool::workload::{
    fault, noop_payload, Cpu, CpuInput, Fetch, FetchInput, FilePath, Files, Io, IoInput, Noop,
    NoopInput,
};
use workpool::Task;

use crate::cli::{FetchArgs, FilesArgs, Workload};

/// A run's tasks, produced lazily and in input order.
pub struct Plan {
    /// The workload's name, as on the command line.
    pub workload: &'static str,
    /// The workload's task and inputs.
    pub tasks: Tasks,
    /// How many inputs there are, when that is known before reading them.
    pub len: Option<usize>,
    /// The files the tasks will read, so that `--output` can refuse to overwrite one.
    pub input_files: Arc<[PathBuf]>,
    /// Set when an input file turned out bad part-way (the inputs then end there): the
    /// run reports what it ran, then fails with this.
    pub input_error: InputError,
}

/// An error met while reading inputs lazily, kept for after the run: an iterator of
/// inputs cannot return one.
#[derive(Debug, Clone, Default)]
pub struct InputError(Arc<Mutex<Option<String>>>);

impl InputError {
    fn set(&self, message: String) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(message);
        }
    }

    pub fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The task of one workload and its inputs, read lazily.
pub struct Typed<T: Task> {
    /// The settings every task of the run shares.
    pub task: T,
    /// The inputs, in input order.
    pub inputs: Box<dyn Iterator<Item = T::Input> + Send>,
}

impl<T: Task> Typed<T> {
    fn new(task: T, inputs: impl Iterator<Item = T::Input> + Send + 'static) -> Self {
        Typed {
            task,
            inputs: Box::new(inputs),
        }
    }
}

/// The run's task type: one variant per workload, so each runs on a pool made for it.
pub enum Tasks {
    Noop(Typed<Noop>),
    Io(Typed<Io>),
    Cpu(Typed<Cpu>),
    Fetch(Typed<Fetch>),
    Files(Typed<Files>),
}

impl Plan {
    pub fn from_cli(workload: &Workload) -> Result<Plan> {
        let input_error = InputError::default();
        let mut input_files: Arc<[PathBuf]> = Arc::new([]);
        let tasks = match workload {
            Workload::Noop(args) => {
                let len = args.payload;
                let backend = args.run.backend;
                if let Some(spec) = args.fault.iter().find(|f| f.fault.kind.ends_process()) {
                    use workpool::pool::BackendKind;
                    if !matches!(backend, BackendKind::Process | BackendKind::Redis) {
                        bail!(
                            "--fault {spec} would end the coordinator itself on the {} \
                             backend, where tasks run inside it: use --backend process (a \
                             crashing task taking the whole pool down is what threads risk)",
                            backend.as_str()
                        );
                    }
                }
                let faults = fault::by_index(&args.fault, args.count)?;
                let inputs = (0..args.count).map(move |index| NoopInput {
                    payload: noop_payload(index, len),
                    fault: faults.for_task(index),
                });
                Tasks::Noop(Typed::new(Noop, inputs))
            }
            Workload::Io(args) => {
                if args.ms.is_empty() {
                    bail!("--ms needs at least one value");
                }
                let ms = args.ms.clone();
                let inputs = (0..args.count).map(move |index| IoInput {
                    ms: ms[(index % ms.len() as u64) as usize],
                });
                Tasks::Io(Typed::new(Io, inputs))
            }
            Workload::Cpu(args) => {
                let iters = args.iters;
                let inputs = (0..args.count).map(move |_| CpuInput { iters });
                Tasks::Cpu(Typed::new(Cpu { gil: args.gil }, inputs))
            }
            Workload::Fetch(args) => {
                let task = Fetch(fetch_settings(args)?);
                let tickers = tickers(args, &input_error)?;
                Tasks::Fetch(Typed::new(
                    task,
                    tickers.map(|ticker| FetchInput { ticker }),
                ))
            }
            Workload::Files(args) => {
                if args.price_column.trim().is_empty() {
                    bail!("--price-column needs a column name");
                }
                let task = Files(FileSettings {
                    io_delay_ms: args.io_delay_ms,
                    price_column: args.price_column.clone(),
                    missing: args.missing,
                });
                input_files = expand_paths(args)?.into();
                let paths = Arc::clone(&input_files);
                let inputs = (0..paths.len()).map(move |i| FilePath::from(paths[i].as_path()));
                Tasks::Files(Typed::new(task, inputs))
            }
        };
        let (lo, hi) = match &tasks {
            Tasks::Noop(t) => t.inputs.size_hint(),
            Tasks::Io(t) => t.inputs.size_hint(),
            Tasks::Cpu(t) => t.inputs.size_hint(),
            Tasks::Fetch(t) => t.inputs.size_hint(),
            Tasks::Files(t) => t.inputs.size_hint(),
        };
        Ok(Plan {
            workload: workload.name(),
            tasks,
            len: (Some(lo) == hi).then_some(lo),
            input_files,
            input_error,
        })
    }
}

fn fetch_settings(args: &FetchArgs) -> Result<FetchSettings> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!(
            "--fail-rate takes a probability from 0 to 1, not {}",
            args.fail_rate
        );
    }
    Ok(FetchSettings {
        latency_ms: args.latency_ms,
        slow: args.slow.clone(),
        slow_ms: args.slow_ms,
        reject: args.reject.clone(),
        fail_rate: args.fail_rate,
    })
}

/// The longest line a tickers file may have: a ticker is a few characters, so a longer
/// line is not a tickers file (`/dev/zero`, a binary), and reading it whole would take
/// memory without bound.
pub const MAX_TICKERS_LINE: usize = 64 * 1024;
/// The longest ticker accepted.
pub const MAX_TICKER_LEN: usize = 64;

/// The tickers to fetch: `--tickers`, `--tickers-file` (read lazily, a line at a time), or
/// the notebook's sixteen; with `--count N`, the first N of them, going round the list
/// (reading the file again) if N is larger.
fn tickers(
    args: &FetchArgs,
    input_error: &InputError,
) -> Result<Box<dyn Iterator<Item = String> + Send>> {
    if let Some(long) = args
        .tickers
        .iter()
        .find(|t| t.trim().len() > MAX_TICKER_LEN)
    {
        bail!(
            "--tickers: `{}` is longer than {MAX_TICKER_LEN} bytes",
            excerpt(long)
        );
    }
    let listed: Vec<String> = if args.tickers.is_empty() {
        DEFAULT_TICKERS.iter().map(|t| t.to_string()).collect()
    } else {
        args.tickers.iter().map(|t| t.trim().to_string()).collect()
    };
    let file = args.tickers_file.clone();
    let error = input_error.clone();
    // One pass over the list; a file is opened anew for each pass.
    let pass = move || -> Result<Box<dyn Iterator<Item = String> + Send>> {
        Ok(match &file {
            Some(path) => {
                let opened = File::open(path)
                    .with_context(|| format!("cannot read tickers from {}", path.display()))?;
                Box::new(TickerLines::new(opened, path.clone(), error.clone()))
            }
            None => Box::new(listed.clone().into_iter()),
        })
    };
    let mut first_pass = pass()?;
    // Look at the first ticker now, so an empty or unreadable list fails before any
    // worker starts.
    let Some(first) = first_pass.next() else {
        match input_error.take() {
            Some(err) => bail!("{err}"),
            None => bail!("no tickers to fetch"),
        }
    };
    let first_pass = std::iter::once(first).chain(first_pass);
    let Some(count) = args.count else {
        return Ok(Box::new(first_pass));
    };
    let error = input_error.clone();
    let later_passes = std::iter::repeat_with(pass).map_while(move |next| match next {
        Ok(tickers) => Some(tickers),
        Err(err) => {
            error.set(format!("{err:#}"));
            None
        }
    });
    let rounds = std::iter::once(Box::new(first_pass) as Box<dyn Iterator<Item = String> + Send>)
        .chain(later_passes);
    Ok(Box::new(NonEmptyRounds::new(rounds).take(count as usize)))
}

/// Concatenates passes over a list, and ends at the first pass that yields nothing (a
/// file emptied since, or one that fails): going round an empty list would never end.
struct NonEmptyRounds<R: Iterator> {
    rounds: R,
    current: Option<R::Item>,
    current_yielded: bool,
}

impl<R> NonEmptyRounds<R>
where
    R: Iterator,
    R::Item: Iterator<Item = String>,
{
    fn new(rounds: R) -> Self {
        NonEmptyRounds {
            rounds,
            current: None,
            current_yielded: true,
        }
    }
}

impl<R> Iterator for NonEmptyRounds<R>
where
    R: Iterator,
    R::Item: Iterator<Item = String>,
{
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(ticker) = self.current.as_mut().and_then(Iterator::next) {
                self.current_yielded = true;
                return Some(ticker);
            }
            if !self.current_yielded {
                return None;
            }
            self.current = Some(self.rounds.next()?);
            self.current_yielded = false;
        }
    }
}

/// Tickers from a file, one line at a time: one per line, commas also separate, `#`
/// starts a comment. A line too long or not UTF-8 ends the tickers there, with an error
/// kept in [`InputError`].
struct TickerLines {
    reader: BufReader<File>,
    path: PathBuf,
    line: Vec<u8>,
    line_no: u64,
    pending: VecDeque<String>,
    error: InputError,
    done: bool,
}

impl TickerLines {
    fn new(file: File, path: PathBuf, error: InputError) -> TickerLines {
        TickerLines {
            reader: BufReader::new(file),
            path,
            line: Vec::new(),
            line_no: 0,
            pending: VecDeque::new(),
            error,
            done: false,
        }
    }

    /// Reads the next line's tickers into `pending`; false at the end or on an error.
    fn read_line(&mut self) -> Result<bool, String> {
        self.line.clear();
        self.line_no += 1;
        let where_ = || {
            format!(
                "--tickers-file {} line {}",
                self.path.display(),
                self.line_no
            )
        };
        let limit = MAX_TICKERS_LINE as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.line)
            .map_err(|err| format!("{}: {err}", where_()))?;
        if read == 0 {
            return Ok(false);
        }
        if self.line.len() > MAX_TICKERS_LINE {
            return Err(format!(
                "{}: longer than {MAX_TICKERS_LINE} bytes (is it a tickers file?)",
                where_()
            ));
        }
        let text =
            std::str::from_utf8(&self.line).map_err(|_| format!("{}: not UTF-8 text", where_()))?;
        let text = text.split('#').next().unwrap_or("");
        for ticker in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if ticker.len() > MAX_TICKER_LEN {
                return Err(format!(
                    "{}: `{}` is longer than {MAX_TICKER_LEN} bytes",
                    where_(),
                    excerpt(ticker)
                ));
            }
            self.pending.push_back(ticker.to_string());
        }
        Ok(true)
    }
}

impl Iterator for TickerLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(ticker) = self.pending.pop_front() {
                return Some(ticker);
            }
            if self.done {
                return None;
            }
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(err) => {
                    self.error.set(err);
                    self.done = true;
                }
            }
        }
    }
}

/// At most 40 characters of `text`, for an error message.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Files, directories (their `*.csv`, sorted) and glob patterns, expanded in the order
/// given. Names are kept as the OS gives them, UTF-8 or not. A path that does not exist is
/// a usage error, like a pattern that matches nothing: a typo should not cost a run.
fn expand_paths(args: &FilesArgs) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in &args.inputs {
        let path = Path::new(input);
        // A pattern is UTF-8 text with a wildcard that is not itself an existing name.
        let pattern = input
            .to_str()
            .filter(|text| text.contains(['*', '?', '[']) && !path.exists());
        if let Some(pattern) = pattern {
            let matches = glob::glob(pattern)
                .with_context(|| format!("bad glob pattern `{pattern}`"))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("cannot expand `{pattern}`"))?;
            if matches.is_empty() {
                bail!("no file matches `{pattern}`");
            }
            paths.extend(matches);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("cannot list {}", path.display()))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension()
                            .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
                    })
                    .collect();
                if found.is_empty() {
                    bail!("no .csv file in {}", path.display());
                }
                found.sort();
                paths.extend(found);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                bail!("{}: no such file or directory", path.display())
            }
            // Anything else (a file, or a path that cannot be inspected) is a task: its
            // outcome says what is wrong with it.
            _ => paths.push(path.to_path_buf()),
        }
    }
    Ok(paths)
}
