//! The coordinator's side of the zygote (see [`crate::worker::zygote`]): one worker
//! program started per pool that forks its workers, which then join the pool as a
//! spawned worker would.

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use super::process::{
    accept_with_deadline, worker_command, ChildGuard, Handshake, Pending, WorkerBinary,
    HANDSHAKE_DEADLINE,
};
use super::PoolError;
use crate::worker::env;
use crate::worker::zygote::{FirstWorker, ForkRequest, Forked, ZygoteBootstrap};

/// A running zygote. Dropping it hangs up, which ends it; its guard reaps it.
pub(super) struct Zygote {
    requests: IpcSender<ForkRequest>,
    forked: IpcReceiver<Forked>,
    child: ChildGuard,
}

impl Zygote {
    /// Starts the worker program as a zygote that forks the workers of slots `0..first`
    /// at once, and hands each to `each` as soon as it is forked: the first ones join
    /// while the zygote forks the next. The error says why it did not start or stopped;
    /// the caller then spawns the workers it did not get.
    pub fn start(
        bin: &WorkerBinary,
        first: usize,
        mut each: impl FnMut(Result<Pending, PoolError>),
    ) -> Result<Zygote, String> {
        let (server, name) = IpcOneShotServer::<ZygoteBootstrap>::new()
            .map_err(|err| format!("cannot open ipc server: {err}"))?;
        let mut command = worker_command(bin);
        command
            .env(env::ZYGOTE, &name)
            .env(env::ZYGOTE_WORKERS, first.to_string());
        let child = command
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", bin.path.display()))?;
        let mut child = ChildGuard::new(child.id());
        let bootstrap = accept_with_deadline(server, &name, &mut child, HANDSHAKE_DEADLINE)?;
        for id in 0..first as u32 {
            let FirstWorker { forked, bootstrap } = bootstrap
                .first
                .try_recv_timeout(HANDSHAKE_DEADLINE)
                .map_err(|err| format!("zygote gone: {err}"))?;
            each(match forked {
                Ok(pid) => Ok(Pending {
                    id,
                    handshake: Handshake::Channel(bootstrap),
                    child: ChildGuard::new(pid),
                }),
                Err(reason) => Err(PoolError::Spawn { id, reason }),
            });
        }
        Ok(Zygote {
            requests: bootstrap.requests,
            forked: bootstrap.forked,
            child,
        })
    }

    /// Forks the worker of `slot`. An error means the zygote no longer serves.
    pub fn fork(&mut self, slot: usize) -> Result<Pending, String> {
        let (bootstrap, receiver) = ipc::channel().map_err(|err| err.to_string())?;
        let id = slot as u32;
        self.requests
            .send(ForkRequest { id, bootstrap })
            .map_err(|err| format!("zygote gone: {err}"))?;
        let pid = self
            .forked
            .try_recv_timeout(HANDSHAKE_DEADLINE)
            .map_err(|err| format!("zygote gone: {err}"))??;
        Ok(Pending {
            id,
            handshake: Handshake::Channel(receiver),
            child: ChildGuard::new(pid),
        })
    }

    /// Hangs up, which ends the zygote; its guard is left to reap it.
    pub fn hang_up(self) -> ChildGuard {
        self.child
    }
}
