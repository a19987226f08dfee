//! The plan: what the command line asked for, turned into the run's shared settings and a
//! lazy stream of task inputs (a million tasks are never all in memory).

use anyhow::{bail, Result};
use shared::{workload, Context, Input};

use crate::cli::Workload;

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
            ..Context::default()
        };
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
                Box::new((0..args.count).map(move |index| Input::Noop {
                    payload: workload::noop_payload(index, len),
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
        };
        Ok(Plan {
            workload: workload.name(),
            context,
            inputs,
        })
    }
}
