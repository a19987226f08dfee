//! Byte sizes as people write them on a command line: `256MiB`, `4k`, `1.5G`, `65536`.

/// Parses a size: a number (a decimal fraction allowed) and an optional unit, `B`, `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (powers of 1024, as `ps` and `/proc` count memory; case
/// ignored, `KB`/`MB`/`GB`/`TB` read the same). The result is whole bytes, at most `max`.
pub fn parse_size(text: &str, max: u64) -> Result<u64, String> {
    let usage =
        || format!("`{text}` is not a size: write a number and a unit, e.g. 512KiB, 256MiB, 2G");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(usage()),
    };
    let value: f64 = number.parse().map_err(|_| usage())?;
    let bytes = (value * (1u64 << shift) as f64).round();
    if !bytes.is_finite() || bytes > max as f64 {
        return Err(format!(
            "`{text}` is more than the largest size allowed, {max} bytes"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_and_without_units() {
        let max = u64::MAX;
        assert_eq!(parse_size("65536", max), Ok(65536));
        assert_eq!(parse_size("4k", max), Ok(4096));
        assert_eq!(parse_size("256MiB", max), Ok(256 << 20));
        assert_eq!(parse_size("1.5G", max), Ok(3 << 29));
        assert_eq!(parse_size("2 GB", max), Ok(2 << 30));
        assert_eq!(parse_size("0", max), Ok(0));
        for bad in ["", "MiB", "4 parsecs", "-1M", "1..2M", "1e3"] {
            assert!(parse_size(bad, max).is_err(), "{bad}");
        }
        assert!(parse_size("2KiB", 2047).is_err(), "above the maximum");
        assert!(parse_size("99999999999T", max).is_err());
    }
}
