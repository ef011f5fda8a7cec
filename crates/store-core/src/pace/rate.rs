//! [`IoRate`], how fast maintenance may move bytes (`"auto"`, `"64MiB/s"`, `"unlimited"`), and
//! [`parse_bytes`], the one reading of a size with a unit (`"4GiB"`, `"500MB"`).

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How fast the maintenance jobs (compaction copies, backups, verification) may move bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IoRate {
    /// Adapt to the owners' commit latency: back off when commits get slower than their
    /// baseline, speed up while they keep it (up to disk speed on a quiet machine).
    #[default]
    Auto,
    /// At most this many bytes per second.
    Fixed(NonZeroU64),
    /// No pacing at all.
    Unlimited,
}

/// A rate that does not read as an [`IoRate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not an I/O rate: {why} (\"auto\", \"unlimited\" or a size per second like \"64MiB/s\")"
)]
pub struct IoRateError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for IoRate {
    type Err = IoRateError;

    fn from_str(text: &str) -> Result<IoRate, IoRateError> {
        let error = |why: String| IoRateError {
            text: text.to_string(),
            why,
        };
        match text.trim() {
            "auto" => Ok(IoRate::Auto),
            "unlimited" => Ok(IoRate::Unlimited),
            other => {
                let Some(size) = other.strip_suffix("/s") else {
                    return Err(error("a fixed rate ends in \"/s\"".into()));
                };
                let bytes = parse_bytes(size).map_err(error)?;
                NonZeroU64::new(bytes)
                    .map(IoRate::Fixed)
                    .ok_or_else(|| error("a fixed rate must be above zero".into()))
            }
        }
    }
}

impl TryFrom<String> for IoRate {
    type Error = IoRateError;

    fn try_from(text: String) -> Result<IoRate, IoRateError> {
        text.parse()
    }
}

impl From<IoRate> for String {
    fn from(rate: IoRate) -> String {
        rate.to_string()
    }
}

impl fmt::Display for IoRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoRate::Auto => f.write_str("auto"),
            IoRate::Unlimited => f.write_str("unlimited"),
            IoRate::Fixed(bytes) => write!(f, "{}/s", format_bytes(bytes.get())),
        }
    }
}

/// `bytes` in the largest binary unit that divides it (`"64MiB"`), else as a plain number.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Parse `"4GiB"`, `"500MB"`, `"1024"` into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like \"4GiB\" or \"500MB\")"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}
