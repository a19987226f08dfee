//! Numbers as a person reads them: three significant digits, in the unit that suits the
//! value (`220 ns`, not `0.000220 ms`), and comparisons that always read the same way
//! ("21x slower than threads", "1.5x faster than Python").

/// Three significant digits: more would be noise on a shared machine.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

const TIME: [(f64, &str); 4] = [(1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s")];
const RATE: [(f64, &str); 3] = [(1.0, "tasks/s"), (1e3, "k tasks/s"), (1e6, "M tasks/s")];
const SIZE: [(f64, &str); 3] = [(1.0, "KiB"), (1024.0, "MiB"), (1024.0 * 1024.0, "GiB")];

/// `value`, measured in `unit` (a [`Measurement`](super::Measurement) unit), in the unit
/// that keeps it between 1 and 1000 where there is one: `0.00022 ms` -> `220 ns`,
/// `2_400_000 tasks/s` -> `2.40 M tasks/s`, `2048 KiB` -> `2.00 MiB`.
pub fn format(value: f64, unit: &str) -> String {
    match unit {
        "s" => scaled(value * 1e9, &TIME),
        "ms" => scaled(value * 1e6, &TIME),
        "us" => scaled(value * 1e3, &TIME),
        "ns" => scaled(value, &TIME),
        "tasks/s" => scaled(value, &RATE),
        "KiB" => scaled(value, &SIZE),
        "x" => format!("{}x", num(value)),
        "" => num(value),
        other => format!("{} {other}", num(value)),
    }
}

/// `value` (in the first step's unit) divided by the largest step it reaches.
fn scaled(value: f64, steps: &[(f64, &str)]) -> String {
    let (factor, name) = steps
        .iter()
        .rev()
        .find(|(factor, _)| value.abs() >= *factor)
        .unwrap_or(&steps[0]);
    format!("{} {name}", num(value / factor))
}

/// Whether a larger value of `unit` is the better one (rates, speedups), or the smaller
/// (times, memory, overhead).
pub fn higher_is_better(unit: &str) -> bool {
    matches!(unit, "tasks/s" | "x")
}

/// How something measured in `unit` compares with `reference`, given how many times
/// better it is (`better` > 1: better, < 1: worse): "21x slower than threads",
/// "1.5x faster than Python", "2.0x smaller than ...", "as fast as sequential (1.00x)".
pub fn compare(better: f64, unit: &str, reference: &str) -> String {
    if !better.is_finite() || better <= 0.0 {
        return format!("not comparable with {reference}");
    }
    let (good, bad) = match unit {
        "KiB" => ("smaller", "larger"),
        "%" => ("lower", "higher"),
        _ => ("faster", "slower"),
    };
    let factor = better.max(1.0 / better);
    let shown = factor_text(factor);
    if shown == "1.00x" {
        let same = match unit {
            "KiB" => "as large as",
            "%" => "as high as",
            _ => "as fast as",
        };
        return format!("{same} {reference} (1.00x)");
    }
    let word = if better >= 1.0 { good } else { bad };
    format!("{shown} {word} than {reference}")
}

/// A factor with the digits that matter: `21x`, `1.5x`, `1.05x`.
pub fn factor_text(factor: f64) -> String {
    if factor >= 9.95 {
        format!("{factor:.0}x")
    } else if factor >= 1.095 {
        format!("{factor:.1}x")
    } else {
        format!("{factor:.2}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(0.0), "0");
    }

    #[test]
    fn times_take_the_unit_that_suits_them() {
        assert_eq!(format(0.000220, "ms"), "220 ns");
        assert_eq!(format(0.5, "us"), "500 ns");
        assert_eq!(format(13.5, "us"), "13.5 µs");
        assert_eq!(format(1500.0, "us"), "1.50 ms");
        assert_eq!(format(10.6, "ms"), "10.6 ms");
        assert_eq!(format(2500.0, "ms"), "2.50 s");
        assert_eq!(format(0.0, "ms"), "0 ns");
        // Negative values (an overhead below the work) scale by their size.
        assert_eq!(format(-0.002, "ms"), "-2.00 µs");
    }

    #[test]
    fn rates_and_sizes_scale_too() {
        assert_eq!(format(2_396_635.0, "tasks/s"), "2.40 M tasks/s");
        assert_eq!(format(81_000.0, "tasks/s"), "81.0 k tasks/s");
        assert_eq!(format(950.0, "tasks/s"), "950 tasks/s");
        assert_eq!(format(2048.0, "KiB"), "2.00 MiB");
        assert_eq!(format(40.0, "KiB"), "40.0 KiB");
        assert_eq!(format(15.8, "x"), "15.8x");
        assert_eq!(format(8.5, "%"), "8.50 %");
    }

    #[test]
    fn comparisons_read_one_way() {
        // A time 21 times the reference's: 1/21 as good.
        assert_eq!(
            compare(1.0 / 21.1, "us", "threads"),
            "21x slower than threads"
        );
        assert_eq!(compare(1.5, "us", "Python"), "1.5x faster than Python");
        assert_eq!(
            compare(0.553, "tasks/s", "threads"),
            "1.8x slower than threads"
        );
        assert_eq!(compare(2.0, "KiB", "Python"), "2.0x smaller than Python");
        assert_eq!(
            compare(1.001, "ms", "threads"),
            "as fast as threads (1.00x)"
        );
        assert_eq!(compare(1.04, "ms", "threads"), "1.04x faster than threads");
        assert_eq!(compare(f64::NAN, "ms", "x"), "not comparable with x");
    }
}
