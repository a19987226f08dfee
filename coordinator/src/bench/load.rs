//! `bench --load N`: CPU hogs that keep the machine busy while the latency suite measures
//! again, so that a round trip on a busy machine is seen next to the idle one. Each hog is
//! `python3 -c "while True: pass"`, the load the published figures were taken under.
//! Also the one way this bench starts helper processes that must never outlive it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::Result;

/// What the hogs' command line carries after the script, so that `ps` (and a test) can
/// tell whose hogs they are: `workpool-load-of-PID`.
pub const MARKER: &str = "workpool-load-of-";

/// How long the hogs run before anything is measured beside them.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

/// The running hogs, killed and reaped when dropped (on every error path too); if this
/// process dies first, the kernel kills them (see [`die_with_parent`]).
pub struct Load(Vec<Child>);

impl Load {
    /// Starts `hogs` spinning processes.
    pub fn start(hogs: usize) -> Result<Load> {
        let mut load = Load(Vec::with_capacity(hogs));
        let marker = format!("{MARKER}{}", std::process::id());
        for _ in 0..hogs {
            let mut command = Command::new("python3");
            command
                .args(["-c", "while True: pass", &marker])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut command);
            let hog = command.spawn().map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => {
                    anyhow::anyhow!("--load needs python3 (its hogs are `python3 -c \"while True: pass\"`), which is not installed")
                }
                _ => anyhow::Error::new(err).context("cannot start a --load hog"),
            })?;
            load.0.push(hog);
        }
        // A user's busy machine has had its hogs for a while: give these time to start
        // and the kernel's scheduler time to treat them as the long runners they are
        // (round trips measured next to hogs a moment old came out up to 10x different).
        std::thread::sleep(SETTLE);
        Ok(load)
    }

    /// How the measurements taken under this load are labelled.
    pub fn label(hogs: usize) -> String {
        format!("under {hogs} CPU hogs")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// Makes the kernel SIGKILL the child when the thread that starts it ends, which is why
/// the bench starts its helpers from the thread that measures and is done with them
/// (waited for, or killed by [`Load`]'s drop) before that thread ends: a bench killed
/// with SIGKILL, or interrupted while a suite is abandoned, leaves nothing behind.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, and makes only
    // async-signal-safe system calls (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // A parent that died before the prctl would never send the signal.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}
