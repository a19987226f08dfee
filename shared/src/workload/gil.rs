//! A stand-in for CPython's global interpreter lock, for `--gil`: one lock per process held
//! while CPU work runs and released while sleeping, so the thread backend shows what the
//! notebook measured in Python. Each worker process has its own, exactly as in Python.

use std::sync::{Mutex, MutexGuard};

static GIL: Mutex<()> = Mutex::new(());

/// Takes the lock when `enabled`; the guard releases it.
pub fn hold(enabled: bool) -> Option<MutexGuard<'static, ()>> {
    // A task that panicked while holding it poisons nothing we rely on.
    enabled.then(|| GIL.lock().unwrap_or_else(|poison| poison.into_inner()))
}
