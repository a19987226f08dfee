//! The notebook's `cpu_bound_task`: `total += i * i` for `i in 0..iters`.

use std::hint::black_box;

/// The sum of `i * i` for `i in 0..iters`, in wrapping `u64` arithmetic. `black_box` keeps
/// the loop real: without it the optimizer replaces the loop by its closed form.
/// `inline(never)` gives the loop the same machine code in the coordinator (thread and
/// sequential backends) and in the worker: inlined into different callers, this tiny loop
/// was laid out differently and ran twice as fast in one binary as in the other, which
/// would have made the process backend look better than it is.
#[inline(never)]
pub fn sum_of_squares(iters: u64) -> u64 {
    let mut total: u64 = 0;
    for i in 0..iters {
        let i = black_box(i);
        total = total.wrapping_add(i.wrapping_mul(i));
    }
    total
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
