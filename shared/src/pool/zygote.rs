//! The coordinator's side of the zygote (see [`crate::worker::zygote`]): one worker
//! program started per pool that forks its workers, which then join the pool as a
//! spawned worker would.

use std::ops::Range;

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use super::process::{
    accept_with_deadline, worker_command, ChildGuard, Handshake, Pending, WorkerBinary,
    HANDSHAKE_DEADLINE,
};
use crate::worker::env;
use crate::worker::zygote::{ForkRequest, Forked, ZygoteBootstrap};

/// A running zygote. Dropping it hangs up, which ends it; its guard reaps it.
pub(super) struct Zygote {
    requests: IpcSender<ForkRequest>,
    forked: IpcReceiver<Forked>,
    _child: ChildGuard,
}

impl Zygote {
    /// Starts the worker program as a zygote and waits for it to serve. The error says
    /// why it did not; the caller then spawns its workers itself.
    pub fn start(bin: &WorkerBinary) -> Result<Zygote, String> {
        let (server, name) = IpcOneShotServer::<ZygoteBootstrap>::new()
            .map_err(|err| format!("cannot open ipc server: {err}"))?;
        let child = worker_command(bin)
            .env(env::ZYGOTE, &name)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", bin.path.display()))?;
        let mut child = ChildGuard::new(child.id());
        let bootstrap = accept_with_deadline(server, &name, &mut child, HANDSHAKE_DEADLINE)?;
        Ok(Zygote {
            requests: bootstrap.requests,
            forked: bootstrap.forked,
            _child: child,
        })
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
