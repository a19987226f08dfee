//! The coordinator's side of the zygote (see [`crate::worker::zygote`]): one worker
//! program started per pool that forks its workers, which then join the pool as a
//! spawned worker would.

use std::ops::Range;

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use super::process::{
    accept_with_deadline, worker_command, ChildGuard, Handshake, Pending, WorkerBinary,
    HANDSHAKE_DEADLINE,
};
use super::PoolError;
use crate::worker::env;
use crate::worker::zygote::{FirstWorker, ForkRequest, Forked, ZygoteBootstrap, MAX_FIRST_WORKERS};

/// A running zygote. Dropping it hangs up, which ends it; its guard reaps it.
pub(super) struct Zygote {
    requests: IpcSender<ForkRequest>,
    forked: IpcReceiver<Forked>,
    _child: ChildGuard,
}

impl Zygote {
    /// Starts the worker program as a zygote that forks the workers of slots `0..first`
    /// (at most [`MAX_FIRST_WORKERS`]) at once, and waits for it to serve; returns those
    /// workers too. The error says why it did not start; the caller then spawns its
    /// workers itself.
    pub fn start(
        bin: &WorkerBinary,
        first: usize,
    ) -> Result<(Zygote, Vec<Result<Pending, PoolError>>), String> {
        let (server, name) = IpcOneShotServer::<ZygoteBootstrap>::new()
            .map_err(|err| format!("cannot open ipc server: {err}"))?;
        let child = worker_command(bin)
            .env(env::ZYGOTE, &name)
            .env(
                env::ZYGOTE_WORKERS,
                first.min(MAX_FIRST_WORKERS).to_string(),
            )
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", bin.path.display()))?;
        let mut child = ChildGuard::new(child.id());
        let bootstrap = accept_with_deadline(server, &name, &mut child, HANDSHAKE_DEADLINE)?;
        let first = bootstrap
            .first
            .into_iter()
            .zip(0u32..)
            .map(|(FirstWorker { forked, bootstrap }, id)| match forked {
                Ok(pid) => Ok(Pending {
                    id,
                    handshake: Handshake::Channel(bootstrap),
                    child: ChildGuard::new(pid),
                }),
                Err(reason) => Err(PoolError::Spawn { id, reason }),
            })
            .collect();
        let zygote = Zygote {
            requests: bootstrap.requests,
            forked: bootstrap.forked,
            _child: child,
        };
        Ok((zygote, first))
    }

    /// Forks the workers of `slots`: every request goes out before the first answer is
    /// read, so the workers start up while the zygote forks the next ones. An error means
    /// the zygote no longer serves.
    pub fn fork_all(&mut self, slots: Range<usize>) -> Result<Vec<Pending>, String> {
        let mut handshakes = Vec::with_capacity(slots.len());
        for slot in slots {
            let (bootstrap, receiver) = ipc::channel().map_err(|err| err.to_string())?;
            let id = slot as u32;
            self.requests
                .send(ForkRequest { id, bootstrap })
                .map_err(|err| format!("zygote gone: {err}"))?;
            handshakes.push((id, receiver));
        }
        handshakes
            .into_iter()
            .map(|(id, receiver)| {
                let pid = self
                    .forked
                    .try_recv_timeout(HANDSHAKE_DEADLINE)
                    .map_err(|err| format!("zygote gone: {err}"))??;
                Ok(Pending {
                    id,
                    handshake: Handshake::Channel(receiver),
                    child: ChildGuard::new(pid),
                })
            })
            .collect()
    }
}
