//! The plan: what the command line asked for, turned into the run's shared settings and a
//! lazy stream of task inputs (a million tasks are never all in memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use shared::task::FilePath;
use shared::workload::fault::Fault;
use shared::workload::fetch::{FetchSettings, DEFAULT_TICKERS};
use shared::workload::files::FileSettings;
use shared::{workload, Context, Input};

use crate::cli::{FetchArgs, FilesArgs, Workload};

/// A run's tasks, produced lazily and in input order.
pub struct Plan {
    /// The workload's name, as on the command line.
    pub workload: &'static str,
    pub context: Context,
    pub inputs: Box<dyn Iterator<Item = Input> + Send>,
    /// The files the tasks will read, so that `--output` can refuse to overwrite one.
    pub input_files: Arc<[PathBuf]>,
}

impl Plan {
    pub fn from_cli(workload: &Workload) -> Result<Plan> {
        let seed = workload.options().seed;
        let mut context = Context {
            seed,
            // With a timeout, a runner reports each task as it ends: an outcome held back
            // for batching would make the scheduler blame the wrong task for a hang.
            report_each_task: workload.options().timeout.is_some(),
            ..Context::default()
        };
        let mut input_files: Arc<[PathBuf]> = Arc::new([]);
        let inputs: Box<dyn Iterator<Item = Input> + Send> = match workload {
            Workload::Noop(args) => {
                if args.payload > shared::codec::MAX_PAYLOAD_BYTES {
                    bail!(
                        "--payload {} is larger than the {}-byte limit",
                        args.payload,
                        shared::codec::MAX_PAYLOAD_BYTES
                    );
                }
                let len = args.payload;
                let backend = args.run.backend;
                if let Some(spec) = args.fault.iter().find(|f| f.fault.kind.ends_process()) {
                    use crate::pool::BackendKind;
                    if !matches!(backend, BackendKind::Process | BackendKind::Redis) {
                        bail!(
                            "--fault {}@{} would end the coordinator itself on the {} \
                             backend, where tasks run inside it: use --backend process (a \
                             crashing task taking the whole pool down is what threads risk)",
                            spec.fault.kind.as_str(),
                            spec.index,
                            backend.as_str()
                        );
                    }
                }
                let faults: std::collections::HashMap<u64, Fault> =
                    args.fault.iter().map(|f| (f.index, f.fault)).collect();
                Box::new((0..args.count).map(move |index| Input::Noop {
                    payload: workload::noop_payload(index, len),
                    fault: faults.get(&index).copied(),
                }))
            }
            Workload::Io(args) => {
                if args.ms.is_empty() {
                    bail!("--ms needs at least one value");
                }
                let ms = args.ms.clone();
                Box::new((0..args.count).map(move |index| Input::Io {
                    ms: ms[(index % ms.len() as u64) as usize],
                }))
            }
            Workload::Cpu(args) => {
                context.gil = args.gil;
                let iters = args.iters;
                Box::new((0..args.count).map(move |_| Input::Cpu { iters }))
            }
            Workload::Fetch(args) => {
                context.fetch = fetch_settings(args)?;
                let tickers = tickers(args)?;
                Box::new(tickers.into_iter().map(|ticker| Input::Fetch { ticker }))
            }
            Workload::Files(args) => {
                if args.price_column.trim().is_empty() {
                    bail!("--price-column needs a column name");
                }
                context.files = FileSettings {
                    io_delay_ms: args.io_delay_ms,
                    price_column: args.price_column.clone(),
                    missing: args.missing,
                };
                input_files = expand_paths(args)?.into();
                let paths = Arc::clone(&input_files);
                Box::new((0..paths.len()).map(move |i| Input::File {
                    path: FilePath::from(paths[i].as_path()),
                }))
            }
        };
        Ok(Plan {
            workload: workload.name(),
            context,
            inputs,
            input_files,
        })
    }
}

/// Parses `LO..HI` or a single number of milliseconds.
pub fn parse_latency(text: &str) -> Result<(u64, u64)> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("--latency-ms: `{s}` is not a whole number of milliseconds"))
    };
    let (lo, hi) = match text.split_once("..") {
        Some((lo, hi)) => (parse(lo)?, parse(hi)?),
        None => {
            let ms = parse(text)?;
            (ms, ms)
        }
    };
    if lo > hi {
        bail!("--latency-ms {text}: the low end is above the high end");
    }
    Ok((lo, hi))
}

fn fetch_settings(args: &FetchArgs) -> Result<FetchSettings> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!(
            "--fail-rate takes a probability from 0 to 1, not {}",
            args.fail_rate
        );
    }
    Ok(FetchSettings {
        latency_ms: parse_latency(&args.latency_ms)?,
        slow: args.slow.clone(),
        slow_ms: args.slow_ms,
        reject: args.reject.clone(),
        fail_rate: args.fail_rate,
    })
}

/// The tickers to fetch: `--tickers`, `--tickers-file`, or the notebook's sixteen.
fn tickers(args: &FetchArgs) -> Result<Vec<String>> {
    let tickers: Vec<String> = if let Some(path) = &args.tickers_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read tickers from {}", path.display()))?;
        text.lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    } else if args.tickers.is_empty() {
        DEFAULT_TICKERS.iter().map(|t| t.to_string()).collect()
    } else {
        args.tickers.iter().map(|t| t.trim().to_string()).collect()
    };
    if tickers.is_empty() {
        bail!("no tickers to fetch");
    }
    Ok(tickers)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_forms() {
        assert_eq!(parse_latency("100..500").unwrap(), (100, 500));
        assert_eq!(parse_latency("250").unwrap(), (250, 250));
        assert!(parse_latency("500..100").is_err());
        assert!(parse_latency("fast").is_err());
        assert!(parse_latency("1..").is_err());
    }
}
