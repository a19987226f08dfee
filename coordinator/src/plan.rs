//! The plan: what the command line asked for, turned into the run's shared settings and a
//! lazy stream of task inputs (a million tasks are never all in memory).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use shared::workload::fault;
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
        let inputs: Box<dyn Iterator<Item = Input> + Send> = match workload {
            Workload::Noop(args) => {
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
                let faults = fault::by_index(&args.fault, args.count)?;
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
                // `--count`: the first N tickers, going round the list if N is larger.
                let count = args.count.unwrap_or(tickers.len() as u64);
                Box::new((0..count).map(move |i| Input::Fetch {
                    ticker: tickers[(i % tickers.len() as u64) as usize].clone(),
                }))
            }
            Workload::Files(args) => {
                context.files = FileSettings {
                    io_delay_ms: args.io_delay_ms,
                };
                let paths = expand_paths(args)?;
                Box::new(paths.into_iter().map(|path| Input::File {
                    path: path.to_string_lossy().into_owned(),
                }))
            }
        };
        Ok(Plan {
            workload: workload.name(),
            context,
            inputs,
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
/// given. A path that does not exist is kept: its task reports the missing file.
fn expand_paths(args: &FilesArgs) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for input in &args.inputs {
        let path = Path::new(input);
        if input.contains(['*', '?', '[']) && !path.exists() {
            let matches = glob::glob(input)
                .with_context(|| format!("bad glob pattern `{input}`"))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("cannot expand `{input}`"))?;
            if matches.is_empty() {
                bail!("no file matches `{input}`");
            }
            paths.extend(matches);
        } else if path.is_dir() {
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
        } else {
            paths.push(path.to_path_buf());
        }
    }
    Ok(paths)
}
