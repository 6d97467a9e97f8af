//! The bounds an archive must stay within, and the human sizes ("10MiB")
//! they are configured with.

use std::fmt;

/// Bounds for [`super::check`] and [`super::extract`]; exceeding one refuses
/// the archive (never a silent truncation). Every field is nonzero once
/// validated by the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The archive itself (the tar as pushed or received).
    pub max_archive_bytes: u64,
    /// One file's data.
    pub max_file_bytes: u64,
    /// All files' data together.
    pub max_total_bytes: u64,
    /// Entries of any kind (files, directories, symlinks).
    pub max_entries: u64,
    /// Path components of one entry (`a/b/c.tf` is 3).
    pub max_path_depth: u64,
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 50 * MIB,
            max_file_bytes: 10 * MIB,
            max_total_bytes: 100 * MIB,
            max_entries: 10_000,
            max_path_depth: 32,
        }
    }
}

/// A byte count printed the way it is configured: `10MiB` when it is a
/// whole number of a unit, else plain bytes (`1500B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit && n.is_multiple_of(unit) {
                return write!(f, "{}{name}", n / unit);
            }
        }
        write!(f, "{n}B")
    }
}

/// Parses a size like `10MiB`, `512KiB`, `1GiB`, `2MB` (decimal units) or
/// plain `4096` bytes. Case-insensitive units, optional space before them.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size like 10MiB, 512KiB or 4096");
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        for (text, n) in [
            ("4096", 4096),
            ("10MiB", 10 * MIB),
            ("10 mib", 10 * MIB),
            ("512KiB", 512 * KIB),
            ("2k", 2048),
            ("1GiB", GIB),
            ("3MB", 3_000_000),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        for bad in ["", "MiB", "ten", "10XB", "-1", "1.5MiB"] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains("is not a size like 10MiB"), "{err}");
        }
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(Size(10 * MIB).to_string(), "10MiB");
        assert_eq!(Size(1500).to_string(), "1500B");
        assert_eq!(Size(3 * KIB).to_string(), "3KiB");
        assert_eq!(Size(0).to_string(), "0B");
    }
}
