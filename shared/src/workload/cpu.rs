//! The `cpu` workload: the notebook's `cpu_bound_task`, `total += i * i` for `i in 0..iters`.

use serde::{Deserialize, Serialize};

use crate::{Attempt, Task, TaskError};

/// Sums squares, optionally under a process-wide lock as CPython's GIL would.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// Hold one process-wide lock while the work runs (`--gil`).
    pub gil: bool,
}

/// Returns the wrapping sum of squares.
impl Task for Cpu {
    const NAME: &'static str = "cpu";
    type Input = CpuInput;
    type Output = u64;

    fn run(&self, input: &CpuInput, _: &Attempt) -> Result<u64, TaskError> {
        let _gil = super::gil::hold(self.gil);
        Ok(sum_of_squares(input.iters))
    }
}

/// One `cpu` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInput {
    /// Iterations of the loop.
    pub iters: u64,
}

#[cfg(not(target_arch = "x86_64"))]
use std::hint::black_box;

/// The sum of `i * i` for `i in 0..iters`, in wrapping `u64` arithmetic, with the loop kept
/// real: an optimization barrier on `i` stops the compiler from replacing the loop by its
/// closed form.
///
/// On x86-64 the barrier is an empty `asm!` that keeps `i` in a register.
/// `std::hint::black_box` (used elsewhere) does the same job through a stack slot, and a
/// store and reload per iteration made the loop's speed depend on the thread's stack
/// address: identical machine code ran 1.4x faster in the worker process than on the
/// coordinator's threads (measured with `bench --suite scaling`), which would have
/// credited processes with a speedup threads cannot get.
/// `inline(never)` keeps one copy of the code for every caller.
#[inline(never)]
pub fn sum_of_squares(iters: u64) -> u64 {
    let mut total: u64 = 0;
    for i in 0..iters {
        let i = opaque(i);
        total = total.wrapping_add(i.wrapping_mul(i));
    }
    total
}

/// Returns `x`, unknown to the optimizer, without touching memory.
#[inline(always)]
fn opaque(mut x: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: an empty asm block that only claims to read and write one register.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) x, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        x = black_box(x);
    }
    x
}

/// The closed form `(n-1) n (2n-1) / 6` mod 2^64, computed in `u128` (and by parts where
/// even that overflows), for checking [`sum_of_squares`].
pub fn cpu_closed_form(iters: u64) -> u64 {
    if iters == 0 {
        return 0;
    }
    let n = u128::from(iters);
    // One of n-1, n is even and one of n-1, n, 2n-1 is divisible by 3: divide first,
    // then multiply mod 2^128, which keeps the low 64 bits exact.
    let mut factors = [n - 1, n, 2 * n - 1];
    for divisor in [2u128, 3] {
        if let Some(f) = factors.iter_mut().find(|f| **f % divisor == 0) {
            *f /= divisor;
        }
    }
    factors.iter().fold(1u128, |acc, f| acc.wrapping_mul(*f)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_matches_closed_form() {
        for iters in [0, 1, 2, 3, 10, 1000, 1_000_003, 3_000_000] {
            assert_eq!(
                sum_of_squares(iters),
                cpu_closed_form(iters),
                "iters={iters}"
            );
        }
    }

    #[test]
    fn closed_form_small_values() {
        assert_eq!(cpu_closed_form(1), 0);
        assert_eq!(cpu_closed_form(4), 1 + 4 + 9);
    }
}
