//! `coordinator info`: the machine, and which worker binary a run would start.

use std::io::Write;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::InfoArgs;
use crate::machine::Machine;
use workpool::pool::WorkerBinary;

/// Prints the facts; the worker's absence is reported, not an error. A full or closed
/// standard output is an error to report (the caller treats a closed pipe as success),
/// never a panic.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    print(args, &mut out)
        .and_then(|()| out.flush())
        .context("cannot write standard output")
}

fn print(args: &InfoArgs, out: &mut impl Write) -> std::io::Result<()> {
    let machine = Machine::read();
    let worker = WorkerBinary::locate(args.worker_bin.as_deref());
    if args.json {
        let worker = match &worker {
            Ok(bin) => json!({ "path": bin.path, "found_by": bin.source }),
            Err(err) => json!({ "error": err.to_string() }),
        };
        let facts = json!({
            "machine": machine,
            "worker": worker,
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": workpool::protocol::PROTOCOL_VERSION,
        });
        serde_json::to_writer_pretty(&mut *out, &facts)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "workpool {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "cpu:        {}", machine.cpu)?;
    writeln!(
        out,
        "cores:      {} logical, {} physical",
        machine.logical_cores,
        machine
            .physical_cores
            .map_or("unknown".to_string(), |n| n.to_string())
    )?;
    writeln!(out, "memory:     {} MiB", machine.memory_total_mib)?;
    writeln!(
        out,
        "os:         {} (kernel {})",
        machine.os, machine.kernel
    )?;
    match worker {
        Ok(bin) => writeln!(
            out,
            "worker:     {} ({})",
            bin.path.display(),
            how_found(bin.source)
        ),
        Err(err) => writeln!(out, "worker:     not usable: {err}"),
    }?;
    writeln!(
        out,
        "protocol:   version {}",
        workpool::protocol::PROTOCOL_VERSION
    )?;
    Ok(())
}

/// `from --worker-bin`, `from $WORKPOOL_WORKER`, or `next to coordinator`.
fn how_found(source: &str) -> String {
    if source.starts_with("--") {
        format!("from {source}")
    } else if source.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        format!("from ${source}")
    } else {
        source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::how_found;

    #[test]
    fn says_where_the_worker_came_from() {
        assert_eq!(how_found("--worker-bin"), "from --worker-bin");
        assert_eq!(how_found("WORKPOOL_WORKER"), "from $WORKPOOL_WORKER");
        assert_eq!(how_found("next to coordinator"), "next to coordinator");
    }
}
