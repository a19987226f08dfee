//! What every example takes from its command line: where its tasks run.

use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _, Result};
use workpool::broker::BrokerUrl;
use workpool::{BackendKind, PoolBuilder};

/// Where the tasks run.
#[derive(clap::Args, Debug)]
pub struct Backend {
    /// process, thread, sequential or redis.
    #[arg(long, value_enum, default_value_t = BackendKind::Process)]
    pub backend: BackendKind,
    /// Worker processes or threads (0: one per logical CPU).
    #[arg(long, short, default_value_t = 0)]
    pub workers: usize,
    /// The Redis broker of `--backend redis`.
    #[arg(long, env = "WORKPOOL_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// With `--backend redis`: broker workers of this very program to start on this host
    /// (0: rely on workers started elsewhere with WORKPOOL_ROLE=worker).
    #[arg(long, default_value_t = 2)]
    pub local_workers: usize,
}

impl Backend {
    /// A pool builder for these flags, and the local broker workers it needs (stopped
    /// when dropped).
    pub fn builder(&self) -> Result<(PoolBuilder, LocalWorkers)> {
        let builder = PoolBuilder::new()
            .backend(self.backend)
            .workers(self.workers);
        if self.backend != BackendKind::Redis {
            return Ok((builder, LocalWorkers(Vec::new())));
        }
        let Some(raw) = &self.broker else {
            bail!("--backend redis needs --broker URL (or $WORKPOOL_BROKER)");
        };
        let url = BrokerUrl::parse(raw)?;
        let workers = (0..self.local_workers)
            .map(|_| start_broker_worker(raw))
            .collect::<Result<_>>()?;
        // A few slots per worker keep them busy; more would only queue on the broker.
        let slots = if self.workers == 0 { 16 } else { self.workers };
        Ok((builder.workers(slots).broker(url), LocalWorkers(workers)))
    }
}

/// This program, started as a broker worker: the same binary serves the same task types.
fn start_broker_worker(url: &str) -> Result<Child> {
    let me = std::env::current_exe().context("cannot find this program")?;
    Command::new(me)
        .env(workpool::worker::env::ROLE, "worker")
        .env(workpool::worker::env::BROKER, url)
        .env(
            workpool::worker::env::PARENT,
            std::process::id().to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start a broker worker")
}

/// Broker workers this program started: stopped (SIGTERM, then waited for) when dropped.
pub struct LocalWorkers(Vec<Child>);

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill only sends a signal to our own, not yet reaped, child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}
